"""A training step under the shipped DeepSpeed ZeRO-2 / ZeRO-3 configs, on CPU, in one process (gloo).

Each stage runs in its own Python process: DeepSpeed and accelerate keep process-wide distributed
state that would leak into the other tests.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
import deepspeed.comm.torch as ds_torch
# the shared-memory all-reduce kernel only speeds up multi-process CPU runs, and compiling it
# takes ~50 s on a fresh machine: not needed for a one-process test
ds_torch.build_shm_op = lambda: None
from deepke_llm.training.pretrain import PretrainConfig, build_trainer
config = PretrainConfig(**json.loads(sys.argv[1]))
trainer = build_trainer(config)
result = trainer.train()
trainer.save_model(config.output_dir)
plugin = trainer.accelerator.state.deepspeed_plugin
print("RESULT " + json.dumps({
    "zero_stage": plugin.zero_stage if plugin else None,
    "engine": type(trainer.model_wrapped).__name__,
    "global_step": trainer.state.global_step,
    "losses": [log["loss"] for log in trainer.state.log_history if "loss" in log],
}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, tiny_tokenizer_dir) -> str:
    from deepke_llm.training.corpus_prepare import PrepareOptions, prepare_corpus

    root = tmp_path_factory.mktemp("ds-corpus")
    source = root / "docs.txt"
    source.write_text("\n\n".join(f"Japan beat Syria {i}-1. Oracle hired John Smith in {1990 + i}."
                                  for i in range(40)), encoding="utf-8")
    prefix = str(root / "corpus")
    prepare_corpus([str(source)], str(tiny_tokenizer_dir), prefix, PrepareOptions(max_len=32, min_len=4))
    return prefix


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_a_training_step_runs_under_the_shipped_zero_config(stage, tiny_corpus, tiny_llama_dir, tmp_path):
    from safetensors.torch import load_file

    model = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, model)
    out = tmp_path / "out"
    config = dict(model=str(model), data=tiny_corpus, output_dir=str(out), max_steps=2,
                  per_device_batch_size=2, learning_rate=1e-2, logging_steps=1, save_steps=100,
                  use_cpu=True, deepspeed=stage, resume="none")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
           "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "DS_ACCELERATOR": "cpu",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(config)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])

    assert result["zero_stage"] == int(stage[-1])
    assert result["engine"] == "DeepSpeedEngine"
    assert result["global_step"] == 2
    assert len(result["losses"]) == 2 and all(0 < loss < 20 for loss in result["losses"])
    before, after = load_file(str(model / "model.safetensors")), load_file(str(out / "model.safetensors"))
    # ZeRO-3 saves gathered (full-shape) weights, and the optimizer step changed them
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in before.items()}
    assert any((after[k].float() - before[k].float()).abs().max() > 1e-4 for k in before)
