"""A training step under the shipped DeepSpeed ZeRO-2 / ZeRO-3 configs, on CPU, in one process (gloo),
as on a fresh machine: no C++ op is compiled, and a build lock left by a killed build can neither
hang the run nor any later one.

Each stage runs in its own Python process: DeepSpeed and accelerate keep process-wide distributed
state that would leak into the other tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
from training_helpers import built_ops, fresh_machine_env, stale_lock

pytest.importorskip("deepspeed")

SCRIPT = r"""
import json, sys
from deepke_llm.training.pretrain.config import PretrainConfig
from deepke_llm.training.pretrain.run import build_trainer
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


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, tiny_tokenizer_dir) -> str:
    from deepke_llm.training.pretrain.prepare import PrepareOptions, prepare_corpus

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
    env = fresh_machine_env(tmp_path)
    # the timeout only guards against a hang (the stale lock used to make this wait forever)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(config)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert built_ops(tmp_path) == []  # one process needs no C++ op: nothing compiled

    assert result["zero_stage"] == int(stage[-1])
    assert result["engine"] == "DeepSpeedEngine"
    assert result["global_step"] == 2
    assert len(result["losses"]) == 2 and all(0 < loss < 20 for loss in result["losses"])
    before, after = load_file(str(model / "model.safetensors")), load_file(str(out / "model.safetensors"))
    # ZeRO-3 saves gathered (full-shape) weights, and the optimizer step changed them
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in before.items()}
    assert any((after[k].float() - before[k].float()).abs().max() > 1e-4 for k in before)


BUILD_SHM_OP = r"""
import importlib
from deepke_llm.training.deepspeed_setup import prepare_deepspeed
prepare_deepspeed()
importlib.import_module("deepspeed.comm.torch").build_shm_op()
"""


def test_a_stale_build_lock_is_a_one_line_error_not_an_endless_wait(tmp_path):
    # several processes do build the shm op: the build must not wait on a dead build's lock
    env = fresh_machine_env(tmp_path, world_size=2)
    proc = subprocess.run([sys.executable, "-c", BUILD_SHM_OP], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    lock = tmp_path / "torch_extensions" / "deepspeed_shm_comm" / "lock"
    assert proc.returncode != 0
    assert "StaleBuildLockError" in proc.stderr and f"delete {lock} and run again" in proc.stderr
    assert lock.exists() and built_ops(tmp_path) == []  # reported, not removed behind anyone's back


def test_a_build_lock_is_stale_only_when_old_and_unheld(tmp_path):
    from torch.utils import cpp_extension

    from deepke_llm.training.deepspeed_setup import (
        StaleBuildLockError,
        check_build_lock,
        prepare_deepspeed,
    )

    prepare_deepspeed()
    lock = stale_lock(tmp_path)
    with pytest.raises(StaleBuildLockError, match="min old that no process holds"):
        cpp_extension.FileBaton(str(lock)).wait()
    # an old lock a live builder still holds open (torch keeps it open while compiling) is not
    handle = os.open(lock, os.O_RDONLY)
    try:
        check_build_lock(lock)
    finally:
        os.close(handle)
    # nor is a young one: the baton waits for it as torch's own does
    young = tmp_path / "young" / "lock"
    young.parent.mkdir()
    young.touch()
    check_build_lock(young)
    baton = cpp_extension.FileBaton(str(young), wait_seconds=0.01)
    timer = threading.Timer(0.2, young.unlink)
    timer.start()
    baton.wait()
    timer.join()
    assert not young.exists()


@pytest.mark.parametrize("command", ["pretrain", "sft"])
def test_the_training_commands_report_a_stale_lock_in_one_line(command, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deepke_llm.cli import main
    from deepke_llm.training.deepspeed_setup import StaleBuildLockError, check_build_lock
    from deepke_llm.training.pretrain import run as pretrain_run
    from deepke_llm.training.sft import run as sft_run

    lock = stale_lock(tmp_path / "torch_extensions")

    def start(*args, **kwargs):
        check_build_lock(lock)  # what DeepSpeed's op build now runs into

    monkeypatch.setattr(pretrain_run, "run_pretraining", start)
    monkeypatch.setattr(sft_run, "run_sft", start)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"model": "m", "data": "d", "train_file": "t", "deepspeed": "zero2"}))
    args = (["pretrain", "run", "--config", str(config)] if command == "pretrain"
            else ["train", "sft", "--model", "m", "--train-file", "t", "--deepspeed", "zero2",
                  "--output-dir", str(tmp_path / "out")])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.strip().count("\n") == 0 and f"delete {lock} and run again" in result.output
    assert StaleBuildLockError.__name__ not in result.output
