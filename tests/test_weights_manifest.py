"""recover trusts nothing it cannot verify: a missing manifest is refused unless asked for, a
malformed one (or a malformed adapter config / index) is one line naming the file and the field,
and no file name can point outside the diff directory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import load_file, save_file
from weights_helpers import assert_bit_identical, load_dir, perturb, save_model

from deepke_llm.cli import main
from deepke_llm.io import sha256_file
from deepke_llm.training.weights.diff import MANIFEST, PATCH_FILE, PATCH_INDEX, diff_weights
from deepke_llm.training.weights.io import CheckpointReader, WeightsError
from deepke_llm.training.weights.recover import recover_weights


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, ["weights", *args])


def recover_cli(raw: Path, diff: Path, out: Path, *extra: str) -> Result:
    return cli("recover", "--raw", str(raw), "--diff", str(diff), "--out", str(out), *extra)


def assert_one_line_input_error(result: Result, *expected: str) -> None:
    """Exit 1 through the CLI's error path (not an exception escaping click), one line of text."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.output.startswith("error: ") and result.output.strip().count("\n") == 0, result.output
    for text in expected:
        assert text in result.output, result.output


def edit_manifest(diff: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((diff / MANIFEST).read_text())
    change(manifest)
    (diff / MANIFEST).write_text(json.dumps(manifest))


def nothing_written(root: Path) -> bool:
    return not any(p.name.startswith("out") for p in root.iterdir())


# ---- finding 8: no manifest, no recovery ------------------------------------------------------

def test_a_deleted_manifest_is_refused_not_recovered_unchecked(diff_setup):
    root, raw = diff_setup
    (root / "diff" / MANIFEST).unlink()
    shard = sorted((root / "diff").glob("diff-*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[-7] ^= 0x10  # the tampering the manifest would have caught
    shard.write_bytes(bytes(data))
    for extra in ((), ("--allow-unverified",)):
        result = recover_cli(raw, root / "diff", root / "out", *extra)
        assert_one_line_input_error(result, MANIFEST, "fetch it again")
        assert nothing_written(root)


def test_a_seed_diff_needs_allow_unverified(tmp_path, tiny_llama_state, tiny_llama_dir):
    tuned_state = perturb(tiny_llama_state)
    save_model({n: tuned_state[n] - tiny_llama_state[n] for n in tiny_llama_state}, tmp_path / "diff",
               tiny_llama_dir, layout="bin")
    save_model(tiny_llama_state, tmp_path / "raw", tiny_llama_dir)
    result = recover_cli(tmp_path / "raw", tmp_path / "diff", tmp_path / "out")
    assert_one_line_input_error(result, f"no {MANIFEST}", "--allow-unverified")
    assert nothing_written(tmp_path)
    with pytest.raises(WeightsError, match="allow_unverified=True"):
        recover_weights(tmp_path / "raw", tmp_path / "diff", tmp_path / "out")
    result = recover_cli(tmp_path / "raw", tmp_path / "diff", tmp_path / "out", "--allow-unverified")
    assert result.exit_code == 0, result.output
    assert "without any integrity check" in result.output
    got = load_dir(tmp_path / "out")
    for name, tensor in tuned_state.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-6)


# ---- finding 4: a malformed manifest is one line naming the field -----------------------------

def _first(key: str, value: object) -> Callable[[dict], object]:
    return lambda m: m["tensors"][0].__setitem__(key, value)


MALFORMED: dict[str, tuple[Callable[[dict], object], str]] = {
    "files not a mapping": (lambda m: m.__setitem__("files", ["diff-00001.safetensors"]), "$.files"),
    "file size a string": (lambda m: next(iter(m["files"].values())).__setitem__("size", "12"),
                           "$.files"),
    "file without sha256": (lambda m: next(iter(m["files"].values())).pop("sha256"), "sha256"),
    "tensors not a list": (lambda m: m.__setitem__("tensors", {"a": 1}), "$.tensors"),
    "tensor without sha256": (lambda m: m["tensors"][0].pop("sha256"), "$.tensors[0]"),
    "tensor without name": (lambda m: m["tensors"][0].pop("name"), "$.tensors[0]"),
    "shape of strings": (_first("shape", ["4", "8"]), "$.tensors[0].shape["),
    "unknown encoding": (_first("encoding", "zip"), "$.tensors[0].encoding"),
    "unknown dtype": (_first("dtype", "float128"), "$.tensors[0].dtype"),
    "delta without raw": (lambda m: m["tensors"][0].pop("raw"), "'raw' is a required property"),
    "raw shape missing": (lambda m: m["tensors"][0]["raw"].pop("shape"), "$.tensors[0].raw"),
    "rows beyond the shape": (_first("rows_from_raw", 10**9), "$.tensors[0].rows_from_raw"),
    "duplicate tensor": (lambda m: m["tensors"].append(dict(m["tensors"][0])), "listed twice"),
    "side files of numbers": (lambda m: m.__setitem__("side_files", {"config.json": 3}),
                              "$.side_files"),
    "unlisted shard": (_first("file", "diff-99999.safetensors"), "$.tensors[0].file"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_manifest_fails_in_one_line_naming_the_field(diff_setup, case):
    root, raw = diff_setup
    change, field = MALFORMED[case]
    edit_manifest(root / "diff", change)
    result = recover_cli(raw, root / "diff", root / "out")
    assert_one_line_input_error(result, str(root / "diff" / MANIFEST), field)
    assert nothing_written(root)


@pytest.mark.parametrize("text", ["[" * 100_000, "[1, 2]", '{"format": "deepke-llm-weight-diff"'],
                         ids=["deep nesting", "a list", "truncated"])
def test_a_manifest_that_is_not_a_json_object_fails_in_one_line(diff_setup, text):
    root, raw = diff_setup
    (root / "diff" / MANIFEST).write_text(text)
    assert_one_line_input_error(recover_cli(raw, root / "diff", root / "out"), MANIFEST)
    assert nothing_written(root)


def test_shards_that_contradict_the_manifest_fail_in_one_line(diff_setup):
    root, raw = diff_setup
    manifest = json.loads((root / "diff" / MANIFEST).read_text())
    name = next(e["name"] for e in manifest["tensors"] if e["encoding"] == "delta")
    # a delta tensor relabelled xor: every file still verifies, the payload dtype does not fit
    edit_manifest(root / "diff", lambda m: next(e for e in m["tensors"] if e["name"] == name)
                  .__setitem__("encoding", "xor"))
    result = recover_cli(raw, root / "diff", root / "out")
    assert_one_line_input_error(result, f"diff tensor {name}", "inconsistent with its manifest")
    assert nothing_written(root)


def test_a_patch_outside_its_tensor_fails_in_one_line(tmp_path, tiny_llama_state, tiny_llama_dir):
    raw_state = {n: t.to(torch.bfloat16) for n, t in tiny_llama_state.items()}
    tuned_state = perturb(raw_state)
    name = "model.layers.0.mlp.up_proj.weight"
    raw_state[name][0, 0], tuned_state[name][0, 0] = 1.0, 2.0**-30  # needs a patch
    save_model(raw_state, tmp_path / "raw", tiny_llama_dir)
    save_model(tuned_state, tmp_path / "tuned", tiny_llama_dir)
    diff = tmp_path / "diff"
    diff_weights(tmp_path / "raw", tmp_path / "tuned", diff)
    patches = load_file(str(diff / PATCH_FILE))
    patches[name + PATCH_INDEX] = patches[name + PATCH_INDEX] + 10**9
    save_file(patches, str(diff / PATCH_FILE))
    # a manifest that agrees with the damaged file: the hashes pass, the patch must not
    info = {"size": (diff / PATCH_FILE).stat().st_size, "sha256": sha256_file(diff / PATCH_FILE)}
    edit_manifest(diff, lambda m: m["files"].__setitem__(PATCH_FILE, info))
    result = recover_cli(tmp_path / "raw", diff, tmp_path / "out")
    assert_one_line_input_error(result, PATCH_FILE, f"patch {name} does not fit")
    assert nothing_written(tmp_path)


# ---- finding 8: every name the manifest mentions stays inside the diff ------------------------

@pytest.mark.parametrize("where", ["outside", "absolute"])
def test_manifest_file_names_cannot_leave_the_diff_directory(diff_setup, where):
    root, raw = diff_setup
    diff = root / "diff"
    shard = sorted(diff.glob("diff-*.safetensors"))[0]
    # a verbatim copy outside, so size and sha256 match: only the name gives it away
    moved = root / "elsewhere" / shard.name
    moved.parent.mkdir()
    shutil.move(shard, moved)
    name = f"../elsewhere/{shard.name}" if where == "outside" else str(moved)

    def rename(manifest: dict) -> None:
        manifest["files"][name] = manifest["files"].pop(shard.name)
        for entry in manifest["tensors"]:
            if entry["file"] == shard.name:
                entry["file"] = name

    edit_manifest(diff, rename)
    result = recover_cli(raw, diff, root / "out")
    assert_one_line_input_error(result, "$.files", "not a plain file name")
    assert nothing_written(root)


def test_a_symlink_out_of_the_diff_directory_is_refused(diff_setup):
    root, raw = diff_setup
    diff = root / "diff"
    side = diff / "config.json"
    (root / "elsewhere").mkdir()
    shutil.move(side, root / "elsewhere" / "config.json")
    side.symlink_to(root / "elsewhere" / "config.json")  # same bytes, so the sha256 passes
    result = recover_cli(raw, diff, root / "out")
    assert_one_line_input_error(result, "config.json is a symlink", "outside")
    assert nothing_written(root)


def test_a_hub_cache_snapshot_of_symlinks_into_blobs_recovers(diff_setup, tiny_llama_state,
                                                               tiny_llama_dir):
    root, raw = diff_setup
    repo = root / "hub" / "models--org--tuned-diff"
    snapshot = repo / "snapshots" / "0123abc"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in (root / "diff").iterdir():
        blob = repo / "blobs" / sha256_file(file)
        shutil.copy(file, blob)
        (snapshot / file.name).symlink_to(Path("../..") / "blobs" / blob.name)
    assert recover_cli(raw, snapshot, root / "out").exit_code == 0
    assert_bit_identical(load_dir(root / "out"), load_dir(root / "tuned"))


# ---- other JSON the weights commands read -----------------------------------------------------

@pytest.mark.parametrize(("weight_map", "field"), [
    (["model-00001-of-00002.safetensors"], "weight_map"),
    ({"w": 3}, "weight_map"),
    ({"w": "../other/model.safetensors"}, "weight_map"),
])
def test_a_malformed_index_fails_in_one_line(tmp_path, weight_map, field):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(WeightsError, match=f"model.safetensors.index.json: .*{field}"):
        CheckpointReader(tmp_path / "m")


@pytest.mark.parametrize(("config", "field"), [
    ([1, 2], "$: "),
    ({"peft_type": "LORA", "r": "4", "lora_alpha": 16}, "$.r"),
    ({"peft_type": "LORA", "r": 4, "lora_alpha": "16"}, "$.lora_alpha"),
    ({"peft_type": "LORA", "r": 4, "lora_alpha": 16, "rank_pattern": ["q_proj"]}, "$.rank_pattern"),
    ({"peft_type": "LORA", "r": 0, "lora_alpha": 16}, "$.r"),
])
def test_a_malformed_adapter_config_fails_in_one_line(tmp_path, tiny_llama_dir, config, field):
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text(json.dumps(config))
    save_file({"base_model.model.lm_head.weight": torch.zeros(2, 2)},
              str(lora / "adapter_model.safetensors"))
    result = cli("merge-lora", "--base", str(tiny_llama_dir), "--lora", str(lora),
                 "--out", str(tmp_path / "out"))
    assert_one_line_input_error(result, "adapter_config.json", field)
    assert not (tmp_path / "out").exists()
