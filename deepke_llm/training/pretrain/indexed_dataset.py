"""Indexed token dataset: ``<prefix>.bin`` (tokens) + ``<prefix>.idx`` (index) + ``<prefix>.json``.

Layout (all little-endian):

- ``.bin``: the token ids of all samples back to back, ``uint16`` when every id of the tokenizer
  fits (vocabulary <= 65,536), else ``uint32``.
- ``.idx``: a 32-byte header — magic ``DKLMIDX\\0``, format version (u32), dtype code (u32: 1 =
  uint16, 2 = uint32), sample count N (u64), source count (u32), reserved (u32) — then
  ``offsets`` (int64[N], token offset of each sample in ``.bin``), ``lengths`` (int32[N]) and
  ``source_ids`` (uint16[N]), each array aligned to its item size.
- ``.json``: sidecar metadata (sources with per-source counts, dtype, tokenizer, max_len, ...).

Both files are read with ``numpy.memmap``, so opening a dataset of any size costs no memory and
``dataset[i]`` is a zero-copy slice. Writers stream: memory does not grow with the corpus.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"DKLMIDX\x00"
VERSION = 1
HEADER = struct.Struct("<8sIIQII")  # magic, version, dtype code, samples, sources, reserved
DTYPE_CODES = {1: np.dtype(np.uint16), 2: np.dtype(np.uint32)}
CODE_OF_DTYPE = {v: k for k, v in DTYPE_CODES.items()}


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` when all ids ``0..vocab_size-1`` fit in it, else ``uint32``."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def dataset_paths(prefix: str | os.PathLike) -> tuple[Path, Path, Path]:
    """The ``.bin``, ``.idx`` and ``.json`` paths of a dataset prefix."""
    prefix = str(prefix)
    for suffix in (".bin", ".idx", ".json"):
        if prefix.endswith(suffix):
            prefix = prefix[: -len(suffix)]
    return Path(prefix + ".bin"), Path(prefix + ".idx"), Path(prefix + ".json")


class IndexedDatasetWriter:
    """Append samples to ``.bin`` and the index arrays to temporary files; ``finish`` assembles.

    Everything is written under temporary names and renamed at the end (the ``.json`` last), so an
    interrupted run never leaves a dataset that looks complete. (Not :func:`deepke_llm.io.
    atomic_path`, which replaces one path when one ``with`` block ends: here four files stream in
    for the whole run, between calls, and three are renamed in a fixed order.)
    """

    def __init__(self, prefix: str | os.PathLike, dtype: np.dtype) -> None:
        self.bin_path, self.idx_path, self.meta_path = dataset_paths(prefix)
        self.bin_path.parent.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype)
        if self.dtype not in CODE_OF_DTYPE:
            raise ValueError(f"unsupported token dtype {self.dtype}; use uint16 or uint32")
        self._max_id = np.iinfo(self.dtype).max
        self._tmp_dir = Path(tempfile.mkdtemp(prefix=".indexed-", dir=self.bin_path.parent))
        self._bin = open(self._tmp_dir / "bin", "wb")  # noqa: SIM115 - closed in finish/abort
        self._offsets = open(self._tmp_dir / "offsets", "wb")  # noqa: SIM115
        self._lengths = open(self._tmp_dir / "lengths", "wb")  # noqa: SIM115
        self._sources = open(self._tmp_dir / "sources", "wb")  # noqa: SIM115
        self.num_samples = 0
        self.num_tokens = 0
        self.max_source_id = -1

    def add_samples(self, samples: list[np.ndarray], source_id: int) -> None:
        """Append token arrays that all belong to source ``source_id``."""
        if not samples:
            return
        lengths = np.fromiter((len(s) for s in samples), dtype=np.int64, count=len(samples))
        self.add_packed(np.concatenate(samples), lengths, source_id)

    def add_packed(self, tokens: np.ndarray, lengths: np.ndarray, source_id: int) -> None:
        """Append samples given as one flat token array and their lengths (one source)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if not len(lengths):
            return
        if int(lengths.sum()) != len(tokens):
            raise ValueError(f"add_packed: lengths sum to {int(lengths.sum())}, got {len(tokens)} tokens")
        if tokens.size and int(tokens.max()) > self._max_id:
            raise ValueError(f"token id {int(tokens.max())} does not fit {self.dtype}; "
                             "the vocabulary size given to the writer is too small")
        offsets = self.num_tokens + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        tokens.astype(self.dtype, copy=False).tofile(self._bin)
        offsets.astype("<i8").tofile(self._offsets)
        lengths.astype("<i4").tofile(self._lengths)
        np.full(len(lengths), source_id, dtype="<u2").tofile(self._sources)
        self.num_samples += len(lengths)
        self.num_tokens += int(lengths.sum())
        self.max_source_id = max(self.max_source_id, source_id)

    def finish(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Write the ``.idx`` and ``.json`` and move everything into place; returns the metadata."""
        for handle in (self._bin, self._offsets, self._lengths, self._sources):
            handle.close()
        num_sources = len(metadata.get("sources", [])) or self.max_source_id + 1
        idx_tmp = self._tmp_dir / "idx"
        with open(idx_tmp, "wb") as out:
            out.write(HEADER.pack(MAGIC, VERSION, CODE_OF_DTYPE[self.dtype], self.num_samples,
                                  num_sources, 0))
            for name in ("offsets", "lengths", "sources"):
                with open(self._tmp_dir / name, "rb") as part:
                    shutil.copyfileobj(part, out, 1 << 22)
        metadata = {**metadata, "format": "deepke-llm-indexed", "version": VERSION,
                    "dtype": self.dtype.name, "num_samples": self.num_samples,
                    "num_tokens": self.num_tokens}
        meta_tmp = self._tmp_dir / "json"
        meta_tmp.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
        os.replace(self._tmp_dir / "bin", self.bin_path)
        os.replace(idx_tmp, self.idx_path)
        os.replace(meta_tmp, self.meta_path)
        shutil.rmtree(self._tmp_dir, ignore_errors=True)
        return metadata

    def abort(self) -> None:
        """Drop everything written so far."""
        for handle in (self._bin, self._offsets, self._lengths, self._sources):
            handle.close()
        shutil.rmtree(self._tmp_dir, ignore_errors=True)


class IndexedDataset:
    """Random access to packed samples: ``len(ds)``, ``ds[i]`` -> token array (memmap slice)."""

    def __init__(self, prefix: str | os.PathLike) -> None:
        self.prefix = str(prefix)
        self.bin_path, self.idx_path, self.meta_path = dataset_paths(prefix)
        for path in (self.bin_path, self.idx_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: indexed dataset file missing "
                                        "(run `deepke-llm pretrain prepare` first)")
        with open(self.idx_path, "rb") as handle:
            raw = handle.read(HEADER.size)
        if len(raw) < HEADER.size or raw[:8] != MAGIC:
            raise ValueError(f"{self.idx_path}: not a deepke-llm index (bad magic)")
        _, version, code, n, self.num_sources, _ = HEADER.unpack(raw)
        if version != VERSION:
            raise ValueError(f"{self.idx_path}: index version {version}, this reader knows {VERSION}")
        if code not in DTYPE_CODES:
            raise ValueError(f"{self.idx_path}: unknown dtype code {code}")
        self.dtype = DTYPE_CODES[code]
        self._n = n
        index = np.memmap(self.idx_path, dtype=np.uint8, mode="r")
        start = HEADER.size
        self.offsets = index[start:start + 8 * n].view("<i8")
        start += 8 * n
        self.lengths = index[start:start + 4 * n].view("<i4")
        start += 4 * n
        self.source_ids = index[start:start + 2 * n].view("<u2")
        self.tokens = (np.memmap(self.bin_path, dtype=self.dtype, mode="r")
                       if self.bin_path.stat().st_size else np.zeros(0, dtype=self.dtype))
        self.metadata: dict[str, Any] = (json.loads(self.meta_path.read_text(encoding="utf-8"))
                                         if self.meta_path.is_file() else {})

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> np.ndarray:
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"sample {i} out of range for {self._n} samples")
        start = int(self.offsets[i])
        return self.tokens[start:start + int(self.lengths[i])]

    @property
    def source_names(self) -> list[str]:
        """Source names by id (``source-<id>`` when the sidecar JSON is missing)."""
        names = [s["name"] for s in self.metadata.get("sources", [])]
        return names or [f"source-{i}" for i in range(self.num_sources)]

    def samples_per_source(self) -> np.ndarray:
        """Number of samples of each source id."""
        return np.bincount(self.source_ids, minlength=self.num_sources)

    def tokens_per_source(self) -> np.ndarray:
        """Number of tokens of each source id."""
        return np.bincount(self.source_ids, weights=self.lengths,
                           minlength=self.num_sources).astype(np.int64)

    # memmaps must not be pickled by value (DataLoader workers, spawn): reopen from the path
    def __getstate__(self) -> dict[str, Any]:
        return {"prefix": self.prefix}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["prefix"])


def merge_datasets(prefixes: list[str], out_prefix: str | os.PathLike,
                   chunk_tokens: int = 1 << 24) -> dict[str, Any]:
    """Concatenate indexed datasets built with the same tokenizer; sources are merged by name."""
    if not prefixes:
        raise ValueError("merge: give at least one dataset prefix")
    datasets = [IndexedDataset(p) for p in prefixes]
    vocab_sizes = {d.metadata.get("vocab_size") for d in datasets}
    if len(vocab_sizes) > 1:
        raise ValueError(f"merge: datasets have different vocabulary sizes {sorted(map(str, vocab_sizes))}; "
                         "re-prepare them with one tokenizer")
    for key, option in (("max_len", "--max-len"), ("bos", "--bos/--no-bos"), ("eos", "--eos/--no-eos")):
        values = {p: d.metadata.get(key) for p, d in zip(prefixes, datasets, strict=True)}
        if len(set(values.values())) > 1:
            shown = ", ".join(f"{p}: {v}" for p, v in values.items())
            raise ValueError(f"merge: datasets differ in {key} ({shown}); re-prepare them with the same {option}")
    tokenizers = {d.metadata.get("tokenizer") for d in datasets}
    if len(tokenizers) > 1:
        warnings.warn(f"merge: datasets name different tokenizers {sorted(map(str, tokenizers))} "
                      "(same vocabulary size); make sure they are the same tokenizer", stacklevel=2)
    dtype = max((d.dtype for d in datasets), key=lambda t: t.itemsize)
    names: list[str] = []
    merged: dict[str, dict[str, Any]] = {}
    writer = IndexedDatasetWriter(out_prefix, dtype)
    try:
        for dataset in datasets:
            remap = []
            meta_sources = dataset.metadata.get("sources") or [{"name": n} for n in dataset.source_names]
            for source in meta_sources:
                if source["name"] not in merged:
                    names.append(source["name"])
                    merged[source["name"]] = {"name": source["name"]}
                _add_counts(merged[source["name"]], source)
                remap.append(names.index(source["name"]))
            remap_arr = np.asarray(remap, dtype=np.int64)
            _copy_dataset(dataset, writer, remap_arr, chunk_tokens)
        first = datasets[0].metadata
        metadata = {k: first.get(k) for k in ("tokenizer", "vocab_size", "max_len", "bos", "eos")}
        for key in ("min_len", "dedup"):
            values = [d.metadata.get(key) for d in datasets]
            # one value when the inputs agree, else each input's (in merged_from order)
            metadata[key] = values[0] if len(set(values)) == 1 else values
        # each input was deduplicated on its own; documents repeated across inputs stay
        metadata["dedup_scope"] = "per input dataset"
        metadata["merged_from"] = [str(p) for p in prefixes]
        metadata["sources"] = [merged[n] for n in names]
        return writer.finish(metadata)
    except BaseException:
        writer.abort()
        raise


def _add_counts(total: dict[str, Any], source: dict[str, Any]) -> None:
    for key, value in source.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, list):
            total[key] = total.get(key, []) + value


def _copy_dataset(dataset: IndexedDataset, writer: IndexedDatasetWriter, remap: np.ndarray,
                  chunk_tokens: int) -> None:
    """Copy runs of samples of one source, each piece one slice of ``.bin`` of bounded size."""
    n = len(dataset)
    if not n:
        return
    offsets = np.asarray(dataset.offsets, dtype=np.int64)
    lengths = np.asarray(dataset.lengths, dtype=np.int64)
    sources = np.asarray(dataset.source_ids)
    # samples written back to back (always, by our writer) can be copied as one token slice
    contiguous = np.ones(n, dtype=bool)
    contiguous[1:] = offsets[1:] == offsets[:-1] + lengths[:-1]
    starts = np.flatnonzero(np.r_[True, (sources[1:] != sources[:-1]) | ~contiguous[1:]])
    ends = np.r_[starts[1:], n]
    for run_start, run_end in zip(starts.tolist(), ends.tolist(), strict=True):
        run_lengths = lengths[run_start:run_end]
        through = np.cumsum(run_lengths)  # tokens of the run up to and including each sample
        source_id = int(remap[int(sources[run_start])])
        i, m = 0, run_end - run_start
        while i < m:  # pieces of at most chunk_tokens tokens (at least one sample) bound memory
            before = int(through[i - 1]) if i else 0
            j = min(max(int(np.searchsorted(through, before + chunk_tokens, side="right")), i + 1), m)
            first = int(offsets[run_start + i])
            last = first + int(through[j - 1]) - before
            writer.add_packed(np.asarray(dataset.tokens[first:last]), run_lengths[i:j], source_id)
            i = j
