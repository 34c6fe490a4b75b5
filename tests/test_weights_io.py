"""The streaming shard writer produces files safetensors itself reads back; readers find HF layouts;
output directories appear whole or not at all."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from weights_helpers import assert_bit_identical, save_model

from deepke_llm.io import sha256_file
from deepke_llm.training.weights.io import CheckpointReader, WeightsError, parse_size
from deepke_llm.training.weights.shards import PlannedTensor, ShardWriter, atomic_output_dir


def mixed_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "odd.bf16": torch.randn(3, 5, generator=generator).to(torch.bfloat16),  # 30 bytes: misaligns
        "f32": torch.randn(7, 3, generator=generator),
        "f64": torch.randn(9, generator=generator, dtype=torch.float64),
        "f16": torch.randn(2, 3, 4, generator=generator).to(torch.float16),
        "mask": torch.rand(5, generator=generator) > 0.5,
        "ids": torch.arange(11, dtype=torch.int64),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
    }


def test_shard_writer_round_trips_through_safe_open(tmp_path):
    tensors = mixed_tensors()
    planned = [PlannedTensor(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()]
    writer = ShardWriter(tmp_path, planned, max_shard_size=120, prefix="model",
                         single_name="model.safetensors", hash_files=True)
    # blocks of one row at a time, as the weights tools stream them
    writer.write_all(lambda p: ([tensors[p.name]] if tensors[p.name].dim() == 0
                                else list(tensors[p.name].split(1))))
    writer.write_index()
    assert len(writer.file_names) > 1
    got = {}
    for name in writer.file_names:
        with safe_open(str(tmp_path / name), framework="pt") as handle:
            got.update({key: handle.get_tensor(key) for key in handle.keys()})  # noqa: SIM118
        assert writer.files[name]["sha256"] == sha256_file(tmp_path / name)
    assert_bit_identical(got, tensors)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == writer.weight_map
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in tensors.values())


def test_writer_rejects_a_short_tensor(tmp_path):
    writer = ShardWriter(tmp_path, [PlannedTensor("w", torch.float32, (4, 2))], 10**6, "model")
    with pytest.raises(AssertionError, match="wrote 16 of 32 bytes"):
        writer.write_all(lambda p: [torch.zeros(2, 2)])


@pytest.mark.parametrize(("layout", "shards"), [("safetensors", 1), ("safetensors", 3),
                                                 ("bin", 1), ("bin", 2)])
def test_reader_finds_hf_layouts_and_reads_row_blocks(tmp_path, layout, shards):
    tensors = {n: t for n, t in mixed_tensors().items() if n != "empty"}
    save_model(tensors, tmp_path / "m", shards=shards, layout=layout)
    reader = CheckpointReader(tmp_path / "m")
    assert sorted(reader.meta) == sorted(tensors)
    got = {}
    for name, meta in reader.meta.items():
        assert (meta.dtype, meta.shape) == (tensors[name].dtype, tuple(tensors[name].shape))
        blocks = list(reader.iter_blocks(name, rows=2))
        got[name] = torch.cat(blocks).reshape(meta.shape)
    assert_bit_identical(got, tensors)


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(WeightsError, match="no such model directory"):
        CheckpointReader(tmp_path / "missing")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    with pytest.raises(WeightsError, match="model.safetensors: not a readable safetensors file"):
        CheckpointReader(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    (tmp_path / "m" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(WeightsError, match="lists model-00001-of-00002.safetensors, which is missing"):
        CheckpointReader(tmp_path / "m")


def test_parse_size_is_transformers_max_shard_size():
    from transformers.utils.hub import convert_file_size_to_int

    for text in ("2GB", "500MiB", "100kb", "5Gb", "1KiB"):
        assert parse_size(text) == convert_file_size_to_int(text)
    assert parse_size("2GB") == 2 * 10**9 and parse_size("500MiB") == 500 * 2**20
    assert parse_size("100kb") == 12_500  # lower-case b: bits, as in save_pretrained
    assert parse_size(123) == parse_size(" 123 ") == 123
    for bad in ("lots", "1.5GB"):
        with pytest.raises(WeightsError, match="expected a whole number with a unit, such as 2GB"):
            parse_size(bad)


def test_atomic_output_dir_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out, force=False) as tmp:
        (tmp / "half.safetensors").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_output_dir(out, force=False) as tmp:
        (tmp / "done").write_text("ok")
    assert (out / "done").read_text() == "ok" and sorted(tmp_path.iterdir()) == [out]


def test_atomic_output_dir_replaces_an_existing_output_only_with_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("previous run")
    with pytest.raises(WeightsError, match="already exists; pass --force"), \
            atomic_output_dir(out, force=False):
        pass
    # the old output survives a failed run, even with --force
    with pytest.raises(RuntimeError), atomic_output_dir(out, force=True) as tmp:
        (tmp / "new").write_text("half")
        raise RuntimeError("boom")
    assert [p.name for p in out.iterdir()] == ["old"] and sorted(tmp_path.iterdir()) == [out]
    with atomic_output_dir(out, force=True) as tmp:
        (tmp / "new").write_text("done")
    assert [p.name for p in out.iterdir()] == ["new"] and sorted(tmp_path.iterdir()) == [out]
