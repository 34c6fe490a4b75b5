"""Export a transformers causal LM (LoRA merged in) to the stateful OpenVINO IR that
``openvino_genai.LLMPipeline`` runs, without optimum-intel.

Why not optimum-intel (the usual exporter): its 2.2 release refuses transformers newer than 5.0,
pins huggingface-hub below 1.22 and imports transformers internals that 5.x removed, so it cannot
live in this package's environment. What it does for decoder LMs is small and is done here with
``openvino.convert_model`` and OpenVINO's own transformations:

1. trace the model through :func:`_flat_cache` (the KV cache as flat tensors in and out);
   while tracing, transformers' sdpa mask is a float mask (0 / float16 min) and the attention
   slices it to the keys' length: the subgraph shape OpenVINO's paged-attention conversion
   recognises to read each layer's sliding window;
2. name the ports as LLMPipeline expects (``input_ids``, ``attention_mask``, ``position_ids``,
   ``past_key_values.N.key`` -> ``present.N.key``, ``logits``);
3. add ``beam_idx`` (a Gather on each cache input), make the cache a model state
   (``apply_make_stateful_transformation``) with zero-length initial states;
4. save the IR, the config files and the tokenizer (``openvino_tokenizers.convert_tokenizer``).

``tests/test_openvino_export.py`` checks the IR's logits against transformers on a tiny Gemma 3,
past its sliding window.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deepke_llm.io import atomic_path

__all__ = ["export_openvino"]

# the example shapes the model is traced with: batch, new tokens, cached tokens. All > 1: a
# length of 1 takes other branches in transformers' attention (and would be baked in the graph)
_BATCH, _NEW, _PAST = 2, 16, 16


def export_openvino(model_dir: str | Path, out: str | Path, lora: str | Path | None = None) -> Path:
    """Write the OpenVINO IR of ``model_dir`` (+ the PEFT adapter ``lora``, merged) to ``out``.

    The directory is written beside ``out`` and renamed into place when complete.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                                 attn_implementation="sdpa")
    if lora is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(lora)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        _write(model.eval(), tokenizer, tmp)
    return Path(out)


def _write(model: Any, tokenizer: Any, out: Path) -> None:
    import openvino as ov
    from openvino_tokenizers import convert_tokenizer

    ov_model = _stateful(_convert(model), model.config)
    ov_model.set_rt_info("f16", ["runtime_options", "KV_CACHE_PRECISION"])
    ov_model.set_rt_info("8.0", ["runtime_options", "ACTIVATIONS_SCALE_FACTOR"])
    ov.save_model(ov_model, out / "openvino_model.xml", compress_to_fp16=False)
    model.config.save_pretrained(out)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out)
    tokenizer.padding_side = tokenizer.truncation_side = "left"
    encoder, decoder = convert_tokenizer(tokenizer, with_detokenizer=True)
    ov.save_model(encoder, out / "openvino_tokenizer.xml")
    ov.save_model(decoder, out / "openvino_detokenizer.xml")
    tokenizer.save_pretrained(out)


def _convert(model: Any) -> Any:
    """The traced model, ports named; the cache still explicit inputs and outputs."""
    import openvino as ov
    import torch

    layers, heads, size = _cache_dims(model.config)
    example = [torch.randint(3, 100, (_BATCH, _NEW)),
               torch.ones(_BATCH, _PAST + _NEW, dtype=torch.long),
               torch.arange(_PAST, _PAST + _NEW).repeat(_BATCH, 1)]
    example += [torch.randn(_BATCH, heads, _PAST, size) for _ in range(2 * layers)]
    shapes = [(ov.PartialShape([-1, -1]), ov.Type.i64)] * 3
    shapes += [(ov.PartialShape([-1, heads, -1, size]), ov.Type.f32)] * (2 * layers)
    with torch.no_grad(), _openvino_sdpa(), warnings.catch_warnings():
        # the branches it warns about are taken as intended (all example lengths > 1); the
        # logits are checked against transformers past the sliding window in the tests
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        converted = ov.convert_model(_flat_cache(model), example_input=tuple(example), input=shapes)
    names = ["input_ids", "attention_mask", "position_ids", *_cache_names("past_key_values", layers)]
    for port, name in zip(converted.inputs, names, strict=True):
        port.get_tensor().set_names({name})
        port.get_node().set_friendly_name(name)  # paged attention finds input_ids by this name
    outputs = ["logits", *_cache_names("present", layers)]
    for port, name in zip(converted.outputs, outputs, strict=True):
        port.get_tensor().set_names({name})
    return converted


def _stateful(model: Any, config: Any) -> Any:
    """``beam_idx`` reorders the cache; the cache becomes the model's state (zeros at start)."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    layers, heads, size = _cache_dims(config)
    past, present = _cache_names("past_key_values", layers), _cache_names("present", layers)
    beam_idx = ops.parameter([-1], ov.Type.i32, name="beam_idx")
    beam_idx.output(0).get_tensor().set_names({"beam_idx"})
    model.add_parameters([beam_idx])
    for name in past:
        cache = model.input(name).get_node()
        readers = list(cache.output(0).get_target_inputs())
        reordered = ops.gather(cache, beam_idx, ops.constant(0))
        for reader in readers:
            reader.replace_source_output(reordered.output(0))
    model.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(model, dict(zip(past, present, strict=True)))
    batch = ops.gather(ops.shape_of(model.input("input_ids"), output_type="i64"),
                       ops.constant(np.array([0], dtype=np.int64)), ops.constant(0))
    empty = ops.concat([batch, ops.constant(np.array([heads, 0, size], dtype=np.int64))], axis=0)
    for op in model.get_ops():
        if op.get_type_name() == "ReadValue":
            op.set_arguments([ops.broadcast(ops.constant(np.float32(0.0)), empty)])
    model.validate_nodes_and_infer_types()
    return model


def _cache_dims(config: Any) -> tuple[int, int, int]:
    size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, config.num_key_value_heads, size


def _cache_names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def _flat_cache(model: Any) -> Any:
    """``model`` as ``forward(input_ids, attention_mask, position_ids, *cache) -> (logits,
    *cache)``.

    The cache is rebuilt from its tensors as full (not sliding) layers: the state keeps every
    token and the sliding window is applied by the attention mask, as OpenVINO expects.
    """
    import torch
    from transformers.cache_utils import DynamicCache, DynamicLayer

    class FlatCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any,
                    *cache: Any) -> tuple[Any, ...]:
            past = DynamicCache()
            for keys, values in zip(cache[0::2], cache[1::2], strict=True):
                layer = DynamicLayer()
                layer.keys, layer.values, layer.is_initialized = keys, values, True
                layer.dtype, layer.device = keys.dtype, keys.device
                past.layers.append(layer)
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                position_ids=position_ids, past_key_values=past,
                                use_cache=True).logits
            return (logits, *[t for layer in past.layers for t in (layer.keys, layer.values)])

    return FlatCache().eval()


@contextmanager
def _openvino_sdpa() -> Iterator[None]:
    """transformers' sdpa mask and attention as OpenVINO's transformations read them."""
    import torch
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def mask(*args: Any, **kwargs: Any) -> Any:
        dtype = kwargs.pop("dtype", torch.float32)
        kwargs.update(allow_is_causal_skip=False, use_vmap=False)
        allowed = sdpa_mask(*args, **kwargs)
        # float16's minimum, not -inf: -inf rows turn into NaNs in OpenVINO's kernels
        return torch.where(allowed, torch.tensor(0.0, dtype=dtype),
                           torch.tensor(torch.finfo(torch.float16).min, dtype=dtype))

    def attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                  **kwargs: Any) -> Any:
        if attention_mask is not None:
            attention_mask = attention_mask[:, :, :, : key.shape[-2]]
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    masks, kernels = AttentionMaskInterface._global_mapping, AttentionInterface._global_mapping
    saved = masks["sdpa"], kernels["sdpa"]
    masks["sdpa"], kernels["sdpa"] = mask, attention
    try:
        yield
    finally:
        masks["sdpa"], kernels["sdpa"] = saved
