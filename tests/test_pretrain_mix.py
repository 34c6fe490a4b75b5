"""Data order for pretraining: mixing quotas, seeded per-epoch order, collation, run configs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from deepke_llm.training.common import load_run_config, resolve_deepspeed_config, save_run_config
from deepke_llm.training.pretrain.config import PretrainConfig
from deepke_llm.training.pretrain.indexed_dataset import IndexedDataset, IndexedDatasetWriter
from deepke_llm.training.pretrain.mixing import MixtureSampler, mixing_weights, source_quotas
from deepke_llm.training.pretrain.run import collate_packed


def test_quotas_follow_weights_and_sum_to_the_total():
    assert source_quotas(np.array([10, 10, 10]), np.array([1.0, 3.0, 0.0]), 100).tolist() == [25, 75, 0]
    assert source_quotas(np.array([5, 5, 5]), np.array([1.0, 1.0, 1.0]), 10).tolist() == [4, 3, 3]
    # a source without samples gets nothing, whatever its weight
    assert source_quotas(np.array([0, 7]), np.array([5.0, 1.0]), 9).tolist() == [0, 9]
    with pytest.raises(ValueError, match="no source"):
        source_quotas(np.array([0, 7]), np.array([1.0, 0.0]), 9)


def _sampler(seed=3, weights=(1.0, 3.0), total=80):
    source_ids = np.array([0] * 50 + [1] * 10)  # 50 samples of source 0, 10 of source 1
    return MixtureSampler(source_ids, np.array(weights), seed, total)


def test_epoch_order_is_a_pure_function_of_seed_and_epoch():
    a, b = _sampler(), _sampler()
    assert a.epoch_order(2).tolist() == b.epoch_order(2).tolist()
    assert a.epoch_order(0).tolist() != a.epoch_order(1).tolist()
    assert a.epoch_order(0).tolist() != _sampler(seed=4).epoch_order(0).tolist()
    a.set_epoch(5)
    assert list(a) == b.epoch_order(5).tolist() and len(a) == 80


def test_a_run_long_sampler_chains_data_epochs_so_resume_needs_no_set_epoch():
    sampler = MixtureSampler(np.array([0] * 50 + [1] * 10), np.array([1.0, 3.0]), 3, 80, total_samples=200)
    order = list(sampler)
    assert len(sampler) == len(order) == 200
    assert order == [i for e in range(3) for i in sampler.epoch_order(e).tolist()][:200]


def test_each_epoch_mixes_sources_by_weight():
    sampler = _sampler()
    for epoch in range(3):
        order = sampler.epoch_order(epoch)
        counts = Counter((order >= 50).tolist())
        assert (counts[False], counts[True]) == (20, 60)


def test_sources_are_swept_without_repeats_before_any_sample_repeats():
    sampler = _sampler()
    # the up-weighted source (10 samples, 60 picks per epoch) is read in whole permutations
    picks = [i for e in range(2) for i in sampler.epoch_order(e).tolist() if i >= 50]
    first_epoch = [i for i in sampler.epoch_order(0).tolist() if i >= 50]
    assert Counter(first_epoch) == Counter({i: 6 for i in range(50, 60)})
    assert len(picks) == 120
    # the down-weighted source (50 samples, 20 per epoch) shows only new samples in epochs 0-1,
    # and over 5 epochs (100 picks) every sample exactly twice
    seen = [i for e in range(2) for i in sampler.epoch_order(e).tolist() if i < 50]
    assert len(set(seen)) == 40
    seen = [i for e in range(5) for i in sampler.epoch_order(e).tolist() if i < 50]
    assert Counter(seen) == Counter({i: 2 for i in range(50)})


def _tiny_indexed(tmp_path) -> IndexedDataset:
    writer = IndexedDatasetWriter(tmp_path / "d", np.uint16)
    writer.add_samples([np.arange(3), np.arange(4)], 0)
    writer.add_samples([np.arange(5)], 1)
    writer.finish({"sources": [{"name": "wiki"}, {"name": "news"}], "vocab_size": 10})
    return IndexedDataset(tmp_path / "d")


def test_mixing_weights_from_config_or_natural(tmp_path):
    ds = _tiny_indexed(tmp_path)
    assert mixing_weights(ds, {}).tolist() == [2.0, 1.0]
    assert mixing_weights(ds, {"news": 2}).tolist() == [0.0, 2.0]
    with pytest.raises(ValueError, match=r"unknown sources \['blogs'\]"):
        mixing_weights(ds, {"blogs": 1})


def test_collate_pads_and_masks_labels_but_keeps_real_eos():
    import torch

    eos = 2
    batch = collate_packed([{"input_ids": torch.tensor([1, 5, eos]), "sample_index": 4},
                            {"input_ids": torch.tensor([1, eos]), "sample_index": 9}], pad_id=eos)
    assert batch["input_ids"].tolist() == [[1, 5, 2], [1, 2, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[1, 5, 2], [1, 2, -100]]
    assert batch["sample_index"].tolist() == [4, 9]


def test_config_validation_files_and_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match="per_device_batch_size"):
        PretrainConfig(model="m", data="d", per_device_batch_size=0)
    with pytest.raises(ValueError, match="mix"):
        PretrainConfig(model="m", data="d", mix={"a": -1})
    with pytest.raises(ValueError, match="'model' is required"):
        PretrainConfig(model="", data="d")
    path = tmp_path / "run.yaml"
    path.write_text("model: m\ndata: d\nmax_steps: 5\nmix: {wiki: 2}\nold_option: 1\n")
    with pytest.warns(UserWarning, match="old_option"):
        config = load_run_config(path, PretrainConfig, {"max_steps": 9, "resume": None})
    assert (config.max_steps, config.mix, config.resume) == (9, {"wiki": 2}, "auto")
    saved = json.loads(save_run_config(config, tmp_path / "out", "c.json").read_text())
    assert saved["max_steps"] == 9 and "deepke_llm_version" in saved
    assert resolve_deepspeed_config("zero3").endswith("training/configs/ds_zero3.json")
    with pytest.raises(ValueError, match="neither a file"):
        resolve_deepspeed_config("zero9")


def test_deepspeed_presets_resolve_from_an_installed_package(tmp_path):
    """Presets are package data (importlib.resources), found without the source tree's training/."""
    import shutil
    import subprocess
    import sys

    import deepke_llm

    site = tmp_path / "site"
    # what a wheel install lays out: the package with its links replaced by the files they point to
    shutil.copytree(Path(deepke_llm.__file__).parent, site / "deepke_llm", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "adapters"))
    code = ("from deepke_llm.training.common import resolve_deepspeed_config as r; "
            "print('\\n'.join(r(n) for n in ('zero2', 'zero3', 'zero3_offload')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}, timeout=60, check=True)
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert paths == [site / "deepke_llm" / "training" / "configs" / f"ds_{n}.json"
                     for n in ("zero2", "zero3", "zero3_offload")]
    assert not any(p.is_symlink() for p in paths)
    assert json.loads(paths[1].read_text())["zero_optimization"]["stage"] == 3


@pytest.mark.parametrize("name", ["ds_zero2", "ds_zero3", "ds_zero3_offload"])
def test_shipped_deepspeed_configs_leave_batch_and_precision_to_the_trainer(name):
    config = json.loads(Path(resolve_deepspeed_config(name[3:])).read_text())
    assert config["zero_optimization"]["stage"] == int(name[len("ds_zero")])
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert config[key] == "auto"
    assert config["bf16"]["enabled"] == config["fp16"]["enabled"] == "auto"


def test_recipe_config_loads_cleanly_and_readme_documents_every_field():
    import dataclasses
    import warnings

    recipe = Path(__file__).resolve().parents[1] / "training" / "pretrain"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_run_config(recipe / "pretrain.yaml", PretrainConfig)
    assert config.deepspeed == "zero3" and set(config.mix) == {"wiki", "news", "zh"}
    readme = (recipe / "README.md").read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(PretrainConfig) if f"| {f.name} |" not in readme]
    assert not missing, f"README.md lacks fields {missing}"


def test_cli_run_reports_config_and_data_errors_in_one_line(tmp_path):
    from click.testing import CliRunner

    from deepke_llm.cli import main

    runner = CliRunner()
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"model": "m"}))
    result = runner.invoke(main, ["pretrain", "run", "--config", str(config)])
    assert result.exit_code == 1 and "missing required config field(s) ['data']" in result.output
    config.write_text(json.dumps({"model": "m", "data": str(tmp_path / "nope"), "max_steps": 0}))
    result = runner.invoke(main, ["pretrain", "run", "--config", str(config)])
    assert result.exit_code == 1 and "max_steps must be positive" in result.output
    config.write_text(json.dumps({"model": "m", "data": str(tmp_path / "nope"), "output_dir": str(tmp_path / "o")}))
    # the --help example's launcher form: `deepspeed --module deepke_llm.cli` puts --local_rank=N
    # before the subcommand
    result = runner.invoke(main, ["--local_rank=1", "pretrain", "run", "--config", str(config), "--deepspeed", "zero3"])
    assert result.exit_code == 1 and "nope.bin: indexed dataset file missing" in result.output
    assert not (tmp_path / "o" / "pretrain_config.json").exists()
    # -o/--output override output_dir (as --output-dir does); an output that is the model exits 2
    model = tmp_path / "model"
    model.mkdir()
    config.write_text(json.dumps({"model": str(model), "data": str(tmp_path / "nope")}))
    for flag in ("-o", "--output", "--output-dir"):
        result = runner.invoke(main, ["pretrain", "run", "--config", str(config), flag, str(model)])
        assert result.exit_code == 2 and "is the input" in result.output
    result = runner.invoke(main, ["pretrain", "run", "--config", str(config), "--max-steps", "-2"])
    assert result.exit_code == 2 and "x>=-1" in result.output
