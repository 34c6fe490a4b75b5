"""Streaming checkpoint output for the weights tools: safetensors shards written tensor by tensor.

Shards are planned up front (names, dtypes, shapes, hence the header) and their data is written
block by block as it is computed, so peak memory is a few blocks whatever the model size. A
command's output directory is built beside its target and renamed into place when complete
(:func:`atomic_output_dir`), so a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepke_llm.io import atomic_path
from deepke_llm.training.weights.io import SAFETENSORS_INDEX, WeightsError, dtype_code, tensor_bytes

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_SHARD_SIZE = "2GB"
# files that are never copied along with config/tokenizer: weights, indexes, our own manifests
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
SKIPPED_SIDE_FILES = ("diff_manifest.json", "adapter_config.json", "merge_info.json")


@dataclass
class WeightsResult:
    """What a weights command wrote."""

    out: Path
    tensors: int
    files: list[str]
    total_bytes: int
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    verified: str = ""  # what was checked against the inputs, for the summary

    def summary(self) -> str:
        """One line: tensors, files, size, what was verified, and the output directory."""
        counts = ", ".join(f"{n} {k}" for k, n in self.counts.items() if n)
        size = (f"{self.total_bytes / 1e9:.2f} GB" if self.total_bytes >= 1e8
                else f"{self.total_bytes / 1e6:.1f} MB")
        verified = f"; {self.verified}" if self.verified else ""
        return (f"{self.tensors} tensors ({counts}) in {len(self.files)} file(s), {size}"
                f"{verified} -> {self.out}")


@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of an output shard, known before any of its data is computed."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        numel = 1
        for size in self.shape:
            numel *= size
        return numel * self.dtype.itemsize


def plan_shards(tensors: list[PlannedTensor], max_shard_size: int) -> list[list[PlannedTensor]]:
    """Greedy split into shards of at most ``max_shard_size`` bytes (a bigger tensor gets its own).

    Within a shard, tensors are ordered by element size (largest first) as safetensors itself
    does, so every tensor starts at an offset aligned to its dtype.
    """
    shards: list[list[PlannedTensor]] = []
    size = 0
    for tensor in tensors:
        if not shards or (size + tensor.nbytes > max_shard_size and shards[-1]):
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += tensor.nbytes
    return [sorted(shard, key=lambda t: -t.dtype.itemsize) for shard in shards]


class ShardWriter:
    """Write planned safetensors shards one tensor at a time (hashing files when asked).

    Hand-written because safetensors' own writers need every tensor of a shard in memory at once;
    the format (u64 header length, JSON header, raw little-endian data) is small and stable, and
    tests read our shards back with ``safe_open``.
    """

    def __init__(self, out_dir: Path, tensors: list[PlannedTensor], max_shard_size: int,
                 prefix: str, single_name: str | None = None, hash_files: bool = False) -> None:
        self.out_dir = out_dir
        self.hash_files = hash_files
        self.shards = plan_shards(tensors, max_shard_size)
        count = len(self.shards)
        if count == 1 and single_name:
            self.file_names = [single_name]
        else:
            self.file_names = [f"{prefix}-{i + 1:05d}-of-{count:05d}.safetensors"
                               for i in range(count)]
        self.files: dict[str, dict[str, Any]] = {}
        self.weight_map: dict[str, str] = {}
        self.total_size = sum(t.nbytes for t in tensors)

    def order(self) -> Iterator[PlannedTensor]:
        """Tensors in the order they must be written."""
        for shard in self.shards:
            yield from shard

    def write_all(self, produce: Callable[[PlannedTensor], Iterable[torch.Tensor]]) -> None:
        """Write every planned tensor from the blocks ``produce(tensor)`` yields, shard by shard."""
        for file_name, shard in zip(self.file_names, self.shards, strict=True):
            path = self.out_dir / file_name
            digest = hashlib.sha256() if self.hash_files else None
            with open(path, "wb") as handle:
                header = self._header(shard)
                handle.write(header)
                if digest:
                    digest.update(header)
                for tensor in shard:
                    written = 0
                    for block in produce(tensor):
                        if block.dtype != tensor.dtype:
                            raise AssertionError(f"{tensor.name}: block dtype {block.dtype}")
                        data = tensor_bytes(block)
                        handle.write(data)
                        if digest:
                            digest.update(data)
                        written += len(data)
                    if written != tensor.nbytes:
                        raise AssertionError(f"{tensor.name}: wrote {written} of {tensor.nbytes} bytes")
                    self.weight_map[tensor.name] = file_name
            self.files[file_name] = {"size": path.stat().st_size}
            if digest:
                self.files[file_name]["sha256"] = digest.hexdigest()

    @staticmethod
    def _header(shard: list[PlannedTensor]) -> bytes:
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for tensor in shard:
            header[tensor.name] = {"dtype": dtype_code(tensor.dtype), "shape": list(tensor.shape),
                                   "data_offsets": [offset, offset + tensor.nbytes]}
            offset += tensor.nbytes
        blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
        blob += b" " * (-len(blob) % 8)  # keeps the data section 8-byte aligned, as safetensors does
        return struct.pack("<Q", len(blob)) + blob

    def write_index(self) -> None:
        """Write ``model.safetensors.index.json`` when the model spans several shards."""
        if len(self.file_names) > 1:
            index = {"metadata": {"total_size": self.total_size}, "weight_map": self.weight_map}
            (self.out_dir / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n",
                                                         encoding="utf-8")


def copy_side_files(source: Path, dest: Path, only: Callable[[str], bool] | None = None) -> list[str]:
    """Copy config, generation config, tokenizer and other non-weight top-level files."""
    copied = []
    if not source.is_dir():
        return copied
    for path in sorted(source.iterdir()):
        name = path.name
        if (not path.is_file() or name.startswith(".") or name.endswith(WEIGHT_SUFFIXES)
                or name.endswith(".index.json") or name in SKIPPED_SIDE_FILES
                or (only is not None and not only(name))):
            continue
        shutil.copy2(path, dest / name)
        copied.append(name)
    return copied


def check_output_dir(out: Path, inputs: Iterable[Path], force: bool) -> None:
    """Refuse to overwrite without ``--force``, and never overwrite an input."""
    resolved = out.resolve()
    for path in inputs:
        source = path.resolve()
        if resolved == source or resolved in source.parents:
            raise WeightsError(f"--output {out} would overwrite the input {path}; "
                               "choose another --output")
    if out.exists() and not force:
        raise WeightsError(f"--output {out} already exists; pass --force to overwrite it")


@contextlib.contextmanager
def atomic_output_dir(out: Path, force: bool) -> Iterator[Path]:
    """Yield an empty temp directory beside ``out`` that becomes ``out`` on success.

    On any error it is deleted; an existing ``out`` (only with ``force``) survives until the new
    one is complete (:func:`deepke_llm.io.atomic_path`).
    """
    if out.exists() and not force:
        raise WeightsError(f"--output {out} already exists; pass --force to overwrite it")
    with atomic_path(out) as tmp:
        shutil.rmtree(tmp, ignore_errors=True)  # a killed run's leftover under a reused pid
        tmp.mkdir()
        yield tmp
