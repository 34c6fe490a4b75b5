"""SftConfig validation and round trip, the `train sft` command line, and the shipped recipes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepke_llm.cli import main
from deepke_llm.training.common import resolve_deepspeed_config, save_run_config
from deepke_llm.training.sft import run as sft_run
from deepke_llm.training.sft.config import CONFIG_FILENAME, SftConfig, load_sft_config
from deepke_llm.training.sft.model import default_target_modules
from deepke_llm.training.sft.run import SftResult

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "training" / "sft").glob("*.yaml"))


def test_saved_config_round_trips_with_the_package_version(tmp_path):
    from deepke_llm import __version__

    config = SftConfig(model="m", train_file="t.jsonl", output_dir="o", lora_r=32,
                       target_modules="q_proj, v_proj", packing=True, val_size=0.1)
    path = save_run_config(config, tmp_path, CONFIG_FILENAME)
    saved = json.loads(path.read_text())
    assert saved["deepke_llm_version"] == __version__
    assert saved["target_modules"] == ["q_proj", "v_proj"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the version stamp is not an unknown key
        assert load_sft_config(str(path)) == config


def test_run_config_temp_file_is_per_process(tmp_path, monkeypatch):
    # two processes saving at once (e.g. ranks of a launch) never share a temp file
    renamed = []
    original = os.replace

    def spy(source, target):
        renamed.append(Path(source).name)
        return original(source, target)

    monkeypatch.setattr(os, "replace", spy)
    save_run_config(SftConfig(model="m"), tmp_path, CONFIG_FILENAME)
    assert renamed == [f".{CONFIG_FILENAME}.tmp-{os.getpid()}"]
    assert [p.name for p in tmp_path.iterdir()] == [CONFIG_FILENAME]


def test_packing_is_refused_where_transformers_cannot_separate_packed_examples(tmp_path, monkeypatch):
    import transformers.masking_utils as masking_utils

    train = tmp_path / "t.jsonl"
    train.write_text("")
    config = SftConfig(model="m", train_file=str(train), output_dir=str(tmp_path / "o"), packing=True)
    monkeypatch.delattr(masking_utils, "find_packed_sequence_indices")
    with pytest.raises(ValueError, match=r"^packing: transformers .* cannot keep packed examples apart") as info:
        sft_run.run_sft(config)
    assert "\n" not in str(info.value) and not (tmp_path / "o").exists()
    # flash_attention_2 separates them by the position ids itself
    sft_run.check_packing_support("flash_attention_2")


def test_tokens_seen_argument_matches_the_installed_transformers():
    import dataclasses

    from transformers import TrainingArguments

    @dataclasses.dataclass
    class Transformers446Args:  # the declared minimum: a bool, no warmup_ratio change yet
        warmup_ratio: float = 0.0
        include_num_input_tokens_seen: bool = False

    config = SftConfig(warmup=0.1)
    assert sft_run._renamed_args(config, dataclasses.fields(Transformers446Args)) == {
        "warmup_ratio": 0.1, "include_num_input_tokens_seen": True}
    args = sft_run._renamed_args(config)
    assert args["include_num_input_tokens_seen"] == "non_padding"  # transformers 5 takes strings
    assert TrainingArguments(output_dir="x", use_cpu=True, **args).include_num_input_tokens_seen == "non_padding"


def test_unknown_keys_warn_and_are_ignored(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("model: m\nlora_rank: 4\ncutoff_len: 512\nlora_r: 4\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"ignoring unknown config keys \['cutoff_len', 'lora_rank'\]"):
        config = load_sft_config(str(path))
    assert config.lora_r == 4 and config.model == "m"


def test_overrides_win_and_none_means_not_given(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"model": "m", "lora_r": 4, "epochs": 2}), encoding="utf-8")
    config = load_sft_config(str(path), {"lora_r": 16, "epochs": None})
    assert (config.lora_r, config.epochs) == (16, 2)


@pytest.mark.parametrize(("changes", "message"), [
    ({"method": "prefix"}, "method: 'prefix' is not one of lora, qlora, full"),
    ({"chat_template": "chatml"}, "chat_template: 'chatml' is not one of"),
    ({"lora_dropout": 1.0}, r"lora_dropout: must be in \[0, 1\)"),
    ({"lora_r": 0}, "lora_r: must be >= 1"),
    ({"val_size": 2.5}, "val_size: a fraction"),
    ({"merge": True, "method": "full"}, "merge: method full trains the whole model"),
])
def test_invalid_values_fail_with_the_field_name(changes, message):
    with pytest.raises(ValueError, match=message):
        SftConfig(**changes)


def test_every_field_has_help_and_a_cli_option():
    help_text = CliRunner().invoke(main, ["train", "sft", "--help"]).output
    for field in fields(SftConfig):
        assert field.metadata.get("help"), field.name
        assert "--" + field.name.replace("_", "-") in help_text, field.name
    assert "Example" in help_text and "deepspeed --num_gpus" in help_text


def test_cli_flags_override_the_recipe(tmp_path, monkeypatch):
    seen = []

    def fake_run(config):
        seen.append(config)
        return SftResult(config.output_dir, {"train_loss": 1.25, "train_tokens_per_second": 99.0},
                         {"examples": 3, "dropped_too_long": 1})

    monkeypatch.setattr(sft_run, "run_sft", fake_run)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: base\ntrain_file: t.jsonl\noutput_dir: out\nlora_r: 4\n"
                      "packing: true\n", encoding="utf-8")
    # as the help's `deepspeed --module deepke_llm.cli train sft ...` example runs it: the launcher
    # puts --local_rank=N right after the module, before the subcommand
    result = CliRunner().invoke(main, ["--local_rank=3", "train", "sft", "--config", str(recipe),
                                       "--lora-r", "16", "--no-packing", "--target-modules",
                                       "q_proj,v_proj", "--val-size", "0.1"])
    assert result.exit_code == 0, result.output
    # the sft command itself has no rank option (the top-level group takes it)
    after = CliRunner().invoke(main, ["train", "sft", "--local_rank=3"])
    assert after.exit_code == 2 and "No such option '--local_rank'" in after.output
    (config,) = seen
    assert (config.model, config.lora_r, config.packing) == ("base", 16, False)
    assert config.target_modules == ["q_proj", "v_proj"] and config.val_size == 0.1
    assert result.stderr.startswith("train sft: 3 examples (1 dropped as longer than --max-len), "
                                     "train loss 1.2500, 99 tokens/s -> out")


def test_output_flags_and_numeric_ranges(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(sft_run, "run_sft", lambda config: seen.append(config) or SftResult(
        config.output_dir, {}, {"examples": 1, "dropped_too_long": 0}))
    train = tmp_path / "t.jsonl"
    train.write_text("")
    base = ["train", "sft", "--model", "m", "--train-file", str(train)]
    # -o and --output are the shared output flag; --output-dir, the old spelling, still works
    for flag in ("-o", "--output", "--output-dir"):
        assert CliRunner().invoke(main, [*base, flag, str(tmp_path / flag)]).exit_code == 0
    assert [c.output_dir for c in seen] == [str(tmp_path / f) for f in ("-o", "--output",
                                                                        "--output-dir")]
    # a number below the field's minimum is a usage error, named by click
    result = CliRunner().invoke(main, [*base, "-o", str(tmp_path / "o"), "--lora-r", "0"])
    assert result.exit_code == 2 and "--lora-r" in result.output and "x>=1" in result.output
    # an output that is one of the inputs is refused before anything runs
    result = CliRunner().invoke(main, [*base, "-o", str(train)])
    assert result.exit_code == 2 and "is the input" in result.output and len(seen) == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "m", "--output-dir", "o"], "error: train_file: required"),
    (["--model", "m", "--train-file", "t", "--output-dir", "o", "--method", "bogus"],
     "error: method: 'bogus' is not one of"),
    (["--config", "missing.yaml"], "error: missing.yaml:"),
])
def test_cli_input_errors_exit_1_with_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", "sft", *args])
    assert result.exit_code == 1
    assert result.output.startswith(message) and result.output.count("\n") == 1


def test_cli_reports_a_missing_training_file(tmp_path):
    result = CliRunner().invoke(main, ["train", "sft", "--model", str(tmp_path), "--train-file",
                                       str(tmp_path / "nope.jsonl"), "--output-dir",
                                       str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "nope.jsonl: training data file not found" in result.output


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipes_load_cleanly(recipe):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_sft_config(str(recipe))
    config.check_required()
    assert config.method == "lora" and config.lora_r >= 8
    assert (recipe.with_suffix(".sh")).is_file()


def test_recipes_cover_the_issue_families():
    names = {p.stem for p in RECIPES}
    assert names == {"knowlm_zhixi_13b", "oneke", "qwen2_5", "llama3", "default_small",
                     "default_small_stage2"}
    templates = {p.stem: load_sft_config(str(p)).chat_template for p in RECIPES}
    assert templates["oneke"] == "oneke" and templates["knowlm_zhixi_13b"] == "alpaca"


def test_family_target_modules():
    assert default_target_modules("llama") == ["q_proj", "k_proj", "v_proj", "o_proj",
                                               "gate_proj", "up_proj", "down_proj"]
    assert default_target_modules("baichuan")[0] == "W_pack"
    assert "query_key_value" in default_target_modules("chatglm")
    assert default_target_modules("some_new_family") == "all-linear"


def test_launch_script_calls_deepspeed_with_the_recipe(tmp_path):
    fake = tmp_path / "bin" / "deepspeed"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "args.txt"
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "ARGS_OUT": str(out)}
    script = REPO / "training" / "sft" / "oneke.sh"
    subprocess.run(["bash", str(script), "--max-steps", "5"], env=env, check=True, timeout=30)
    args = out.read_text().splitlines()
    assert args[:1] == ["--no_local_rank"] and args[3:5] == ["--num_gpus", "4"]
    module_at = args.index("--module")
    assert args[module_at + 1:module_at + 4] == ["deepke_llm.cli", "train", "sft"]
    user_args = args[module_at + 2:]
    assert user_args[2:4] == ["--config", str(script.with_suffix(".yaml"))]
    assert user_args[-4:] == ["--deepspeed", "zero2", "--max-steps", "5"]
    assert resolve_deepspeed_config("zero2").endswith("training/configs/ds_zero2.json")
    # without DeepSpeed (e.g. QLoRA on one GPU) the option is left out
    subprocess.run(["bash", str(script)], env={**env, "DEEPSPEED_CONFIG": ""}, check=True,
                   timeout=30)
    assert "--deepspeed" not in out.read_text().splitlines()


def test_config_fields_are_plain_data():
    # saved configs must stay JSON: no paths, enums or nested objects
    for value in asdict(SftConfig()).values():
        assert isinstance(value, str | int | float | bool | list)


def test_group_by_length_batches_similar_lengths_with_the_installed_transformers():
    import dataclasses
    import random
    from types import SimpleNamespace

    from transformers import Trainer, TrainingArguments

    @dataclasses.dataclass
    class Transformers446Args:  # 4.x: a bool of its own
        group_by_length: bool = False

    config = SftConfig(group_by_length=True)
    assert sft_run._renamed_args(config, dataclasses.fields(Transformers446Args))["group_by_length"] is True
    assert "train_sampling_strategy" not in sft_run._renamed_args(SftConfig(group_by_length=True, packing=True))
    args = TrainingArguments(output_dir="x", use_cpu=True, per_device_train_batch_size=8,
                             **sft_run._renamed_args(config))
    rng = random.Random(0)
    rows = [{"input_ids": [1] * rng.choice([40, 60, 110, 400, 700])} for _ in range(800)]
    order = list(Trainer._get_train_sampler(SimpleNamespace(args=args, processing_class=None,
                                                            train_dataset=rows)))
    assert sorted(order) == list(range(800))  # every example once

    def padded(indices):
        return sum(8 * max(len(rows[i]["input_ids"]) for i in indices[k:k + 8])
                   for k in range(0, len(indices), 8))

    shuffled = list(range(800))
    rng.shuffle(shuffled)
    real = sum(len(r["input_ids"]) for r in rows)
    assert real / padded(order) > 0.9 > 0.6 > real / padded(shuffled)
