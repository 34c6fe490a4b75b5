"""A model with its LoRA adapter merged, as one GGUF file that llama.cpp (and Ollama) load.

Written with the ``gguf`` package, never with llama.cpp's convert scripts. Two kinds of base:

- **a GGUF file** (``default``: the default model's Q4_K_M GGUF from the cache). Its metadata and
  every tensor the adapter does not touch are copied byte for byte; each adapted tensor is
  dequantised (``gguf.quants.dequantize``), gets PEFT's merged update ``B @ A * scaling`` added
  in float32, and is written in the ``--quant`` type.
- **a transformers directory** of a LLaMA-architecture model (safetensors or ``.bin`` shards and a
  sentencepiece/LLaMA tokenizer). Every tensor goes under llama.cpp's name (``gguf``'s table),
  the query/key rows permuted as llama.cpp's converter permutes them, norms in F32, matrices in
  ``--quant``; the vocabulary (tokens, scores, token types: ``gguf.vocab``), the special token
  ids and the chat template (``gguf.SpecialVocab``) go into the metadata.

Types: ``f16`` and ``q8_0`` are encoded by ``gguf.quants``. The installed ``gguf`` cannot write
the k-quants (Q4_K, Q6_K), so ``q4_k_m`` first writes the new tensors in F16/F32 and then runs
llama.cpp's own quantiser (``llama_model_quantize`` from llama-cpp-python, the ``[llamacpp]``
extra) over the file; tensors already in Q4_K_M's types (a Q4_K_M base's untouched ones) are
copied by it as they are. With a quantised GGUF base, ``--quant`` is the type of the tensors
written anew (the adapted ones); the others keep their original quantisation.

Tensors are produced one at a time while the file is written, so memory stays at about one
tensor besides the metadata. The file appears under its name only when complete.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepke_llm.io import atomic_path
from deepke_llm.training.weights.gguf import (
    LoraFactor,
    base_facts,
    gguf_tensor_name,
    hf_base_facts,
    lora_to_gguf,
    open_gguf,
    permuted,
    read_lora_factors,
)
from deepke_llm.training.weights.io import CheckpointReader, WeightsError
from deepke_llm.training.weights.shards import WeightsResult

__all__ = ["QUANTS", "export_gguf"]

QUANTS = ("f16", "q8_0", "q4_k_m")
# llama.cpp's llama_ftype values (general.file_type), from its llama.h
FILE_TYPES = {"f16": 1, "q8_0": 7, "q4_k_m": 15}
LLAMA_FTYPE_MOSTLY_Q4_K_M = 15


@dataclass
class _Planned:
    """One output tensor, known (name, stored shape and type) before its data is computed."""

    name: str
    shape: Sequence[int]  # numpy order; bytes per row for quantised types
    dtype: Any  # numpy dtype of the stored array (uint8 for quantised types)
    nbytes: int
    qtype: Any  # gguf.GGMLQuantizationType
    produce: Callable[[], Any]


def export_gguf(base: str | os.PathLike, out: str | os.PathLike, *,
                lora: str | os.PathLike | None = None, quant: str = "q8_0",
                lora_only: bool = False, force: bool = False) -> WeightsResult:
    """Write ``base`` (a GGUF file, ``"default"`` or a transformers LLaMA directory) with the PEFT
    adapter ``lora`` merged in as the GGUF file ``out``; with ``lora_only``, the adapter alone as
    a llama.cpp LoRA GGUF for that base instead."""
    if quant not in QUANTS:
        raise WeightsError(f"--quant {quant!r}: use one of {', '.join(QUANTS)}")
    out = Path(out)
    if out.exists() and not force:
        raise WeightsError(f"{out} exists: pass --force to overwrite it")
    base_path = _resolve_base(base)
    if lora_only:
        if lora is None:
            raise WeightsError("--lora-only needs --lora DIR (the adapter to export)")
        facts = (base_facts(base_path) if base_path.is_file()
                 else hf_base_facts(_hf_config(base_path), base_path))
        lora_to_gguf(lora, base_path, out, base=facts)
        return WeightsResult(out, 0, [out.name], out.stat().st_size, {"lora adapter": 1})
    factors = read_lora_factors(lora)[1] if lora is not None else []
    if base_path.is_file():
        arch, metadata, planned, counts = _from_gguf(base_path, factors, quant, lora)
    else:
        arch, metadata, planned, counts = _from_hf(base_path, factors, quant, lora)
    with atomic_path(out) as tmp:
        if quant == "q4_k_m":
            source = tmp.with_name(tmp.name + ".unquantised")
            try:
                _write(source, arch, metadata, planned)
                _llama_quantize(source, tmp)
            finally:
                source.unlink(missing_ok=True)
        else:
            _write(tmp, arch, metadata, planned)
    return WeightsResult(out, len(planned), [out.name], out.stat().st_size, counts)


def _resolve_base(base: str | os.PathLike) -> Path:
    if str(base) == "default":
        from deepke_llm.default_model import DefaultModelError, ensure_default_gguf

        try:
            return ensure_default_gguf()
        except DefaultModelError as exc:
            raise WeightsError(str(exc)) from None
    path = Path(base)
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir() and (path / "config.json").is_file():
        return path
    raise WeightsError(f"--base {base}: neither 'default', a .gguf file nor a transformers model "
                       "directory with config.json")


def _hf_config(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{directory / 'config.json'}: unreadable ({exc})") from None


def _write(path: Path, arch: str, metadata: Callable[[Any], None],
           planned: list[_Planned]) -> None:
    """Header, metadata and tensor infos first, then each tensor as it is produced."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    metadata(writer)
    for item in planned:
        writer.add_tensor_info(item.name, item.shape, item.dtype, item.nbytes, item.qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for item in planned:
        data = item.produce()
        if data.nbytes != item.nbytes:  # a wrong plan would corrupt every later offset
            raise WeightsError(f"{item.name}: produced {data.nbytes} bytes, planned {item.nbytes}")
        writer.write_tensor_data(data)
    writer.close()


def _plan(name: str, shape: Sequence[int], qtype: Any, compute: Callable[[], Any]) -> _Planned:
    """A tensor of logical ``shape`` (rows, cols) computed in float32 and stored as ``qtype``."""
    import gguf
    import numpy as np

    Q = gguf.GGMLQuantizationType
    if qtype in (Q.F32, Q.F16):
        dtype = np.dtype(np.float32 if qtype == Q.F32 else np.float16)
        stored, nbytes = tuple(shape), int(np.prod(shape)) * dtype.itemsize
    else:
        dtype, stored = np.dtype(np.uint8), gguf.quant_shape_to_byte_shape(shape, qtype)
        nbytes = int(np.prod(stored))

    def produce() -> Any:
        values = np.ascontiguousarray(compute(), dtype=np.float32).reshape(shape)
        if qtype in (Q.F32, Q.F16):
            return values.astype(dtype)
        return gguf.quants.quantize(values, qtype)

    return _Planned(name, stored, dtype, nbytes, qtype, produce)


def _matrix_type(quant: str, cols: int, unquantised: Any) -> Any:
    """The stored type of a new weight matrix: ``unquantised`` for q4_k_m (llama.cpp quantises
    it next), Q8_0 where rows split into its 32-value blocks, else F16."""
    import gguf

    Q = gguf.GGMLQuantizationType
    if quant == "q4_k_m":
        return unquantised
    if quant == "q8_0" and cols % gguf.GGML_QUANT_SIZES[Q.Q8_0][0] == 0:
        return Q.Q8_0
    return Q.F16


def _from_gguf(path: Path, factors: list[LoraFactor], quant: str,
               lora: Any) -> tuple[str, Callable[[Any], None], list[_Planned], dict[str, int]]:
    """Plan a GGUF base: adapted tensors merged and re-encoded, all else copied as it is."""
    import gguf

    reader = open_gguf(path)
    facts = base_facts(path, reader)
    merged = {gguf_tensor_name(f.target, facts, lora): f for f in factors}
    planned = []
    for tensor in reader.tensors:
        factor = merged.pop(tensor.name, None)
        if factor is None:  # the stored bytes, untouched
            data = tensor.data
            planned.append(_Planned(tensor.name, data.shape, data.dtype, data.nbytes,
                                    tensor.tensor_type, lambda data=data: data))
            continue
        shape = tuple(int(n) for n in reversed(tensor.shape))  # ggml lists columns first
        _check_shape(factor, shape, tensor.name, lora)

        def compute(tensor: Any = tensor, factor: LoraFactor = factor) -> Any:
            weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            return weight + permuted(factor.b @ factor.a, factor.target, facts)

        qtype = _matrix_type(quant, shape[1], gguf.GGMLQuantizationType.F32)
        planned.append(_plan(tensor.name, shape, qtype, compute))
    if merged:
        raise WeightsError(f"{lora}: {next(iter(merged))} is not a tensor of {path}; is the "
                           "adapter for this base model?")

    def metadata(writer: Any) -> None:
        for field in reader.fields.values():
            if field.name.startswith("GGUF.") or field.name == gguf.Keys.General.ARCHITECTURE:
                continue  # written by the writer itself
            if field.name == gguf.Keys.General.FILE_TYPE and factors and quant != "q4_k_m":
                continue  # set below
            main = field.types[0]
            sub = field.types[-1] if main == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), main, sub_type=sub)
        if factors and quant != "q4_k_m":  # llama.cpp's quantiser sets its own
            writer.add_file_type(FILE_TYPES[quant])

    counts = {"merged": len(factors), "copied": len(planned) - len(factors)}
    return facts["arch"], metadata, planned, counts


def _check_shape(factor: LoraFactor, shape: tuple[int, ...], name: str, lora: Any) -> None:
    if (factor.b.shape[0], factor.a.shape[1]) != shape:
        raise WeightsError(f"{lora}: the update of {factor.target} is "
                           f"{[factor.b.shape[0], factor.a.shape[1]]}, the base's {name} is "
                           f"{list(shape)}: is the adapter for this base model?")


def _from_hf(directory: Path, factors: list[LoraFactor], quant: str,
             lora: Any) -> tuple[str, Callable[[Any], None], list[_Planned], dict[str, int]]:
    """Plan a transformers LLaMA directory: every tensor renamed, permuted and encoded."""
    import gguf

    config = _hf_config(directory)
    facts = hf_base_facts(config, directory)
    reader = CheckpointReader(directory, "--base")
    merged = {f.target: f for f in factors}
    planned = []
    for name, meta in reader.meta.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by llama.cpp from rope.freq_base
        gguf_name = gguf_tensor_name(name, facts, directory)
        shape = tuple(meta.shape)
        factor = merged.pop(name, None)
        if factor is not None:
            _check_shape(factor, shape, name, lora)

        def compute(name: str = name, meta: Any = meta, factor: LoraFactor | None = factor) -> Any:
            weight = reader.read_rows(name, 0, meta.rows).reshape(meta.shape).float().numpy()
            if factor is not None:
                weight = weight + factor.b @ factor.a
            return permuted(weight, name, facts)

        qtype = (gguf.GGMLQuantizationType.F32 if len(shape) == 1 else
                 _matrix_type(quant, shape[-1], gguf.GGMLQuantizationType.F16))
        planned.append(_plan(gguf_name, shape, qtype, compute))
    if merged:
        raise WeightsError(f"{lora}: {next(iter(merged))} is not a tensor of --base "
                           f"{directory}; is the adapter for this base model?")
    vocab_rows = reader.meta["model.embed_tokens.weight"].shape[0]

    def metadata(writer: Any) -> None:
        _hf_model_metadata(writer, directory, config)
        _hf_tokenizer_metadata(writer, directory, vocab_rows)
        writer.add_file_type(FILE_TYPES[quant])

    counts = {"merged": len(factors), "converted": len(planned) - len(factors)}
    return facts["arch"], metadata, planned, counts


def _hf_model_metadata(writer: Any, directory: Path, config: dict[str, Any]) -> None:
    """The ``llama.*`` hyperparameters llama.cpp reads, from ``config.json``."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise WeightsError(f"{directory}: rope scaling {rope.get('rope_type')!r} is not "
                           "supported here; convert with llama.cpp's convert_hf_to_gguf.py")
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    writer.add_name(directory.name)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != hidden // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_rope_freq_base(rope.get("rope_theta") or config.get("rope_theta", 10000.0))
    writer.add_vocab_size(config["vocab_size"])


def _hf_tokenizer_metadata(writer: Any, directory: Path, rows: int) -> None:
    """Tokens, scores and token types (``gguf.vocab``), special ids and the chat template."""
    from gguf.vocab import LlamaHfVocab, SentencePieceVocab, SpecialVocab

    try:
        vocab = (SentencePieceVocab(directory) if (directory / "tokenizer.model").is_file()
                 else LlamaHfVocab(directory))
    except (FileNotFoundError, TypeError, KeyError, ValueError) as exc:
        raise WeightsError(f"{directory}: no sentencepiece/LLaMA tokenizer ({exc}); only "
                           "those are written here") from None
    tokens, scores, types = (list(x) for x in zip(*vocab.all_tokens(), strict=True))
    if isinstance(vocab, LlamaHfVocab):
        scores = _merge_scores(directory, tokens, scores)
    if len(tokens) > rows:
        raise WeightsError(f"{directory}: the tokenizer has {len(tokens)} tokens, the "
                           f"embedding only {rows} rows")
    for i in range(len(tokens), rows):  # embedding rows past the vocabulary: unused, as
        tokens.append(f"[PAD{i}]".encode())  # llama.cpp's converter names them
        scores.append(-1000.0)
        types.append(4)  # gguf.TokenType.UNUSED
    writer.add_tokenizer_model(vocab.tokenizer_model)
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    gguf_log = logging.getLogger("gguf")
    level = gguf_log.level
    gguf_log.setLevel(logging.ERROR)  # its notes on tokens it ignores are not the user's problem
    try:
        SpecialVocab(directory, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
    finally:
        gguf_log.setLevel(level)


def _merge_scores(directory: Path, tokens: list[bytes], scores: list[float]) -> list[float]:
    """Scores that make llama.cpp's sentencepiece tokenizer merge in BPE's order.

    ``gguf``'s LlamaHfVocab scores every token -1000, which leaves llama.cpp (it merges the
    adjacent pair whose joined token scores highest) no order at all: here a token scores minus
    the rank of the first merge in tokenizer.json that makes it, so both merge alike.
    """
    merges = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"].get(
        "merges") or []
    rank: dict[bytes, int] = {}
    for i, merge in enumerate(merges):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank.setdefault((left + right).encode(), i)
    return [-float(rank[t]) if t in rank else score for t, score in zip(tokens, scores, strict=True)]


def _llama_quantize(source: Path, target: Path) -> None:
    """llama.cpp's own Q4_K_M quantiser over ``source`` (tensors already in the types it picks
    are copied, never requantised)."""
    try:
        import llama_cpp
    except ImportError:
        raise WeightsError("--quant q4_k_m runs llama.cpp's quantiser: pip install "
                           "'deepke-llm[llamacpp]', or choose --quant q8_0 or f16") from None
    from deepke_llm.backends.llamacpp import quiet_logs

    quiet_logs(llama_cpp)  # its per-tensor log is hundreds of lines; errors still show
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = 0  # llama.cpp's default: every hardware thread
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(),
                                      ctypes.byref(params)) != 0:
        raise WeightsError(f"llama.cpp could not quantise {source.name} to Q4_K_M (its log above "
                           "says why); choose --quant q8_0")
