"""LoRA SFT with the response-only head under the shipped DeepSpeed ZeRO-3 config (CPU, one
process, gloo) trains exactly like the run without DeepSpeed.

The DeepSpeed run gets its own Python process: DeepSpeed and accelerate keep process-wide
distributed state that would leak into other tests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_sft_data import iepile_file, iepile_lines, model_dir, write_jsonl  # noqa: F401

pytest.importorskip("deepspeed")

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import torch
torch.set_num_threads(1)
import deepspeed.comm.torch as ds_torch
# the shared-memory all-reduce kernel only helps multi-process CPU runs and takes ~50 s to build
ds_torch.build_shm_op = lambda: None
from transformers import TrainerCallback
from deepke_llm.training.sft import run_sft
from deepke_llm.training.sft_config import SftConfig

stages = []

class RecordZeroStage(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        stages.append(args.hf_deepspeed_config.config["zero_optimization"]["stage"])

result = run_sft(SftConfig(**json.loads(sys.argv[1])), callbacks=[RecordZeroStage()])
print("RESULT " + json.dumps({"stages": stages, "loss": result.metrics["train_loss"]}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _losses(out: Path) -> list[float]:
    lines = (out / "train_log.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if "loss" in json.loads(x)]


@pytest.mark.slow
def test_lora_sft_under_zero3_matches_the_plain_run(model_dir, iepile_file, tmp_path):  # noqa: F811
    import torch

    from deepke_llm.training.sft import run_sft
    from deepke_llm.training.sft_config import SftConfig

    settings = dict(model=str(model_dir), train_file=str(iepile_file), max_steps=3, batch_size=2,
                    logging_steps=1, save_steps=0, learning_rate=1e-2, lora_dropout=0.0,
                    max_len=512)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
           "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO)}
    zero3 = tmp_path / "zero3"
    config = json.dumps({**settings, "output_dir": str(zero3), "deepspeed": "zero3"})
    proc = subprocess.run([sys.executable, "-c", SCRIPT, config], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    assert json.loads(lines[-1][len("RESULT "):])["stages"] == [3]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plain = tmp_path / "plain"
        run_sft(SftConfig(**settings, output_dir=str(plain)))
    finally:
        torch.set_num_threads(threads)
    assert (zero3 / "adapter_model.safetensors").is_file()
    assert _losses(zero3) == pytest.approx(_losses(plain), rel=1e-4)
