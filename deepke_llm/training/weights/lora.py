"""Merge a PEFT LoRA adapter into its base model, streaming over the base shards.

The arithmetic is peft's own ``merge_and_unload()`` (``LoraLayer.merge`` with its default
``autocast_adapter_dtype``): the adapter's A and B are taken in float32, ``delta = transpose(B @ A,
fan_in_fan_out) * scaling`` with ``scaling = lora_alpha / r`` (``/ sqrt(r)`` with ``use_rslora``,
per-module ``rank_pattern``/``alpha_pattern``), and ``W += delta`` in the base dtype; embedding LoRA
uses ``(B @ A).T``, rounded to the base dtype before the add as peft does. Results are bit-identical
to peft 0.21's merge (pinned by tests/test_weights_lora.py). Tensors the adapter carries whole (``modules_to_save``, trained biases, the
embedding copy peft saves when embeddings are targeted) replace the base tensors. Only one tensor of
the base is in memory at a time. Variants that are not a plain ``W + BA`` (DoRA, LoRA on conv layers
or raw parameters, trainable tokens, aLoRA, ...) are refused with a one-line error.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepke_llm.training.weights.io import CheckpointReader, WeightsError, parse_size
from deepke_llm.training.weights.shards import (
    DEFAULT_MAX_SHARD_SIZE,
    PlannedTensor,
    ShardWriter,
    WeightsResult,
    atomic_output_dir,
    check_output_dir,
    copy_side_files,
)

if TYPE_CHECKING:
    import torch

ADAPTER_PREFIX = "base_model.model."
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_FILES = re.compile(
    r"^(tokenizer.*|special_tokens_map\.json|added_tokens\.json|chat_template\.(jinja|json)|"
    r".*\.tiktoken|vocab\.(json|txt)|merges\.txt)$")
# adapter_config.json fields whose (truthy) presence means something other than W + scale * B @ A
UNSUPPORTED = {
    "use_dora": "DoRA", "target_parameters": "LoRA on parameters (target_parameters)",
    "trainable_token_indices": "trainable tokens", "layer_replication": "layer replication",
    "alora_invocation_tokens": "aLoRA", "arrow_config": "Arrow routing", "use_qalora": "QA-LoRA",
    "use_bdlora": "block-diagonal LoRA", "megatron_config": "Megatron parallel layers",
}

# the adapter_config.json fields the merge reads, with the types peft writes (others are ignored)
ADAPTER_CONFIG_SCHEMA = {
    "type": "object",
    "properties": {
        "peft_type": {"type": "string"},
        "r": {"type": "integer", "minimum": 1},
        "lora_alpha": {"type": "number"},
        "rank_pattern": {"type": ["object", "null"],
                         "additionalProperties": {"type": "integer", "minimum": 1}},
        "alpha_pattern": {"type": ["object", "null"], "additionalProperties": {"type": "number"}},
        "use_rslora": {"type": "boolean"},
        "fan_in_fan_out": {"type": "boolean"},
    },
}


@dataclass
class LoraPair:
    """The A/B factors (and optional lora bias) of one adapted module, by adapter tensor name."""

    module: str
    kind: str  # "linear" or "embedding"
    names: dict[str, str]  # "a" / "b" / "bias" -> adapter tensor name
    tensors: dict[str, torch.Tensor]


def pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """``rank_pattern``/``alpha_pattern`` value for ``module``: peft's own lookup, so a merge here
    reads the adapter config exactly as the installed peft's ``merge_and_unload`` does."""
    from peft.utils.other import get_pattern_key

    return patterns.get(get_pattern_key(patterns.keys(), module), default)


def read_adapter_config(lora_dir: Path) -> dict[str, Any]:
    """``adapter_config.json``, checked for features this merge does not implement."""
    path = lora_dir / "adapter_config.json"
    if not path.is_file():
        raise WeightsError(f"{lora_dir}: no adapter_config.json (is --lora a PEFT adapter directory?)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc!r:.160})") from None
    import jsonschema

    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(ADAPTER_CONFIG_SCHEMA).iter_errors(config))
    if error is not None:
        message = " ".join(error.message.split())[:160]
        raise WeightsError(f"{path}: {error.json_path}: {message}; the adapter config is malformed")
    if config.get("peft_type", "LORA") != "LORA":
        raise WeightsError(f"{path}: peft_type {config['peft_type']} is not supported; only LORA "
                           f"adapters can be merged here (use peft's merge_and_unload)")
    for key, what in UNSUPPORTED.items():
        if config.get(key):
            raise WeightsError(f"{path}: {key} ({what}) is not supported by merge-lora; "
                               f"use peft's merge_and_unload() for this adapter")
    return config


def _split_adapter_keys(names: list[str], file: Path) -> tuple[dict[str, LoraPair], dict[str, str]]:
    """Group adapter tensors into LoRA pairs (by base tensor) and whole replacements."""
    suffixes = {".lora_A.weight": ("linear", "a"), ".lora_B.weight": ("linear", "b"),
                ".lora_B.bias": ("linear", "bias"), ".lora_embedding_A": ("embedding", "a"),
                ".lora_embedding_B": ("embedding", "b")}
    pairs: dict[str, LoraPair] = {}
    replacements: dict[str, str] = {}  # base tensor name -> adapter tensor name
    for name in names:
        if not name.startswith(ADAPTER_PREFIX):
            raise WeightsError(f"{file}: tensor {name} does not start with {ADAPTER_PREFIX!r}; "
                               f"not a PEFT LoRA checkpoint of a causal LM")
        key = name.removeprefix(ADAPTER_PREFIX)
        for suffix, (kind, part) in suffixes.items():
            if key.endswith(suffix):
                module = key.removesuffix(suffix)
                pairs.setdefault(module + ".weight", LoraPair(module, kind, {}, {})).names[part] = name
                break
        else:
            if "lora_" in key:
                raise WeightsError(f"{file}: tensor {name} is not plain LoRA (DoRA magnitude or "
                                   f"another variant); merge-lora does not support it")
            replacements[key.replace(".base_layer.", ".")] = name
    return pairs, replacements


def merge_lora(base: str | os.PathLike, lora: str | os.PathLike, out: str | os.PathLike, *,
               max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
               force: bool = False) -> WeightsResult:
    """Write ``base`` with the LoRA adapter in ``lora`` merged in to ``out`` (safetensors shards)."""
    base_path, lora_path, out_path = Path(base), Path(lora), Path(out)
    check_output_dir(out_path, [base_path, lora_path], force)
    config = read_adapter_config(lora_path)
    adapter_file = next((lora_path / f for f in ADAPTER_FILES if (lora_path / f).is_file()), None)
    if adapter_file is None:
        raise WeightsError(f"{lora_path}: no {' or '.join(ADAPTER_FILES)} found")
    adapter = CheckpointReader(adapter_file, "--lora")
    base_reader = CheckpointReader(base_path, "--base")
    pairs, replacements = _split_adapter_keys(list(adapter.meta), adapter_file)
    _check_replacements(replacements, adapter, base_reader, adapter_file)
    scalings: dict[str, float] = {}
    for target, pair in pairs.items():
        _load_pair(pair, adapter, adapter_file)
        scalings[target] = _check_pair(target, pair, base_reader, config, adapter_file)

    def produce(planned: PlannedTensor) -> Iterator[torch.Tensor]:
        name = planned.name
        reader, source = ((adapter, replacements[name]) if name in replacements
                          else (base_reader, name))
        pair = pairs.get(name)
        # a lora_B bias (lora_bias=True) shifts the base bias, as peft's merge does
        bias_pair = pairs.get(name.removesuffix(".bias") + ".weight") if name.endswith(".bias") else None
        if bias_pair is not None and "bias" not in bias_pair.tensors:
            bias_pair = None
        if pair is None and bias_pair is None:
            for block in reader.iter_blocks(source):
                yield block.to(planned.dtype)
        else:
            meta = reader.meta[source]
            weight = reader.read_rows(source, 0, meta.rows).to(planned.dtype).reshape(meta.shape)
            if pair is not None:
                delta = _delta(pair, scalings[name], bool(config.get("fan_in_fan_out")))
                # peft adds a linear delta in float32 but rounds an embedding delta to the base
                # dtype first (lora.Embedding.merge); doing the same keeps the merge bit-identical
                weight += delta if pair.kind == "linear" else delta.to(weight.dtype)
            else:
                weight += _wide(bias_pair.tensors["bias"]) * scalings[bias_pair.module + ".weight"]
            yield weight
        base_reader.release()

    planned = [PlannedTensor(n, m.dtype, m.shape) for n, m in base_reader.meta.items()]
    with atomic_output_dir(out_path, force) as tmp:
        writer = ShardWriter(tmp, planned, parse_size(max_shard_size), prefix="model",
                             single_name="model.safetensors")
        writer.write_all(produce)
        writer.write_index()
        copy_side_files(base_path, tmp)
        # a tokenizer saved with the adapter (e.g. with added tokens) wins over the base one
        copy_side_files(lora_path, tmp, only=lambda n: bool(TOKENIZER_FILES.match(n)))
    kinds = [p.kind for p in pairs.values()]
    return WeightsResult(out_path, len(planned), writer.file_names, writer.total_size,
                         {"lora linear": kinds.count("linear"),
                          "lora embedding": kinds.count("embedding"),
                          "replaced": len(replacements)})


def _check_replacements(replacements: dict[str, str], adapter: CheckpointReader,
                        base: CheckpointReader, file: Path) -> None:
    """Every tensor the adapter carries whole has a base tensor of the same shape to replace."""
    for target, source in replacements.items():
        base_meta = base.meta.get(target)
        if base_meta is None:
            raise WeightsError(f"{file.name}: tensor {source} has no counterpart {target} "
                               f"in --base {base.path} (tied embeddings or another base model?)")
        if base_meta.shape != adapter.meta[source].shape:
            raise WeightsError(
                f"{file.name}: tensor {source} shape {list(adapter.meta[source].shape)} != "
                f"base {list(base_meta.shape)} (resized vocabulary?); resize the base first")


def _load_pair(pair: LoraPair, adapter: CheckpointReader, file: Path) -> None:
    if "a" not in pair.names or "b" not in pair.names:
        raise WeightsError(f"{file.name}: module {pair.module} has only one of lora_A/lora_B; "
                           f"the adapter file is incomplete")
    for part, name in pair.names.items():
        meta = adapter.meta[name]
        pair.tensors[part] = adapter.read_rows(name, 0, meta.rows).reshape(meta.shape)


def _check_pair(target: str, pair: LoraPair, base: CheckpointReader, config: dict[str, Any],
                file: Path) -> float:
    """Validate shapes against the base tensor; return the module's scaling."""
    meta = base.meta.get(target)
    if meta is None:
        raise WeightsError(f"{file.name}: LoRA module {pair.module} has no tensor {target} in "
                           f"--base {base.path} (is --base the model this adapter was trained on?)")
    a, b = pair.tensors["a"], pair.tensors["b"]
    if a.dim() != 2 or b.dim() != 2 or len(meta.shape) != 2:
        raise WeightsError(f"{file.name}: LoRA module {pair.module} is not a linear or embedding "
                           f"layer (conv LoRA?); merge-lora does not support it")
    rank = a.shape[0]
    if pair.kind == "linear":
        shape = (b.shape[0], a.shape[1])
        if config.get("fan_in_fan_out"):
            shape = shape[::-1]
    else:
        shape = (a.shape[1], b.shape[0])
    if tuple(meta.shape) != shape or b.shape[1] != rank:
        raise WeightsError(f"{file.name}: LoRA module {pair.module} gives a {list(shape)} update "
                           f"for base {target} of shape {list(meta.shape)}: wrong --base?")
    if "bias" in pair.tensors and pair.module + ".bias" not in base.meta:
        raise WeightsError(f"{file.name}: LoRA module {pair.module} has a lora_B bias but --base "
                           f"has no {pair.module}.bias to merge it into")
    r = pattern_value(config.get("rank_pattern") or {}, pair.module, config.get("r", rank))
    if r != rank:
        raise WeightsError(f"{file.name}: LoRA module {pair.module} has rank {rank}, "
                           f"adapter_config.json says r={r}")
    alpha = pattern_value(config.get("alpha_pattern") or {}, pair.module,
                          config.get("lora_alpha", 8))
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    import torch

    # peft upcasts fp16/bf16 adapter weights to float32 before merging (autocast_adapter_dtype)
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _delta(pair: LoraPair, scaling: float, fan_in_fan_out: bool) -> torch.Tensor:
    product = _wide(pair.tensors["b"]) @ _wide(pair.tensors["a"])
    transpose = fan_in_fan_out if pair.kind == "linear" else True
    return (product.T if transpose else product) * scaling
