"""diff -> recover reproduces the tuned model bit for bit; bad inputs fail cleanly, writing nothing."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from weights_helpers import assert_bit_identical, load_dir, make_pair, perturb, save_model

from deepke_llm.cli import main
from deepke_llm.training.weights.diff import MANIFEST, PATCH_FILE, diff_weights
from deepke_llm.training.weights.io import WeightsError
from deepke_llm.training.weights.recover import recover_weights

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["weights", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_recover_is_bit_identical_per_dtype(tmp_path, tiny_llama_state, tiny_llama_dir, dtype):
    raw, tuned, tuned_state = make_pair(tmp_path, tiny_llama_state, tiny_llama_dir, dtype)
    diff_weights(raw, tuned, tmp_path / "diff", max_shard_size="100KB")
    recover_weights(raw, tmp_path / "diff", tmp_path / "out", max_shard_size="150KB")
    assert_bit_identical(load_dir(tmp_path / "out"), tuned_state)
    # multi-shard output with an HF index; config and tokenizer travel with the diff
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(tuned_state)
    assert (tmp_path / "out" / "config.json").read_text() == (tiny_llama_dir / "config.json").read_text()
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    manifest = json.loads((tmp_path / "diff" / MANIFEST).read_text())
    delta = {"float32": "float64"}.get(str(dtype).removeprefix("torch."), "float32")
    payload = load_file(str(tmp_path / "diff" / manifest["tensors"][0]["file"]))
    assert {str(t.dtype).removeprefix("torch.") for t in payload.values()} == {delta}


def test_values_outside_the_exact_range_are_patched_and_recovered(tmp_path, tiny_llama_state, tiny_llama_dir):
    raw_state = {n: t.to(torch.bfloat16) for n, t in tiny_llama_state.items()}
    tuned_state = perturb(raw_state)
    name = "model.layers.0.mlp.up_proj.weight"
    raw_w, tuned_w = raw_state[name], tuned_state[name]
    raw_w[0, :4] = torch.tensor([1.0, 0.5, 0.25, 3.0])
    # 2^-30 vs 1.0 is beyond fp32's reach for a bf16 delta; -0.0, NaN and inf don't survive a + (b - a)
    tuned_w[0, :4] = torch.tensor([2.0**-30, float("nan"), -0.0, float("inf")])
    save_model(raw_state, tmp_path / "raw", tiny_llama_dir)
    save_model(tuned_state, tmp_path / "tuned", tiny_llama_dir)
    result = diff_weights(tmp_path / "raw", tmp_path / "tuned", tmp_path / "diff")
    assert result.counts["patched elements"] >= 2
    assert (tmp_path / "diff" / PATCH_FILE).is_file()
    recover_weights(tmp_path / "raw", tmp_path / "diff", tmp_path / "out")
    assert_bit_identical(load_dir(tmp_path / "out"), tuned_state)


@pytest.mark.parametrize(("dtype", "bits", "gap", "counterexample"), [
    (torch.bfloat16, torch.int16, 15, (1.0, 2.0**-30)),
    (torch.float16, torch.int16, 12, (2048.0, 2.0**-14)),
])
def test_fp32_delta_is_exact_within_the_documented_magnitude_gap(dtype, bits, gap, counterexample):
    generator = torch.Generator().manual_seed(0)
    n = 200_000
    a = torch.randn(n, generator=generator) * 0.05
    exponent = torch.randint(-gap, gap + 1, (n,), generator=generator).float()
    sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    b = (a * sign * torch.exp2(exponent)).to(dtype)
    a = a.to(dtype)
    keep = (a.float().abs().log2() - b.float().abs().log2()).abs() <= gap - 1  # casts may shift by 1
    a, b = a[keep], b[keep]
    a32 = a.float()
    recovered = (a32 + (b.float() - a32)).to(dtype)
    assert recovered.view(bits).equal(b.view(bits))
    # and the documented counterexample really needs a patch
    big, tiny = (torch.tensor([v]).to(dtype) for v in counterexample)
    assert tiny.item() != 0
    assert not ((big.float() + (tiny.float() - big.float())).to(dtype)).equal(tiny)


def test_xor_method_is_exact_and_as_small_as_the_model(tmp_path, tiny_llama_state, tiny_llama_dir):
    raw, tuned, tuned_state = make_pair(tmp_path, tiny_llama_state, tiny_llama_dir, torch.bfloat16)
    result = diff_weights(raw, tuned, tmp_path / "diff", method="xor")
    assert result.counts["xor"] == len(tuned_state)
    model_bytes = sum(t.nbytes for t in tuned_state.values())
    assert model_bytes <= result.total_bytes < model_bytes + 50_000
    recover_weights(raw, tmp_path / "diff", tmp_path / "out")
    assert_bit_identical(load_dir(tmp_path / "out"), tuned_state)


def test_resized_vocab_and_untied_head(tmp_path, tiny_llama_state, tiny_llama_dir):
    raw_state = {n: t.to(torch.bfloat16) for n, t in tiny_llama_state.items()}
    tuned_state = perturb(raw_state)
    del raw_state["lm_head.weight"]  # a tied raw model stores no lm_head
    vocab, hidden = raw_state["model.embed_tokens.weight"].shape
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        tuned_state[name] = torch.cat([tuned_state[name], torch.randn(5, hidden).to(torch.bfloat16)])
    raw_state["model.only_in_raw"] = torch.zeros(3)
    save_model(raw_state, tmp_path / "raw", tiny_llama_dir)
    save_model(tuned_state, tmp_path / "tuned", tiny_llama_dir)
    diff_weights(tmp_path / "raw", tmp_path / "tuned", tmp_path / "diff")
    manifest = {t["name"]: t for t in json.loads((tmp_path / "diff" / MANIFEST).read_text())["tensors"]}
    assert manifest["lm_head.weight"]["encoding"] == "whole"
    embed = manifest["model.embed_tokens.weight"]
    assert (embed["encoding"], embed["rows_from_raw"], embed["shape"][0]) == ("delta", vocab, vocab + 5)
    assert "model.only_in_raw" in json.loads((tmp_path / "diff" / MANIFEST).read_text())["raw_only"]
    recover_weights(tmp_path / "raw", tmp_path / "diff", tmp_path / "out")
    assert_bit_identical(load_dir(tmp_path / "out"), tuned_state)


@pytest.mark.parametrize("layout", ["safetensors", "bin"])
def test_multi_shard_inputs_in_both_layouts(tmp_path, tiny_llama_state, tiny_llama_dir, layout):
    raw, tuned, tuned_state = make_pair(tmp_path, tiny_llama_state, tiny_llama_dir, torch.float16,
                                        shards=3, layout=layout)
    diff_weights(raw, tuned, tmp_path / "diff")
    recover_weights(raw, tmp_path / "diff", tmp_path / "out")
    assert_bit_identical(load_dir(tmp_path / "out"), tuned_state)


def test_diff_without_manifest_recovers_like_the_seed(tmp_path, tiny_llama_state, tiny_llama_dir):
    raw_state = tiny_llama_state
    tuned_state = perturb(raw_state)
    # the seed's weight_diff output: an HF dir of (tuned - raw) in fp32 as pytorch_model-*.bin
    save_model({n: tuned_state[n] - raw_state[n] for n in raw_state}, tmp_path / "diff",
               tiny_llama_dir, shards=2, layout="bin")
    save_model(raw_state, tmp_path / "raw", tiny_llama_dir)
    result = recover_weights(tmp_path / "raw", tmp_path / "diff", tmp_path / "out", dtype="float32",
                             allow_unverified=True)
    assert result.warnings and "without any integrity check" in result.warnings[0]
    got = load_dir(tmp_path / "out")
    for name, tensor in tuned_state.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-6)


def test_corrupt_diff_shard_fails_in_one_line_and_writes_nothing(diff_setup):
    root, raw = diff_setup
    shard = sorted((root / "diff").glob("diff-00002-*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[-7] ^= 0x10
    shard.write_bytes(bytes(data))
    code, output = run_cli("recover", "--raw", str(raw), "--diff", str(root / "diff"),
                           "--out", str(root / "out"))
    assert code == 1
    assert output.strip().count("\n") == 0
    assert f"diff shard {shard.name} sha256 mismatch" in output and "fetch it again" in output
    assert not any(p.name.startswith("out") for p in root.iterdir())


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_changed_side_file_fails_in_one_line_and_writes_nothing(diff_setup, name):
    root, raw = diff_setup
    manifest = json.loads((root / "diff" / MANIFEST).read_text())
    assert {"config.json", "tokenizer.json"} <= set(manifest["side_files"])
    assert len(manifest["side_files"]["config.json"]["sha256"]) == 64
    side = root / "diff" / name
    side.write_text(side.read_text().replace('"', "'", 1))  # e.g. a hand-edited config
    code, output = run_cli("recover", "--raw", str(raw), "--diff", str(root / "diff"),
                           "--out", str(root / "out"))
    assert code == 1 and output.strip().count("\n") == 0
    assert f"diff side file {name} sha256 mismatch" in output and "fetch it again" in output
    assert not any(p.name.startswith("out") for p in root.iterdir())
    side.unlink()
    code, output = run_cli("recover", "--raw", str(raw), "--diff", str(root / "diff"),
                           "--out", str(root / "out"))
    assert code == 1 and f"diff side file {name} is missing" in output


def test_wrong_raw_model_fails_and_writes_nothing(diff_setup, tiny_llama_state, tiny_llama_dir):
    root, _ = diff_setup
    # same names, shapes and dtypes, different values: caught by the per-tensor raw sha256
    other = save_model(perturb({n: t.to(torch.bfloat16) for n, t in tiny_llama_state.items()}, seed=7),
                       root / "other", tiny_llama_dir)
    with pytest.raises(WeightsError, match="--raw is not the model this diff was made against"):
        recover_weights(other, root / "diff", root / "out")
    assert not any(p.name.startswith("out") for p in root.iterdir())
    # a structurally different raw model is refused before any work
    wrong_shape = {n: t.to(torch.bfloat16) for n, t in tiny_llama_state.items()}
    up = list(tiny_llama_state["model.layers.0.mlp.up_proj.weight"].shape)
    wrong_shape["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 5, dtype=torch.bfloat16)
    save_model(wrong_shape, root / "shape", tiny_llama_dir)
    code, output = run_cli("recover", "--raw", str(root / "shape"), "--diff", str(root / "diff"),
                           "--out", str(root / "out"))
    assert code == 1
    assert f"raw model tensor model.layers.0.mlp.up_proj.weight shape [3, 5] != manifest {up}" in output
    assert not any(p.name.startswith("out") for p in root.iterdir())


def test_refuses_to_overwrite_without_force(diff_setup):
    root, raw = diff_setup
    out = root / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["recover", "--raw", str(raw), "--diff", str(root / "diff"), "--out", str(out)]
    code, output = run_cli(*args)
    assert code == 1 and "already exists; pass --force" in output
    assert (out / "keep.txt").read_text() == "mine"
    code, output = run_cli(*args, "--force")
    assert code == 0, output
    # one summary line on stderr, the output directory on stdout
    result = CliRunner().invoke(main, ["weights", *args, "--force"])
    assert result.stdout == f"{out}\n"
    assert result.stderr.startswith("weights recover: ") and result.stderr.endswith(
        f"; every tensor matches the manifest sha256 -> {out}\n")
    assert not (out / "keep.txt").exists() and (out / "config.json").is_file()
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("out")) == ["out"]
    # an output that is an input is a usage error (exit 2); one holding an input, an input error
    code, output = run_cli("diff", "--raw", str(raw), "--tuned", str(root / "tuned"),
                           "--output", str(raw))
    assert code == 2 and f"output {raw} is the input {raw}" in output
    code, output = run_cli("diff", "--raw", str(raw), "--tuned", str(root / "tuned"),
                           "-o", str(root), "--force")
    assert code == 1 and "would overwrite the input" in output


def test_every_command_documents_an_example_and_usage_errors_exit_2():
    for command in ("diff", "recover", "merge-lora"):
        code, output = run_cli(command, "--help")
        assert code == 0 and "Example:" in output and "deepke-llm weights " + command in output
        assert "-o, --output, --out DIRECTORY" in output
    code, _ = run_cli("recover", "--diff", "d", "--out", "o")
    assert code == 2  # missing --raw
    code, output = run_cli("recover", "--raw", "nowhere", "--diff", "nowhere", "--out", "o")
    assert code == 1 and "--diff nowhere: no such directory" in output
