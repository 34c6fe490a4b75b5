"""OpenVINO GenAI as a measured candidate for ``engines.py`` (the engine itself: ``--engine openvino``).

The default model with its adapter merged (``ort_genai.merged_model``) is exported to the
stateful OpenVINO IR by :func:`deepke_llm.backends.openvino_export.export_openvino` (no
optimum-intel: see there) and run by ``openvino_genai.LLMPipeline``. Install:
``pip install openvino-genai openvino-tokenizers`` (prebuilt wheels).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deepke_llm.backends.base import GenerationConfig
from deepke_llm.prompts.chat import Prompt, render_prompt


def prepare(merged: Path, weight_format: str = "fp32") -> Path:
    """The OpenVINO IR of ``merged`` (float32 weights), exported once beside it."""
    from deepke_llm.backends.openvino_export import export_openvino

    if weight_format != "fp32":
        raise ValueError(f"ov-{weight_format}: only the float32 IR is exported here")
    out = merged.parent / "openvino"  # (optimum-intel exports, measured earlier, sit beside)
    if not (out / "openvino_model.xml").is_file():
        export_openvino(merged, out)
    return out


class OpenVinoGenAIEngine:
    """``generate(prompts, config)`` through ``openvino_genai.LLMPipeline`` on the CPU, greedy."""

    def __init__(self, ir_dir: Path, threads: int) -> None:
        import openvino_genai

        self._genai = openvino_genai
        self.pipeline = openvino_genai.LLMPipeline(str(ir_dir), "CPU",
                                                   INFERENCE_NUM_THREADS=threads)
        self.model_name = str(ir_dir)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        settings = self._genai.GenerationConfig()
        settings.max_new_tokens = config.max_new_tokens
        settings.do_sample = False
        settings.apply_chat_template = False  # the default model's prompts are plain text
        outputs: list[str] = []
        for start in range(0, len(prompts), config.batch_size):
            texts = [render_prompt(p, "plain") for p in prompts[start:start + config.batch_size]]
            outputs.extend(self.pipeline.generate(texts, settings).texts)
        return outputs
