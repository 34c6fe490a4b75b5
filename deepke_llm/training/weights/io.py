"""Streaming checkpoint input for the weights tools: read tensors a few rows at a time.

Why not ``safetensors.torch.load_file``: it holds whole shards in memory, and a tensor returned by
``safe_open`` is a view of the memory-mapped file, so every page it touches stays resident (and
counted in RSS) until the tensor *and* the mapping are gone. Here every read opens the file,
slices a bounded block of rows and closes it again, so peak memory is a few blocks whatever the
model size. The output side (shards written tensor by tensor) is :mod:`.shards`.

Readers understand Hugging Face layouts: ``model.safetensors``, sharded safetensors with
``model.safetensors.index.json``, and the older ``pytorch_model*.bin`` shards (with or without
``pytorch_model.bin.index.json``), loaded with ``torch.load(..., mmap=True, weights_only=True)``.
Also here: the dtype and size vocabulary every weights module shares, and :class:`WeightsError`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# elements per block read from disk; 4M fp32 elements = 16 MB per working buffer
BLOCK_ELEMENTS = 4 * 2**20

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


class WeightsError(ValueError):
    """An input problem with a one-line message naming the file/tensor and what to do."""


@functools.cache
def _dtype_codes() -> dict[str, torch.dtype]:
    import torch

    codes = {
        "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
        "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
        "U8": torch.uint8, "BOOL": torch.bool,
        "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    }
    for code, name in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")):
        if hasattr(torch, name):
            codes[code] = getattr(torch, name)
    return codes


def stored_dtype_names() -> list[str]:
    """Names (``"bfloat16"``) of every dtype a safetensors file can hold."""
    return [dtype_name(dtype) for dtype in _dtype_codes().values()]


def dtype_from_code(code: str) -> torch.dtype:
    """safetensors dtype code (``"BF16"``) -> torch dtype."""
    try:
        return _dtype_codes()[code]
    except KeyError:
        raise WeightsError(f"unsupported safetensors dtype {code}") from None


def dtype_code(dtype: torch.dtype) -> str:
    """torch dtype -> safetensors dtype code."""
    for code, value in _dtype_codes().items():
        if value == dtype:
            return code
    raise WeightsError(f"dtype {dtype} cannot be stored in safetensors")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (the spelling used in manifests and configs)."""
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    import torch

    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise WeightsError(f"unknown dtype name {name!r}")
    return value


def bits_view(tensor: torch.Tensor) -> torch.Tensor:
    """The same bytes as an integer tensor of equal width, for bitwise compare and XOR."""
    import torch

    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()]
    return tensor.view(width) if tensor.dtype != torch.bool else tensor.view(torch.uint8)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes in C order (what safetensors stores and what sha256 is taken of)."""
    import torch

    flat = tensor.reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def parse_size(text: str | int) -> int:
    """``"2GB"`` -> 2_000_000_000, ``"500MiB"`` -> 524_288_000, ``123``/``"123"`` -> 123.

    transformers' own parser (the units of ``save_pretrained(max_shard_size=...)``), with a bare
    byte count accepted and its error turned into a one-line ``WeightsError``.
    """
    if isinstance(text, int) or text.strip().isdigit():
        return int(text)
    from transformers.utils.hub import convert_file_size_to_int

    try:
        return convert_file_size_to_int(text.strip())
    except ValueError:
        raise WeightsError(f"--max-shard-size {text!r}: expected a whole number with a unit, such as "
                           "2GB, 500MB or 1GiB") from None


@dataclass(frozen=True)
class TensorMeta:
    """Where a tensor lives and what it looks like, known without reading its data."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_numel(self) -> int:
        numel = 1
        for size in self.shape[1:]:
            numel *= size
        return numel

    @property
    def numel(self) -> int:
        return self.rows * self.row_numel if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


def block_rows(row_numel: int, block_elements: int = BLOCK_ELEMENTS) -> int:
    """Rows per block so that one block holds about ``block_elements`` elements."""
    return max(1, block_elements // max(1, row_numel))


def is_plain_name(name: str) -> bool:
    """A bare file name: no separators, not ``.``/``..``, so it names a file of its directory."""
    return (name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name)


def _relative_name(name: str) -> bool:
    """A relative path that cannot climb out of its directory (HF indexes may name subfolders)."""
    parts = name.replace("\\", "/").split("/")
    return "\0" not in name and parts[0] != "" and ".." not in parts  # parts[0] "": absolute


def find_weight_files(path: Path) -> list[Path]:
    """The weight files of a checkpoint directory (or a single weight file), in shard order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise WeightsError(f"{path}: no such model directory")
    for index_name in (SAFETENSORS_INDEX, BIN_INDEX):
        index = path / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (ValueError, KeyError, TypeError, RecursionError) as exc:
                raise WeightsError(f"{index}: not a valid index file ({exc!r:.160})") from None
            if not isinstance(weight_map, dict) or not all(
                    isinstance(v, str) and _relative_name(v) for v in weight_map.values()):
                raise WeightsError(f"{index}: weight_map must map tensor names to file names "
                                   f"inside {path}; the index file is malformed")
            files = [path / name for name in dict.fromkeys(weight_map.values())]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise WeightsError(f"{index}: lists {missing[0]}, which is missing from {path}")
            return files
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (path / single).is_file():
            return [path / single]
    shards = sorted(p for p in path.glob("*.safetensors") if not p.name.startswith("adapter_"))
    if not shards:
        shards = sorted(path.glob("pytorch_model*.bin"))
    if not shards:
        raise WeightsError(f"{path}: no *.safetensors or pytorch_model*.bin weight files found")
    return shards


def _load_bin(path: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """A ``.bin`` state dict, memory-mapped when the file allows it (second item: mapped)."""
    import torch

    mapped = True
    try:
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as exc:  # pre-1.6 (non-zip) checkpoints cannot be memory-mapped
            if "mmap" not in str(exc) and "zip" not in str(exc):
                raise
            state, mapped = torch.load(path, map_location="cpu", weights_only=True), False
    except Exception as exc:  # unpickling errors come in many types; report them uniformly
        raise WeightsError(f"{path}: cannot be loaded with weights_only=True ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise WeightsError(f"{path}: expected a state dict of name -> tensor")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, mapped


class CheckpointReader:
    """Read-only, block-wise access to the tensors of one checkpoint, whatever its layout."""

    def __init__(self, path: str | os.PathLike, role: str = "model",
                 files: list[Path] | None = None) -> None:
        from safetensors import SafetensorError, safe_open

        self.path = Path(path)
        self.role = role
        self.files = files if files is not None else find_weight_files(self.path)
        self.meta: dict[str, TensorMeta] = {}
        self._bin_cache: tuple[Path, dict[str, torch.Tensor]] | None = None
        for file in self.files:
            if file.suffix == ".safetensors":
                try:
                    with safe_open(str(file), framework="pt") as handle:
                        # offset order = file order, so blocks are read front to back
                        names = (handle.offset_keys() if hasattr(handle, "offset_keys")
                                 else handle.keys())  # noqa: SIM118 (safe_open is not iterable)
                        entries = [(name, handle.get_slice(name)) for name in names]
                        metas = [(n, dtype_from_code(s.get_dtype()), tuple(s.get_shape()))
                                 for n, s in entries]
                except SafetensorError as exc:
                    raise WeightsError(f"{file}: not a readable safetensors file ({exc})") from None
            else:
                metas = [(n, t.dtype, tuple(t.shape)) for n, t in _load_bin(file)[0].items()]
            for name, dtype, shape in metas:
                if name in self.meta:
                    raise WeightsError(
                        f"{file}: tensor {name} is also in {self.meta[name].file.name}; "
                        f"{role} has duplicate tensors")
                self.meta[name] = TensorMeta(name, dtype, shape, file)

    def __contains__(self, name: str) -> bool:
        return name in self.meta

    def read_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``[start, stop)`` of a tensor (a 0-d tensor reads as one row of one element).

        The result may be a read-only view of a memory-mapped file: copy before writing to it.
        """
        meta = self.meta[name]
        if meta.file.suffix == ".safetensors":
            from safetensors import safe_open

            # a fresh mapping per block: the returned view of the mapped file keeps only the
            # pages this block touched, and they are released when the caller drops the block
            with safe_open(str(meta.file), framework="pt") as handle:
                if not meta.shape:
                    return handle.get_tensor(name).reshape(1)
                return handle.get_slice(name)[start:stop]
        # a memory-mapped .bin is re-opened per block for the same reason; one that cannot be
        # mapped (pre-1.6 format) is loaded once and kept until release()
        if self._bin_cache is not None and self._bin_cache[0] == meta.file:
            state = self._bin_cache[1]
        else:
            state, mapped = _load_bin(meta.file)
            if not mapped:
                self._bin_cache = (meta.file, state)
        tensor = state[name]
        return tensor.reshape(1) if not meta.shape else tensor[start:stop]

    def iter_blocks(self, name: str, start: int = 0, stop: int | None = None,
                    rows: int | None = None) -> Iterator[torch.Tensor]:
        """Consecutive row blocks covering rows ``[start, stop)``."""
        meta = self.meta[name]
        stop = meta.rows if stop is None else stop
        step = rows or block_rows(meta.row_numel)
        for begin in range(start, stop, step):
            yield self.read_rows(name, begin, min(stop, begin + step))

    def release(self) -> None:
        """Drop a fully loaded (unmappable) ``.bin`` shard kept between reads."""
        self._bin_cache = None


def return_freed_memory_promptly() -> None:
    """Pin glibc's mmap threshold at 1 MiB so freed block buffers go back to the OS at once.

    glibc raises the threshold after large frees; block-sized buffers then come from the heap and
    stay resident once freed, which on the recover benchmark took peak RSS from 0.30 to 0.50 GB.
    Process-wide, so only the CLI calls it; a no-op where glibc's ``mallopt`` is absent.
    """
    import ctypes

    m_mmap_threshold = -3
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(m_mmap_threshold, 1 << 20)
