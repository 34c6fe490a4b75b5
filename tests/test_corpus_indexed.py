"""Indexed dataset files: uint32 ids beyond 65,535, and merge (slices per run, checks, metadata)."""

from __future__ import annotations

import numpy as np
import pytest

from deepke_llm.training.pretrain.indexed_dataset import (
    IndexedDataset,
    IndexedDatasetWriter,
    merge_datasets,
    token_dtype,
)


def _write(prefix, samples_by_source: list[tuple[int, list[list[int]]]], dtype=np.uint16, **meta):
    writer = IndexedDatasetWriter(prefix, np.dtype(dtype))
    for source_id, samples in samples_by_source:
        writer.add_samples([np.asarray(s, dtype=np.uint32) for s in samples], source_id)
    names = sorted({sid for sid, _ in samples_by_source})
    metadata = {"tokenizer": "tok", "vocab_size": 200_000 if dtype == np.uint32 else 1000, "max_len": 8,
                "min_len": 0, "bos": 1, "eos": 2, "dedup": True,
                "sources": [{"name": f"s{i}", "documents": 1} for i in names], **meta}
    return writer.finish(metadata)


def test_ids_beyond_uint16_round_trip_through_uint32_files(tmp_path):
    big = [[70_000, 151_000, 5], [151_935, 65_536]]
    assert token_dtype(151_936) == np.uint32
    meta = _write(tmp_path / "big", [(0, big)], dtype=np.uint32)
    assert meta["dtype"] == "uint32"
    assert (tmp_path / "big.bin").stat().st_size == 4 * 5
    ds = IndexedDataset(tmp_path / "big")
    assert ds.dtype == np.uint32 and [ds[i].tolist() for i in range(len(ds))] == big
    # the raw file holds the ids themselves, little-endian uint32
    assert np.fromfile(tmp_path / "big.bin", dtype="<u4").tolist() == [70_000, 151_000, 5, 151_935, 65_536]
    writer = IndexedDatasetWriter(tmp_path / "small", np.dtype(np.uint16))
    with pytest.raises(ValueError, match="token id 70000 does not fit uint16"):
        writer.add_samples([np.asarray([5, 70_000], dtype=np.uint32)], 0)
    writer.abort()
    assert not list(tmp_path.glob("small*")) and not list(tmp_path.glob(".indexed-*"))


def test_merge_copies_one_slice_per_run_and_keeps_everything(tmp_path, monkeypatch):
    a = [(0, [[1, 5, 6], [1, 7]]), (1, [[1, 9, 9, 9, 2]]), (0, [[3, 3]])]
    b = [(0, [[1, 4, 2], [8]])]
    _write(tmp_path / "a", a)
    _write(tmp_path / "b", b, dtype=np.uint32, dedup=False, min_len=1, vocab_size=1000)
    calls = []
    original = IndexedDatasetWriter.add_packed

    def counting(self, tokens, lengths, source_id):
        calls.append((len(tokens), len(lengths), source_id))
        return original(self, tokens, lengths, source_id)

    monkeypatch.setattr(IndexedDatasetWriter, "add_packed", counting)
    meta = merge_datasets([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "m")
    # a: runs s0 (2 samples), s1, s0; b: one run of s0 -> 4 copies, not one per sample
    assert calls == [(5, 2, 0), (5, 1, 1), (2, 1, 0), (4, 2, 0)]
    m = IndexedDataset(tmp_path / "m")
    expected = [s for _, samples in a + b for s in samples]
    assert [m[i].tolist() for i in range(len(m))] == expected
    assert m.source_ids.tolist() == [0, 0, 1, 0, 0, 0] and m.dtype == np.uint32
    assert (meta["dedup"], meta["min_len"], meta["dedup_scope"]) == ([True, False], [0, 1], "per input dataset")
    assert [s["documents"] for s in meta["sources"]] == [2, 1]
    # a bounded piece size splits long runs, with the same result
    calls.clear()
    merge_datasets([str(tmp_path / "a")], tmp_path / "small", chunk_tokens=3)
    assert calls == [(3, 1, 0), (2, 1, 0), (5, 1, 1), (2, 1, 0)]
    small = IndexedDataset(tmp_path / "small")
    assert [small[i].tolist() for i in range(len(small))] == [s for _, samples in a for s in samples]


@pytest.mark.parametrize("key, value, option", [("max_len", 16, "--max-len"), ("bos", None, "--bos/--no-bos"),
                                                ("eos", 7, "--eos/--no-eos")])
def test_merge_refuses_datasets_packed_differently(tmp_path, key, value, option):
    _write(tmp_path / "a", [(0, [[1, 2]])])
    _write(tmp_path / "b", [(0, [[1, 2]])], **{key: value})
    with pytest.raises(ValueError) as info:
        merge_datasets([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "m")
    message = str(info.value)
    assert f"datasets differ in {key}" in message and option in message and "\n" not in message
    assert not (tmp_path / "m.idx").exists()
