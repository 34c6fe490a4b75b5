"""Local generation with OpenVINO GenAI (``openvino_genai.LLMPipeline``) on the CPU.

A transformers model dir (+ an optional PEFT adapter) is exported once to OpenVINO's stateful
IR by :func:`~deepke_llm.backends.openvino_export.export_openvino` and cached under
``<cache dir>/openvino/<key>`` (the key covers the weight files and the adapter). Prompts are
rendered and tokenized by the model's own transformers tokenizer, as the ``hf`` backend does,
and each batch goes to the pipeline as token ids (its continuous-batching scheduler runs the
rows together). Greedy unless ``config.temperature > 0``. No decoding constraint yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepke_llm.backends.base import GenerationConfig, GenerationStats, cut_at_stop
from deepke_llm.prompts.chat import Prompt, encode_rendered, render_prompt

__all__ = ["OpenVinoBackend", "openvino_dir"]


class OpenVinoBackend:
    """A transformers model dir run by OpenVINO GenAI, exported to its IR on first use."""

    engine = "openvino"
    supports_constraints = False

    def __init__(self, model: str | Path, lora: str | Path | None = None,
                 chat_template: str = "auto", threads: int | None = None,
                 device: str = "CPU", precision: str = "auto") -> None:
        import openvino_genai
        from transformers import AutoTokenizer

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if (threads or cpus or 1) < 2:
            # openvino_genai 2026.4 kills the process (SIGFPE) building a pipeline on one thread
            raise ValueError("--engine openvino needs at least 2 CPU threads (OpenVINO GenAI "
                             "crashes with one): use --threads 2 or more, or --engine llamacpp")
        path = Path(model)
        if not (path / "config.json").is_file():
            raise ValueError(f"model {model}: not a transformers model dir (no config.json); "
                             "the openvino engine exports local model dirs")
        self.model_name = str(model)
        self.chat_template = chat_template
        self.threads = threads
        self.ir_dir = openvino_dir(path, lora)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.ir_dir))
        options: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        if precision == "f32":  # OpenVINO's default computes in bf16 where the CPU has it
            options.update(INFERENCE_PRECISION_HINT="f32", KV_CACHE_PRECISION="f32")
        elif precision != "auto":
            raise ValueError(f"precision {precision!r}: use auto (bf16 where the CPU has it, "
                             "a float16 KV cache) or f32")
        self.pipeline = openvino_genai.LLMPipeline(str(self.ir_dir), device, **options)
        self._genai = openvino_genai
        self._eos = _eos_token_ids(self.ir_dir, self.tokenizer)
        self.context_length = getattr(self.tokenizer, "model_max_length", None)
        if not self.context_length or self.context_length > 1_048_576:
            self.context_length = 2048
        self.cancel = threading.Event()
        """Checked between batches (the pipeline runs a batch to its end)."""
        self.stats = GenerationStats()

    def __repr__(self) -> str:
        return f"OpenVinoBackend({self.model_name!r}, threads={self.threads})"

    def render(self, prompt: Prompt) -> str:
        return render_prompt(prompt, self.chat_template, self.tokenizer)

    def encode_prompt(self, prompt: Prompt) -> list[int]:
        return encode_rendered(self.tokenizer, self.render(prompt))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """One output per prompt, in order; batches of ``config.batch_size`` rows."""
        import numpy as np
        import openvino as ov

        from deepke_llm.backends.base import GenerationCancelled

        started = time.perf_counter()
        settings = self._settings(config)
        outputs: list[str] = []
        for first in range(0, len(prompts), config.batch_size):
            if self.cancel.is_set():
                raise GenerationCancelled("generation cancelled")
            rows = [self.encode_prompt(p) for p in prompts[first:first + config.batch_size]]
            width = max(len(r) for r in rows)
            pad = self.tokenizer.pad_token_id or 0
            ids = np.array([[pad] * (width - len(r)) + r for r in rows], dtype=np.int64)
            mask = np.array([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=np.int64)
            inputs = self._genai.TokenizedInputs(ov.Tensor(ids), ov.Tensor(mask))
            for tokens in self.pipeline.generate(inputs, settings).tokens:
                tokens = [t for t in tokens if t not in self._eos]
                self.stats.generated_tokens += len(tokens)
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                outputs.append(cut_at_stop(text, config.stop))
            self.stats.prompts += len(rows)
            self.stats.prompt_tokens += sum(len(r) for r in rows)
        self.stats.seconds += time.perf_counter() - started
        return outputs

    def _settings(self, config: GenerationConfig) -> Any:
        settings = self.pipeline.get_generation_config()
        settings.max_new_tokens = config.max_new_tokens
        settings.do_sample = config.temperature > 0
        if settings.do_sample:
            settings.temperature, settings.top_p = config.temperature, config.top_p
            if config.seed is not None:
                settings.rng_seed = config.seed
        settings.apply_chat_template = False  # prompts arrive rendered and tokenized
        settings.stop_token_ids = set(self._eos)
        if config.stop:
            settings.stop_strings = set(config.stop)
        return settings

    def close(self) -> None:
        """Drop the pipeline (its memory goes with it)."""
        self.pipeline = None


def openvino_dir(model: Path, lora: str | Path | None = None) -> Path:
    """The cached IR of ``model`` (+ ``lora``), exported on first use."""
    from deepke_llm.backends.openvino_export import export_openvino
    from deepke_llm.default_model import cache_dir

    key = hashlib.sha256()
    for file in sorted(model.glob("*.safetensors")) + [model / "config.json"]:
        stat = file.stat()
        key.update(f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    if lora is not None:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            key.update((Path(lora) / name).read_bytes())
    out = cache_dir() / "openvino" / key.hexdigest()[:16]
    if not (out / "openvino_model.xml").is_file():
        export_openvino(model, out, lora=lora)
    return out


def _eos_token_ids(ir_dir: Path, tokenizer: Any) -> list[int]:
    """The end-of-sequence ids of the generation config (Gemma lists several), else the
    tokenizer's."""
    ids: list[int] = []
    config = ir_dir / "generation_config.json"
    value = json.loads(config.read_text()).get("eos_token_id") if config.is_file() else None
    for item in value if isinstance(value, list) else [value, tokenizer.eos_token_id]:
        if item is not None and item not in ids:
            ids.append(int(item))
    return ids
