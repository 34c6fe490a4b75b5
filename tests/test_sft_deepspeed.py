"""LoRA SFT with the response-only head under the shipped DeepSpeed ZeRO-2 and ZeRO-3 configs
(CPU, one process, gloo) trains exactly like the run without DeepSpeed; under ZeRO-3 --merge
writes the merged model from the base checkpoint (the in-memory model is partitioned).

The DeepSpeed run gets its own Python process: DeepSpeed and accelerate keep process-wide
distributed state that would leak into other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from training_helpers import built_ops, fresh_machine_env

pytest.importorskip("deepspeed")


SCRIPT = r"""
import json, sys
import torch
torch.set_num_threads(1)
from transformers import TrainerCallback
from deepke_llm.training.sft.run import run_sft
from deepke_llm.training.sft.config import SftConfig

stages = []

class RecordZeroStage(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        stages.append(args.hf_deepspeed_config.config["zero_optimization"]["stage"])

result = run_sft(SftConfig(**json.loads(sys.argv[1])), callbacks=[RecordZeroStage()])
print("RESULT " + json.dumps({"stages": stages, "loss": result.metrics["train_loss"]}))
"""


def _losses(out: Path) -> list[float]:
    lines = (out / "train_log.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if "loss" in json.loads(x)]


SETTINGS = dict(max_steps=3, batch_size=2, logging_steps=1, save_steps=0, learning_rate=1e-2,
                lora_dropout=0.0, max_len=512)


@pytest.fixture()
def plain_losses(one_torch_thread, tiny_llama_copy, iepile_file, tmp_path):
    from deepke_llm.training.sft.config import SftConfig
    from deepke_llm.training.sft.run import run_sft

    plain = tmp_path / "plain"
    run_sft(SftConfig(model=str(tiny_llama_copy), train_file=str(iepile_file),
                      output_dir=str(plain), **SETTINGS))
    return _losses(plain)


def _run_under_deepspeed(stage: str, base: Path, train_file: Path, out: Path, **extra) -> dict:
    # a fresh HOME with a dead build's lock in the torch extensions dir: must neither hang nor build
    env = fresh_machine_env(out.parent / f"{out.name}-env")
    config = json.dumps({**SETTINGS, "model": str(base), "train_file": str(train_file),
                         "output_dir": str(out), "deepspeed": stage, **extra})
    proc = subprocess.run([sys.executable, "-c", SCRIPT, config], env=env, cwd=out.parent,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    assert built_ops(out.parent / f"{out.name}-env") == []
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_lora_sft_under_zero2_matches_the_plain_run(tiny_llama_copy, iepile_file, tmp_path,
                                                    plain_losses):
    zero2 = tmp_path / "zero2"
    assert _run_under_deepspeed("zero2", tiny_llama_copy, iepile_file, zero2)["stages"] == [2]
    assert (zero2 / "adapter_model.safetensors").is_file()
    assert _losses(zero2) == pytest.approx(plain_losses, rel=1e-4)


@pytest.mark.slow
def test_lora_sft_under_zero3_matches_the_plain_run_and_merges(tiny_llama_copy, iepile_file,
                                                               tmp_path, plain_losses):
    import torch
    from safetensors.torch import load_file

    from deepke_llm.training.weights.lora import merge_lora

    zero3 = tmp_path / "zero3"
    result = _run_under_deepspeed("zero3", tiny_llama_copy, iepile_file, zero3, merge=True)
    assert result["stages"] == [3]
    assert (zero3 / "adapter_model.safetensors").is_file()
    assert _losses(zero3) == pytest.approx(plain_losses, rel=1e-4)
    # the merged model is the full base + adapter (not the rank's empty ZeRO-3 partitions)
    reference = merge_lora(tiny_llama_copy, zero3, tmp_path / "reference")
    got = load_file(str(zero3 / "merged" / "model.safetensors"))
    want = load_file(str(reference.out / "model.safetensors"))
    base = load_file(str(tiny_llama_copy / "model.safetensors"))
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in base.items()}
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert any(not torch.equal(got[k], base[k]) for k in base)
