"""Weight diffs that recover the tuned model bit for bit, streamed shard by shard.

``diff_weights(raw, tuned, out)`` writes ``D = tuned - raw`` per tensor as safetensors shards plus
``diff_manifest.json``; ``recover_weights(raw, diff, out)`` rebuilds ``tuned = raw + D`` and checks
it against the manifest. Both read a few rows at a time (see ``weights_io``), so peak memory is a
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
is checked: ``recover`` verifies the sha256 of every diff file before using it, then that of every
recovered tensor against the tuned model's. The manifest also records each raw tensor's sha256;
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
``pytorch_model-*.bin`` shards) is recovered as that script did, ``raw + diff`` in float32, with a
warning that nothing can be verified.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepke_llm.training.weights_io import (
    DEFAULT_MAX_SHARD_SIZE,
    CheckpointReader,
    PlannedTensor,
    ShardWriter,
    TensorMeta,
    WeightsError,
    atomic_output_dir,
    bits_view,
    block_rows,
    check_output_dir,
    copy_side_files,
    dtype_from_name,
    dtype_name,
    parse_size,
    sha256_file,
    tensor_bytes,
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

Log = Callable[[str], None]


@dataclass
class WeightsResult:
    """What a weights command wrote."""

    out: Path
    tensors: int
    files: list[str]
    total_bytes: int
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.counts.items() if n)
        size = (f"{self.total_bytes / 1e9:.2f} GB" if self.total_bytes >= 1e8
                else f"{self.total_bytes / 1e6:.1f} MB")
        return f"{self.out}: {self.tensors} tensors ({counts}) in {len(self.files)} file(s), {size}"


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


def _payload_dtype(encoding: str, dtype: torch.dtype) -> torch.dtype:
    import torch

    if encoding == "delta":
        return delta_dtype(dtype)
    if encoding == "xor":
        return bits_view(torch.empty(0, dtype=dtype)).dtype
    return dtype


class _Hasher:
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


def _operand(a: torch.Tensor, wide: torch.dtype) -> torch.Tensor:
    """``a`` ready to meet a ``wide`` tensor: narrower floats are left to type promotion (an exact
    widening without an extra copy), anything else is converted. Diff and recover share it so
    their arithmetic is the same."""
    import torch

    return a if torch.promote_types(a.dtype, wide) == wide else a.to(wide)


def _hash_rest(reader: CheckpointReader, name: str, start: int, hasher: _Hasher) -> None:
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
        planned.append(PlannedTensor(name, _payload_dtype(encoding, meta.dtype), payload_shape))
        if extra_rows > 0:
            planned.append(PlannedTensor(name + EXTRA_ROWS, meta.dtype,
                                         (extra_rows, *meta.shape[1:])))
        entries[name] = entry
    return entries, planned


def diff_weights(raw: str | os.PathLike, tuned: str | os.PathLike, out: str | os.PathLike, *,
                 method: str = "delta", max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
                 force: bool = False, log: Log | None = None) -> WeightsResult:
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
        tuned_hash = _Hasher(hash_worker)
        if entry["encoding"] == "whole":
            for block in tuned_reader.iter_blocks(name):
                tuned_hash.update(block)
                yield block
        else:
            raw_hash = _Hasher(hash_worker)
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
            from safetensors.torch import save_file

            tensors = {}
            for name, (index, values) in patches.items():
                tensors[name + PATCH_INDEX], tensors[name + PATCH_VALUE] = index, values
            save_file(tensors, str(tmp / PATCH_FILE), metadata={"format": "pt"})
            files[PATCH_FILE] = {"sha256": sha256_file(tmp / PATCH_FILE),
                                 "size": (tmp / PATCH_FILE).stat().st_size}
        side_files = copy_side_files(tuned_path, tmp)
        from deepke_llm import __version__

        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "created_by": f"deepke-llm {__version__}",
            "method": method, "files": files, "side_files": side_files,
            "tensors": list(entries.values()),
            "raw_only": [n for n in raw_reader.meta if n not in tuned_reader.meta],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    counts = {k: sum(e["encoding"] == k for e in entries.values()) for k in ("delta", "xor", "whole")}
    counts["patched elements"] = sum(e.get("patched", 0) for e in entries.values())
    result = WeightsResult(out_path, len(entries), sorted(files), sum(f["size"] for f in files.values()),
                           counts)
    if log:
        log(f"diff: {result.summary()}")
    return result


def _diff_blocks(entry: dict[str, Any], meta: TensorMeta, raw_reader: CheckpointReader,
                 tuned_reader: CheckpointReader, tuned_hash: _Hasher, raw_hash: _Hasher,
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
        a = _operand(a, wide)
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


def load_manifest(diff: Path) -> dict[str, Any] | None:
    """The diff's manifest, or None for a diff without one (the seed's layout)."""
    path = diff / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise WeightsError(f"{path}: not valid JSON ({exc}); fetch the diff again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise WeightsError(f"{path}: manifest version {manifest.get('version')} is not supported "
                           f"by this deepke-llm (expects {FORMAT_VERSION}); upgrade deepke-llm")
    return manifest


def verify_diff_files(diff: Path, manifest: dict[str, Any]) -> None:
    """Check presence, size and sha256 of every file the manifest lists."""
    for name, info in manifest["files"].items():
        path = diff / name
        if not path.is_file():
            raise WeightsError(f"diff shard {name} is missing from {diff}: the download is "
                               f"incomplete; fetch it again")
        size = path.stat().st_size
        if size != info["size"]:
            raise WeightsError(f"diff shard {name} has {size} bytes, manifest says {info['size']}: "
                               f"the download is corrupt or incomplete; fetch it again")
    # hashlib and file reads release the GIL, so a few threads hash several shards at once
    names = list(manifest["files"])
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        digests = pool.map(sha256_file, [diff / name for name in names])
        for name, digest in zip(names, digests, strict=True):
            expected = manifest["files"][name]["sha256"]
            if digest != expected:
                raise WeightsError(f"diff shard {name} sha256 mismatch (expected {expected}, "
                                   f"got {digest}): the download is corrupt; fetch it again")


def _check_raw(raw_reader: CheckpointReader, entries: list[dict[str, Any]]) -> None:
    hint = "--raw is not the model this diff was made against"
    for entry in entries:
        expected = entry.get("raw")
        if expected is None:
            continue
        meta = raw_reader.meta.get(entry["name"])
        if meta is None:
            raise WeightsError(f"raw model tensor {entry['name']} is missing from "
                               f"{raw_reader.path}: {hint}")
        if list(meta.shape) != expected["shape"]:
            raise WeightsError(f"raw model tensor {entry['name']} shape {list(meta.shape)} != "
                               f"manifest {expected['shape']}: {hint}")
        if dtype_name(meta.dtype) != expected["dtype"]:
            raise WeightsError(f"raw model tensor {entry['name']} dtype {dtype_name(meta.dtype)} != "
                               f"manifest {expected['dtype']}: {hint}")


def recover_weights(raw: str | os.PathLike, diff: str | os.PathLike, out: str | os.PathLike, *,
                    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE, force: bool = False,
                    dtype: str | None = None, log: Log | None = None) -> WeightsResult:
    """Rebuild the tuned model as ``raw + diff`` in ``out``, verified tensor by tensor.

    ``dtype`` (float32/float16/bfloat16) applies only to diffs without a manifest (default
    float32, as the seed's script); a manifest diff always recovers the tuned dtypes exactly.
    """
    raw_path, diff_path, out_path = Path(raw), Path(diff), Path(out)
    if not diff_path.is_dir():
        raise WeightsError(f"--diff {diff_path}: no such directory")
    check_output_dir(out_path, [raw_path, diff_path], force)
    manifest = load_manifest(diff_path)
    if manifest is None:
        return _recover_unverified(raw_path, diff_path, out_path, parse_size(max_shard_size),
                                   force, dtype or "float32", log)
    if dtype:
        raise WeightsError(f"--dtype applies only to diffs without {MANIFEST}; "
                           f"{diff_path} recovers the tuned dtypes exactly")
    verify_diff_files(diff_path, manifest)
    raw_reader = CheckpointReader(raw_path, "--raw")
    entries = manifest["tensors"]
    _check_raw(raw_reader, entries)
    shard_names = [n for n in manifest["files"] if n != PATCH_FILE]
    diff_reader = CheckpointReader(diff_path, "--diff", files=[diff_path / n for n in shard_names])
    patches = _load_patches(diff_path, manifest)
    by_name = {entry["name"]: entry for entry in entries}

    def produce(planned: PlannedTensor) -> Iterator[torch.Tensor]:
        entry = by_name[planned.name]
        tuned_hash = _Hasher(hash_worker)
        for block in _recover_blocks(entry, planned, raw_reader, diff_reader, patches):
            tuned_hash.update(block)
            yield block
        raw_reader.release()
        diff_reader.release()
        if tuned_hash.hexdigest() != entry["sha256"]:
            # the diff files passed their sha256 and the arithmetic is deterministic, so a wrong
            # result means a different raw tensor (hashing raw as well would cost another pass)
            cause = ("--raw is not the model this diff was made against (its "
                     f"{planned.name} differs)" if entry["encoding"] != "whole"
                     else "the diff is inconsistent with its manifest")
            raise WeightsError(
                f"recovered tensor {planned.name} sha256 mismatch (expected {entry['sha256']}, "
                f"got {tuned_hash.hexdigest()}) although every diff file verified: {cause}")

    planned = [PlannedTensor(e["name"], dtype_from_name(e["dtype"]), tuple(e["shape"]))
               for e in entries]
    with atomic_output_dir(out_path, force) as tmp, ThreadPoolExecutor(1) as hash_worker:
        writer = ShardWriter(tmp, planned, parse_size(max_shard_size), prefix="model",
                             single_name="model.safetensors")
        writer.write_all(produce)
        writer.write_index()
        copy_side_files(diff_path, tmp)
    counts = {k: sum(e["encoding"] == k for e in entries) for k in ("delta", "xor", "whole")}
    result = WeightsResult(out_path, len(entries), writer.file_names, writer.total_size, counts)
    if log:
        log(f"recover: {result.summary()}; every tensor matches the manifest sha256")
    return result


def _load_patches(diff: Path, manifest: dict[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    if PATCH_FILE not in manifest["files"]:
        return {}
    from safetensors.torch import load_file

    tensors = load_file(str(diff / PATCH_FILE))
    return {name.removesuffix(PATCH_INDEX): (index, tensors[name.removesuffix(PATCH_INDEX) + PATCH_VALUE])
            for name, index in tensors.items() if name.endswith(PATCH_INDEX)}


def _recover_blocks(entry: dict[str, Any], planned: PlannedTensor, raw_reader: CheckpointReader,
                    diff_reader: CheckpointReader,
                    patches: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Iterator[torch.Tensor]:
    """Blocks of one recovered tensor, in row order."""
    import torch

    name, dtype = planned.name, planned.dtype
    if entry["encoding"] == "whole":
        yield from diff_reader.iter_blocks(name)
        return
    meta = raw_reader.meta[name]
    rows = entry.get("rows_from_raw", planned.shape[0] if planned.shape else 1)
    row_numel = meta.row_numel
    step = block_rows(row_numel)
    patch_index, patch_value = patches.get(name, (None, None))
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        a = raw_reader.read_rows(name, start, stop)
        d = diff_reader.read_rows(name, start, stop)
        if entry["encoding"] == "xor":
            block = (bits_view(a.to(dtype)) ^ d).view(dtype)
        else:
            block = (_operand(a, d.dtype) + d).to(dtype)
        if patch_index is not None:
            lo, hi = start * row_numel, stop * row_numel
            first, last = torch.searchsorted(patch_index, torch.tensor([lo, hi])).tolist()
            if last > first:
                block = block.contiguous()
                block.reshape(-1)[patch_index[first:last] - lo] = patch_value[first:last]
        yield block
    if planned.shape and rows < planned.shape[0]:
        yield from diff_reader.iter_blocks(name + EXTRA_ROWS)


def _recover_unverified(raw: Path, diff: Path, out: Path, shard_limit: int, force: bool,
                        dtype: str, log: Log | None) -> WeightsResult:
    """The seed's recovery (``raw + diff`` in float32) for a diff that carries no manifest."""
    out_dtype = dtype_from_name(dtype)
    warning = (f"{diff} has no {MANIFEST} (made by the seed's weight_diff script?): recovering "
               f"raw + diff in float32 without any integrity check")
    if log:
        log(f"recover: warning: {warning}")
    raw_reader = CheckpointReader(raw, "--raw")
    diff_reader = CheckpointReader(diff, "--diff")
    for name, meta in diff_reader.meta.items():
        raw_meta = raw_reader.meta.get(name)
        if raw_meta is None or raw_meta.shape != meta.shape:
            found = "missing" if raw_meta is None else f"shape {list(raw_meta.shape)}"
            raise WeightsError(f"raw model tensor {name} is {found}, diff has shape "
                               f"{list(meta.shape)}: --raw is not the model this diff was made against")

    def produce(planned: PlannedTensor) -> Iterator[torch.Tensor]:
        import torch

        step = block_rows(diff_reader.meta[planned.name].row_numel)
        for start, d in zip(range(0, planned.shape[0] if planned.shape else 1, step),
                            diff_reader.iter_blocks(planned.name, rows=step), strict=True):
            a = raw_reader.read_rows(planned.name, start, start + d.shape[0])
            if d.dtype.is_floating_point:
                yield (a.to(torch.float32) + d.to(torch.float32)).to(out_dtype)
            else:
                yield (a + d).to(d.dtype)
        raw_reader.release()
        diff_reader.release()

    planned = [PlannedTensor(n, out_dtype if m.dtype.is_floating_point else m.dtype, m.shape)
               for n, m in diff_reader.meta.items()]
    with atomic_output_dir(out, force) as tmp:
        writer = ShardWriter(tmp, planned, shard_limit, prefix="model",
                             single_name="model.safetensors")
        writer.write_all(produce)
        writer.write_index()
        copy_side_files(diff, tmp)
    return WeightsResult(out, len(planned), writer.file_names, writer.total_size,
                         {"unverified": len(planned)}, [warning])
