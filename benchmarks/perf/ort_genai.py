"""ONNX Runtime GenAI as a measured engine candidate for ``engines.py`` (issue 11), not a backend.

``prepare(cache, precision)`` merges the default adapter into its base and ``build`` runs onnxruntime-genai's model builder on a merged
transformers checkpoint (``deepke-llm weights merge-lora``): base + adapter in one model, since the
builder takes no LoRA. Two shims, both for onnxruntime-genai 0.18 with transformers 5:
- transformers 5 nests Gemma 3's ``rope_parameters`` per layer type; the builder reads the flat
  form, so the config it loads is flattened (full-attention RoPE, ``rope_local_base_freq`` from
  the sliding layers); a checkpoint converted from a GGUF also needs ``architectures`` set.
- ORT GenAI's tokenizer adds no BOS; prompts are encoded by the model's own transformers tokenizer,
  as the ``hf`` backend does, and rows are left-padded with the pad id (the generator masks them).

Install: ``pip install onnxruntime-genai onnx onnx_ir`` (prebuilt wheels, no compiling).
"""

from __future__ import annotations

import json
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepke_llm.backends.base import GenerationConfig
from deepke_llm.io import atomic_path, sha256_file
from deepke_llm.prompts.chat import Prompt, render_prompt

# the sliding layers' KV cache must hold their whole window (512), whatever the prompt length
MAX_LENGTH = 1024


def prepare(cache: Path, precision: str) -> tuple[Path, Path]:
    """(ONNX model dir, tokenizer dir) of the default model + adapter at ``precision``, built
    under ``cache`` once (merged checkpoint, then the ONNX export)."""
    merged = merged_model(cache)
    onnx = merged.parent / f"onnx-{precision}"
    if not onnx.is_dir():
        with atomic_path(onnx) as tmp:  # an interrupted build is never reused
            build(merged, tmp, precision)
    return onnx, merged


def merged_model(cache: Path) -> Path:
    """``cache/merged``: the default model with its adapter merged in (built once), with the
    tokenizer and a config that names its architecture."""
    import shutil

    from deepke_llm.default_model import default_adapter_path, ensure_default_model
    from deepke_llm.training.weights.lora import merge_lora

    adapter = default_adapter_path()
    digest = sha256_file(Path(adapter) / "adapter_model.safetensors")[:12]
    merged = cache / f"adapter-{digest}" / "merged"  # a new default adapter gets its own builds
    if not merged.is_dir():
        base = Path(ensure_default_model())
        merge_lora(base, adapter, merged)
        for tokenizer_file in base.glob("tokenizer*"):
            shutil.copy(tokenizer_file, merged / tokenizer_file.name)
        config = json.loads((merged / "config.json").read_text())
        if not config.get("architectures"):  # a cache converted before the conversion set it
            config["architectures"] = ["Gemma3ForCausalLM"]
            (merged / "config.json").write_text(json.dumps(config, indent=1))
    return merged


def build(model_dir: Path, out_dir: Path, precision: str = "int4") -> Path:
    """Build the ONNX model of ``model_dir`` (a transformers checkpoint) into ``out_dir``."""
    import transformers

    config = json.loads((model_dir / "config.json").read_text())
    if not config.get("architectures"):
        raise ValueError(f"{model_dir}/config.json names no architectures: set "
                         "[\"Gemma3ForCausalLM\"] (or re-run the default model's conversion)")
    original = transformers.AutoConfig.from_pretrained.__func__

    def flat_rope(cls: Any, *args: Any, **kwargs: Any) -> Any:
        loaded = original(cls, *args, **kwargs)
        rope = getattr(loaded, "rope_parameters", None)
        if isinstance(rope, dict) and "full_attention" in rope:
            loaded.rope_local_base_freq = rope["sliding_attention"]["rope_theta"]
            loaded.rope_parameters = dict(rope["full_attention"])
            loaded.rope_theta = rope["full_attention"]["rope_theta"]
        return loaded

    transformers.AutoConfig.from_pretrained = classmethod(flat_rope)
    argv = sys.argv
    try:
        sys.argv = ["builder", "-i", str(model_dir), "-o", str(out_dir), "-p", precision,
                    "-e", "cpu", "-c", str(out_dir) + ".cache"]
        runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__")
    finally:
        sys.argv = argv
        transformers.AutoConfig.from_pretrained = classmethod(original)
    return out_dir


class OrtGenAIEngine:
    """``generate(prompts, config)`` on an ONNX Runtime GenAI model, greedy, rows batched."""

    def __init__(self, onnx_dir: Path, tokenizer_dir: Path, threads: int) -> None:
        import onnxruntime_genai as og
        from transformers import AutoTokenizer

        self._og = og
        config = og.Config(str(onnx_dir))
        config.clear_providers()  # the CPU provider
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
        self.model = og.Model(config)
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        self.pad = self.tokenizer.pad_token_id or 0
        self.eos = self.tokenizer.eos_token_id
        self.model_name = str(onnx_dir)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        import numpy as np

        outputs: list[str] = []
        for start in range(0, len(prompts), config.batch_size):
            rows = [self.tokenizer(render_prompt(p, "plain"))["input_ids"]
                    for p in prompts[start:start + config.batch_size]]
            width = max(len(r) for r in rows)
            ids = np.array([[self.pad] * (width - len(r)) + r for r in rows], dtype=np.int32)
            params = self._og.GeneratorParams(self.model)
            params.set_search_options(max_length=max(MAX_LENGTH, width + config.max_new_tokens),
                                      do_sample=False, batch_size=len(rows))
            generator = self._og.Generator(self.model, params)
            generator.append_tokens(ids)
            steps = 0
            while not generator.is_done() and steps < config.max_new_tokens:
                generator.generate_next_token()
                steps += 1
            for i in range(len(rows)):
                new = list(generator.get_sequence(i))[width:]
                if self.eos in new:
                    new = new[:new.index(self.eos)]
                outputs.append(self.tokenizer.decode(new, skip_special_tokens=True))
        return outputs
