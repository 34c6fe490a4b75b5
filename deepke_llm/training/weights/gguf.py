"""LoRA adapters for llama.cpp: a PEFT adapter directory -> a GGUF LoRA file, written with ``gguf``.

llama.cpp applies a LoRA GGUF at run time (``general.type = adapter``, ``adapter.type = lora``)
as ``W x + s * B (A x)`` with ``s = adapter.lora.alpha / rank``. Tensor names are the base
GGUF's (``blk.0.attn_q.weight.lora_a`` / ``.lora_b``), mapped from the transformers names by
``gguf``'s own table for the base's architecture. PEFT's scaling (``lora_alpha / r``, rsLoRA,
per-module rank and alpha patterns) is folded into B, so every module gets exactly the scale
PEFT gives it whatever llama.cpp computes from the one global alpha. Where llama.cpp's converter
permutes the query/key rows of an architecture (the LLaMA family), B's rows are permuted the same
way. Only the tensors are converted: the A/B factors of linear layers; embedding LoRA, LoRA
biases and whole-tensor replacements are refused with one line.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepke_llm.io import atomic_path, sha256_file
from deepke_llm.training.weights.io import WeightsError

__all__ = ["LoraFactor", "base_facts", "gguf_tensor_name", "hf_base_facts", "lora_gguf_for",
           "lora_to_gguf", "open_gguf", "permuted", "read_lora_factors"]

# architectures whose q/k weights llama.cpp's converter permutes (LlamaModel.modify_tensors)
PERMUTED = frozenset({"llama", "mistral", "granite", "granitemoe"})
ADAPTER_FILE = "adapter_model.safetensors"


@dataclass(frozen=True)
class LoraFactor:
    """One adapted linear layer: ``delta W = b @ a`` with PEFT's scaling already in ``b``."""

    target: str  # the base tensor's transformers name (model.layers.0.self_attn.q_proj.weight)
    a: Any  # float32 (rank, in)
    b: Any  # float32 (out, rank), times PEFT's scaling of the module


def read_lora_factors(lora_dir: str | Path) -> tuple[dict[str, Any], list[LoraFactor]]:
    """``adapter_config.json`` and the adapter's linear A/B factors, sorted by target; what a
    llama.cpp adapter or a GGUF merge cannot hold is refused with one line."""
    from deepke_llm.training.weights.lora import _split_adapter_keys, read_adapter_config

    lora_dir = Path(lora_dir)
    config = read_adapter_config(lora_dir)
    file = lora_dir / ADAPTER_FILE
    if not file.is_file():
        raise WeightsError(f"{lora_dir}: no {ADAPTER_FILE} (is --lora a PEFT adapter directory?)")
    tensors = _float_arrays(file)
    pairs, replacements = _split_adapter_keys(list(tensors), file)
    if replacements:
        raise WeightsError(f"{file}: tensors saved whole ({next(iter(replacements))}) cannot "
                           "be applied by llama.cpp at run time; merge with `deepke-llm "
                           "weights merge-lora` and convert the merged model instead")
    factors = []
    for target, pair in sorted(pairs.items()):
        if pair.kind != "linear" or "bias" in pair.names or len(pair.names) != 2:
            raise WeightsError(f"{file}: {pair.module} is an embedding LoRA, has a LoRA bias or "
                               "misses a factor; llama.cpp adapters hold linear A/B pairs only")
        a, b = tensors[pair.names["a"]], tensors[pair.names["b"]]
        factors.append(LoraFactor(target, a, b * _scale(config, pair.module, a.shape[0])))
    return config, factors


def lora_to_gguf(lora_dir: str | Path, base_gguf: str | Path, out: str | Path,
                 base: dict[str, Any] | None = None) -> Path:
    """Write the PEFT adapter in ``lora_dir`` as a llama.cpp LoRA GGUF for ``base_gguf`` (or
    for the model ``base`` describes: :func:`base_facts` / :func:`hf_base_facts`)."""
    import gguf
    import numpy as np

    out = Path(out)
    base = base or base_facts(Path(base_gguf))
    config, factors = read_lora_factors(lora_dir)
    alpha = float(config.get("r", 8))  # s = alpha / rank = 1 for the default rank: see below
    with atomic_path(out) as tmp:
        writer = gguf.GGUFWriter(str(tmp), base["arch"])
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for factor in factors:
            name = gguf_tensor_name(factor.target, base, lora_dir)
            rank = factor.a.shape[0]
            # llama.cpp multiplies by alpha / rank: undo it, PEFT's scale is in b already
            b = permuted(factor.b * (rank / alpha), factor.target, base)
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(factor.a))
            writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out


def gguf_tensor_name(target: str, base: dict[str, Any], where: str | Path) -> str:
    """The GGUF name (``blk.0.attn_q.weight``) of a transformers tensor name in ``base``'s
    architecture, by ``gguf``'s own table."""
    name = base["names"].get_name(target, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise WeightsError(f"{where}: {target} has no tensor in a {base['arch']} GGUF; "
                           "is it for this base model?")
    return name


def lora_gguf_for(lora: str | Path, base_gguf: str | Path) -> Path:
    """``lora`` itself when it is a GGUF file, else its conversion for ``base_gguf``, made once
    and cached (keyed by the adapter's and the base's content)."""
    lora = Path(lora)
    if lora.is_file() and lora.suffix == ".gguf":
        return lora
    if not (lora / ADAPTER_FILE).is_file():
        raise WeightsError(f"{lora}: neither a .gguf LoRA file nor a PEFT adapter directory "
                           f"with {ADAPTER_FILE}")
    from deepke_llm.default_model import cache_dir

    key = hashlib.sha256()
    base = Path(base_gguf).resolve()
    stat = base.stat()
    # the adapter by content (small); the base by identity: hashing a multi-GB GGUF at every
    # start would cost seconds, and the conversion only reads its architecture and head counts
    for part in (sha256_file(lora / ADAPTER_FILE), (lora / "adapter_config.json").read_text(),
                 f"{base}:{stat.st_size}:{stat.st_mtime_ns}"):
        key.update(part.encode())
    target = cache_dir() / "lora-gguf" / f"{lora.name}-{key.hexdigest()[:16]}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        lora_to_gguf(lora, base_gguf, target)
    return target


def _float_arrays(file: Path) -> dict[str, Any]:
    """Every tensor of a safetensors file as float32 numpy arrays.

    Read here rather than with ``safetensors``' numpy loader, which cannot hold bfloat16 (numpy
    has no such type; adapters are usually saved in it), and without torch, which the llama.cpp
    engine never needs: the format is an 8-byte header size, a JSON header, then raw tensors.
    """
    import json

    import numpy as np

    with open(file, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        try:
            header = json.loads(handle.read(size))
        except ValueError:
            raise WeightsError(f"{file}: not a safetensors file") from None
    data = np.memmap(file, dtype=np.uint8, mode="r", offset=8 + size)
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, stop = info["data_offsets"]
        raw = data[start:stop]
        if info["dtype"] == "BF16":  # the upper half of a float32
            array = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in ("F16", "F32", "F64"):
            array = raw.view({"F16": np.float16, "F32": np.float32, "F64": np.float64}[
                info["dtype"]]).astype(np.float32)
        else:
            raise WeightsError(f"{file}: tensor {name} has dtype {info['dtype']}; a LoRA adapter "
                               "holds floating-point factors")
        arrays[name] = array.reshape(info["shape"])
    return arrays


def open_gguf(path: Path) -> Any:
    """A ``gguf.GGUFReader`` of ``path``; a missing or malformed file is one WeightsError."""
    import gguf

    if not path.is_file():
        raise WeightsError(f"base GGUF {path} does not exist")
    try:
        return gguf.GGUFReader(str(path))
    except (ValueError, IndexError, OSError) as exc:
        raise WeightsError(f"{path}: not a readable GGUF file ({exc})") from None


def base_facts(path: Path, reader: Any = None) -> dict[str, Any]:
    """Architecture, its tensor-name table and head counts, from the base GGUF's metadata
    (``reader``: its ``gguf.GGUFReader`` when the caller has one; opening one parses every
    token string, seconds for a 262k vocabulary)."""

    reader = reader or open_gguf(path)

    def value(key: str) -> Any:
        found = reader.get_field(key)
        return None if found is None else found.contents()

    arch = value("general.architecture")
    return _facts(arch, int(value(f"{arch}.block_count") or 0),
                  value(f"{arch}.attention.head_count"),
                  value(f"{arch}.attention.head_count_kv"), path)


# transformers model_type -> the llama.cpp architecture its converter writes
HF_ARCHITECTURES = {"llama": "llama", "mistral": "llama"}


def hf_base_facts(config: dict[str, Any], where: str | Path) -> dict[str, Any]:
    """:func:`base_facts` for a transformers ``config.json`` of a LLaMA-architecture model."""
    arch = HF_ARCHITECTURES.get(config.get("model_type", ""))
    if arch is None:
        raise WeightsError(f"{where}: model_type {config.get('model_type')!r} is not supported "
                           f"here (only {', '.join(sorted(HF_ARCHITECTURES))}); convert it with "
                           "llama.cpp's convert_hf_to_gguf.py and pass the GGUF as --base")
    heads = config["num_attention_heads"]
    return _facts(arch, config["num_hidden_layers"], heads,
                  config.get("num_key_value_heads") or heads, where)


def _facts(arch: str, blocks: int, heads: Any, kv_heads: Any, where: str | Path) -> dict[str, Any]:
    import gguf

    by_name = {name: enum for enum, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in by_name:
        raise WeightsError(f"{where}: architecture {arch!r} is not known to the gguf package")
    return {"arch": arch, "names": gguf.get_tensor_name_map(by_name[arch], blocks),
            "heads": heads, "kv_heads": kv_heads, "blocks": blocks}


def _scale(config: dict[str, Any], module: str, rank: int) -> float:
    """PEFT's scaling of ``module`` (``merge_and_unload`` reads the same keys)."""
    alpha, r = config.get("lora_alpha", 8), config.get("r", rank)
    if config.get("alpha_pattern") or config.get("rank_pattern"):
        from deepke_llm.training.weights.lora import pattern_value

        alpha = pattern_value(config.get("alpha_pattern") or {}, module, alpha)
        r = pattern_value(config.get("rank_pattern") or {}, module, r)
    if r != rank:
        raise WeightsError(f"LoRA module {module} has rank {rank}, adapter_config.json says r={r}")
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def permuted(b: Any, target: str, base: dict[str, Any]) -> Any:
    """``b`` (B, or a whole delta) with its rows in the order llama.cpp's converter gives the q/k weights of LLaMA models."""
    if base["arch"] not in PERMUTED or not target.endswith(("q_proj.weight", "k_proj.weight")):
        return b
    heads = base["heads"] if target.endswith("q_proj.weight") else base["kv_heads"] or base["heads"]
    rows = b.shape[0]
    return (b.reshape(heads, 2, rows // heads // 2, *b.shape[1:]).swapaxes(1, 2)
            .reshape(b.shape))
