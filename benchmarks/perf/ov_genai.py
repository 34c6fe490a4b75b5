"""OpenVINO GenAI as a measured engine candidate for ``engines.py`` (issue 11), not a backend.

The merged default model (base + adapter, built by ``ort_genai.prepare``: OpenVINO GenAI takes no
PEFT adapter either) is exported to OpenVINO IR by optimum-intel's ``optimum-cli export
openvino``. optimum-intel 2.2 refuses transformers 5, so the export runs in an environment of
its own: ``DEEPKE_OV_EXPORT`` names its ``optimum-cli`` (e.g. a venv with ``optimum-intel[openvino]
"transformers<5" "huggingface-hub<1"``); running the IR needs only ``openvino-genai`` here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from deepke_llm.backends.base import GenerationConfig
from deepke_llm.io import atomic_path
from deepke_llm.prompts.chat import Prompt, render_prompt


def prepare(merged: Path, weight_format: str) -> Path:
    """The OpenVINO IR of ``merged`` at ``weight_format`` (fp32, int8, int4), exported once."""
    out = merged.parent / f"openvino-{weight_format}"  # beside its merged model
    if not (out / "openvino_model.xml").is_file():
        cli = os.environ.get("DEEPKE_OV_EXPORT", "optimum-cli")
        with atomic_path(out) as tmp:  # an interrupted export is never reused
            subprocess.run([cli, "export", "openvino", "--model", str(merged), "--task",
                            "text-generation-with-past", "--weight-format", weight_format,
                            str(tmp)], check=True, stdout=subprocess.DEVNULL)
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
