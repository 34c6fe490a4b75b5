"""The weight diff: its format, why recovery from it is bit-exact, and making one.

``diff_weights(raw, tuned, out)`` (here) writes ``D = tuned - raw`` per tensor as safetensors
shards plus ``diff_manifest.json``; ``recover_weights(raw, diff, out)``
(:mod:`deepke_llm.training.weights.recover`) rebuilds ``tuned = raw + D`` and checks it against
the manifest. Both read a few rows at a time (:mod:`.io`, :mod:`.shards`), so peak memory is a
few blocks, not whole models (0.31 GB peak RSS recovering a 2.1 GB model with 0.53 GB shards; see
benchmarks/results/perf/recover_memory.md).

Why recovery is exact. In the tuned dtype, ``a + (b - a)`` is not ``b`` in general (two roundings).
The default ``delta`` method computes the difference in a wider dtype W (float32 for 16-bit weights,
float64 for float32/float64 ones) and recovers with ``(a.to(W) + d).to(dtype)``. If ``a`` and ``b``
are within a factor 2^(pW - p - 1) of each other (p, pW: significand bits; 2^15 for bf16 in fp32,
2^12 for fp16 in fp32, 2^28 for fp32 in fp64) or either is zero, ``b - a`` is a multiple of the
smaller ulp spanning at most pW bits, so ``d`` is exact, ``a + d == b`` exactly and the final cast
returns ``b`` (barring overflow next to the dtype's largest value). Elements outside that range (e.g. a weight decayed from 0.5 to 1e-6 in bf16), and
NaN, inf and signed zeros, may not round-trip: ``diff`` re-runs the recovery arithmetic on every
block, compares bit patterns, and stores each failing element verbatim in ``diff-patches.safetensors``
(index + value), which ``recover`` writes back. Bit-identity is therefore by construction, and it
is checked: ``recover`` verifies the sha256 of every diff file (shards, patches, and the copied
config/tokenizer side files) before using it, then that of every recovered tensor against the
tuned model's. The manifest also records each raw tensor's sha256;
``recover`` does not re-hash raw (another full pass): with verified diff files and deterministic
IEEE arithmetic, a recovered tensor can only mismatch if the raw one differs, and it says so.

Size cost: ``delta`` stores W, i.e. 2x the tuned model for bf16/fp16/fp32 weights (26 GB of bf16
LLaMA-13B -> 52 GB of diff). ``--method xor`` stores the XOR of the bit patterns of ``b`` and
``raw.to(b.dtype)``: always exact, 1x the tuned size, but not a usable arithmetic delta (it cannot be
inspected, scaled or applied to another base). Integer/bool tensors always use XOR.

Structure changes: a tensor absent from raw (e.g. ``lm_head.weight`` when the raw model ties it to
the embeddings) or whose shape changed other than along dim 0 is stored whole (``encoding:
whole``). A vocabulary resize (dim 0 differs, other dims equal) is diffed over the overlapping rows
and the tuned model's extra rows are stored whole as ``<name>.__extra_rows__``. Tensors only in raw
are listed in the manifest and left out of the output.

A diff without ``diff_manifest.json`` (the seed's layout: an HF model dir of ``tuned - raw``, often
``pytorch_model-*.bin`` shards) cannot be verified, so ``recover`` refuses it unless asked with
``--allow-unverified``; it is then recovered as that script did, ``raw + diff`` in float32, with a
warning. The manifest itself is validated once at load (JSON Schema, file names confined to the
diff directory): :mod:`deepke_llm.training.weights.manifest`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepke_llm.io import sha256_file
from deepke_llm.training.weights.io import (
    CheckpointReader,
    TensorMeta,
    WeightsError,
    bits_view,
    block_rows,
    dtype_name,
    parse_size,
    tensor_bytes,
)
from deepke_llm.training.weights.shards import (
    DEFAULT_MAX_SHARD_SIZE,
    PlannedTensor,
    ShardWriter,
    WeightsResult,
    atomic_output_dir,
    check_output_dir,
    copy_side_files,
)

if TYPE_CHECKING:
    import torch

MANIFEST = "diff_manifest.json"
FORMAT = "deepke-llm-weight-diff"
FORMAT_VERSION = 1
PATCH_FILE = "diff-patches.safetensors"
EXTRA_ROWS = ".__extra_rows__"
PATCH_INDEX = ".__patch_index__"
PATCH_VALUE = ".__patch_value__"
METHODS = ("delta", "xor")

def delta_dtype(dtype: torch.dtype) -> torch.dtype:
    """The wider dtype a ``delta`` diff of ``dtype`` weights is stored in."""
    import torch

    return torch.float64 if dtype.itemsize >= 4 else torch.float32


def _row_overlap(tuned: TensorMeta, raw: TensorMeta) -> int | None:
    """Rows diffed against raw when only dim 0 differs (vocab resize); None if not diffable."""
    if tuned.shape == raw.shape:
        return tuned.rows
    if len(tuned.shape) == len(raw.shape) >= 1 and tuned.shape[1:] == raw.shape[1:]:
        rows = min(tuned.rows, raw.rows)
        return rows or None
    return None


def _encoding(tuned: TensorMeta, raw: TensorMeta | None, method: str) -> tuple[str, int | None]:
    if raw is None:
        return "whole", None
    rows = _row_overlap(tuned, raw)
    if rows is None:
        return "whole", None
    both_float = tuned.dtype.is_floating_point and raw.dtype.is_floating_point
    if both_float and method == "delta":
        return "delta", rows
    if both_float or tuned.dtype == raw.dtype:
        return "xor", rows
    return "whole", None


def payload_dtype(encoding: str, dtype: torch.dtype) -> torch.dtype:
    import torch

    if encoding == "delta":
        return delta_dtype(dtype)
    if encoding == "xor":
        return bits_view(torch.empty(0, dtype=dtype)).dtype
    return dtype


class TensorHasher:
    """sha256 of a tensor fed block by block (same digest as hashing its bytes at once).

    With a (one-thread) executor the hashing of a block overlaps the computing and writing of the
    next; at most one block waits, so memory stays bounded.
    """

    def __init__(self, executor: ThreadPoolExecutor | None = None) -> None:
        self.digest = hashlib.sha256()
        self.executor = executor
        self.pending: Future | None = None

    def update(self, block: torch.Tensor) -> None:
        data = tensor_bytes(block)  # keeps the block alive until hashed
        if self.executor is None:
            self.digest.update(data)
            return
        if self.pending is not None:
            self.pending.result()
        self.pending = self.executor.submit(self.digest.update, data)

    def hexdigest(self) -> str:
        if self.pending is not None:
            self.pending.result()
            self.pending = None
        return self.digest.hexdigest()


def widen_operand(a: torch.Tensor, wide: torch.dtype) -> torch.Tensor:
    """``a`` ready to meet a ``wide`` tensor: narrower floats are left to type promotion (an exact
    widening without an extra copy), anything else is converted. Diff and recover share it so
    their arithmetic is the same."""
    import torch

    return a if torch.promote_types(a.dtype, wide) == wide else a.to(wide)


def _hash_rest(reader: CheckpointReader, name: str, start: int, hasher: TensorHasher) -> None:
    for block in reader.iter_blocks(name, start=start):
        hasher.update(block)


def _plan_diff(raw_reader: CheckpointReader, tuned_reader: CheckpointReader,
               method: str) -> tuple[dict[str, dict[str, Any]], list[PlannedTensor]]:
    """Manifest entries (without hashes yet) and the diff tensors to write, in tuned order."""
    entries: dict[str, dict[str, Any]] = {}
    planned: list[PlannedTensor] = []
    for name, meta in tuned_reader.meta.items():
        raw_meta = raw_reader.meta.get(name)
        encoding, rows = _encoding(meta, raw_meta, method)
        entry: dict[str, Any] = {"name": name, "dtype": dtype_name(meta.dtype),
                                 "shape": list(meta.shape), "encoding": encoding}
        if raw_meta is not None and encoding != "whole":
            entry["raw"] = {"dtype": dtype_name(raw_meta.dtype), "shape": list(raw_meta.shape)}
        payload_shape, extra_rows = meta.shape, 0
        if encoding != "whole" and rows != meta.rows:
            entry["rows_from_raw"] = rows
            payload_shape, extra_rows = (rows, *meta.shape[1:]), meta.rows - rows
        planned.append(PlannedTensor(name, payload_dtype(encoding, meta.dtype), payload_shape))
        if extra_rows > 0:
            planned.append(PlannedTensor(name + EXTRA_ROWS, meta.dtype,
                                         (extra_rows, *meta.shape[1:])))
        entries[name] = entry
    return entries, planned


def diff_weights(raw: str | os.PathLike, tuned: str | os.PathLike, out: str | os.PathLike, *,
                 method: str = "delta", max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
                 force: bool = False) -> WeightsResult:
    """Write ``tuned - raw`` to ``out`` (shards + manifest) so that ``recover_weights`` is exact."""
    if method not in METHODS:
        raise WeightsError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    raw_path, tuned_path, out_path = Path(raw), Path(tuned), Path(out)
    check_output_dir(out_path, [raw_path, tuned_path], force)
    raw_reader = CheckpointReader(raw_path, "--raw")
    tuned_reader = CheckpointReader(tuned_path, "--tuned")
    shard_limit = parse_size(max_shard_size)

    entries, planned = _plan_diff(raw_reader, tuned_reader, method)

    patches: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    patch_budget = [shard_limit]

    def produce(planned_tensor: PlannedTensor) -> Iterator[torch.Tensor]:
        if planned_tensor.name.endswith(EXTRA_ROWS):
            name = planned_tensor.name.removesuffix(EXTRA_ROWS)
            yield from tuned_reader.iter_blocks(name, start=entries[name]["rows_from_raw"])
            return
        entry = entries[planned_tensor.name]
        name, meta = entry["name"], tuned_reader.meta[entry["name"]]
        tuned_hash = TensorHasher(hash_worker)
        if entry["encoding"] == "whole":
            for block in tuned_reader.iter_blocks(name):
                tuned_hash.update(block)
                yield block
        else:
            raw_hash = TensorHasher(hash_worker)
            yield from _diff_blocks(entry, meta, raw_reader, tuned_reader, tuned_hash, raw_hash,
                                    patches, patch_budget)
            _hash_rest(tuned_reader, name, entry.get("rows_from_raw", meta.rows), tuned_hash)
            _hash_rest(raw_reader, name, entry.get("rows_from_raw", meta.rows), raw_hash)
            entry["raw"]["sha256"] = raw_hash.hexdigest()
            entry["patched"] = int(patches[name][0].numel()) if name in patches else 0
        entry["sha256"] = tuned_hash.hexdigest()
        raw_reader.release()
        tuned_reader.release()

    with atomic_output_dir(out_path, force) as tmp, ThreadPoolExecutor(1) as hash_worker:
        writer = ShardWriter(tmp, planned, shard_limit, prefix="diff", hash_files=True)
        writer.write_all(produce)
        for name, entry in entries.items():
            entry["file"] = writer.weight_map[name]
        files = dict(writer.files)
        if patches:
            files[PATCH_FILE] = _write_patches(tmp / PATCH_FILE, patches)
        _write_manifest(tmp, tuned_path, method, files, entries,
                        [n for n in raw_reader.meta if n not in tuned_reader.meta])
    counts = encoding_counts(entries.values())
    counts["patched elements"] = sum(e.get("patched", 0) for e in entries.values())
    return WeightsResult(out_path, len(entries), sorted(files),
                         sum(f["size"] for f in files.values()), counts)


def encoding_counts(entries: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many tensors of a diff each encoding (delta, xor, whole) stores."""
    entries = list(entries)
    return {k: sum(e["encoding"] == k for e in entries) for k in ("delta", "xor", "whole")}


def _write_manifest(tmp: Path, tuned_path: Path, method: str, files: dict[str, Any],
                    entries: dict[str, dict[str, Any]], raw_only: list[str]) -> None:
    """Copy the tuned model's side files into ``tmp`` and write the manifest naming them all."""
    from deepke_llm import __version__

    # config and tokenizer files are part of the recovered model: hashed like the shards
    side_files = {name: {"sha256": sha256_file(tmp / name), "size": (tmp / name).stat().st_size}
                  for name in copy_side_files(tuned_path, tmp)}
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "created_by": f"deepke-llm {__version__}",
        "method": method, "files": files, "side_files": side_files,
        "tensors": list(entries.values()), "raw_only": raw_only,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def _write_patches(path: Path, patches: dict[str, tuple[torch.Tensor, torch.Tensor]]
                   ) -> dict[str, Any]:
    """Write the patched elements (index + value per tensor); return the file's size and sha256."""
    from safetensors.torch import save_file

    tensors = {}
    for name, (index, values) in patches.items():
        tensors[name + PATCH_INDEX], tensors[name + PATCH_VALUE] = index, values
    save_file(tensors, str(path), metadata={"format": "pt"})
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def _diff_blocks(entry: dict[str, Any], meta: TensorMeta, raw_reader: CheckpointReader,
                 tuned_reader: CheckpointReader, tuned_hash: TensorHasher, raw_hash: TensorHasher,
                 patches: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 patch_budget: list[int]) -> Iterator[torch.Tensor]:
    """Payload blocks of one delta/xor tensor, checking that recovery reproduces every bit."""
    import torch

    name, rows = meta.name, entry.get("rows_from_raw", meta.rows)
    step = block_rows(meta.row_numel)
    wide = delta_dtype(meta.dtype)
    bad_index: list[torch.Tensor] = []
    bad_value: list[torch.Tensor] = []
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        a = raw_reader.read_rows(name, start, stop)
        b = tuned_reader.read_rows(name, start, stop)
        raw_hash.update(a)
        tuned_hash.update(b)
        if entry["encoding"] == "xor":
            yield bits_view(a.to(meta.dtype)) ^ bits_view(b)
            continue
        a = widen_operand(a, wide)
        delta = b.to(wide) - a
        # the exact arithmetic recover_weights runs; any element it gets wrong is patched
        recovered = (a + delta).to(meta.dtype)
        wrong = (bits_view(recovered) != bits_view(b)).reshape(-1)
        if bool(wrong.any()):
            local = wrong.nonzero().squeeze(1)
            bad_index.append(local + start * meta.row_numel)
            bad_value.append(b.reshape(-1)[local])
            patch_budget[0] -= local.numel() * (8 + meta.dtype.itemsize)
            if patch_budget[0] < 0:
                raise WeightsError(
                    f"tensor {name}: too many elements do not round-trip through a "
                    f"{dtype_name(wide)} delta; use --method xor")
        yield delta
    if bad_index:
        patches[name] = (torch.cat(bad_index), torch.cat(bad_value))
