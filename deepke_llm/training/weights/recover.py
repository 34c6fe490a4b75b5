"""``recover_weights``: rebuild a tuned model as ``raw + diff``, verified against the manifest.

The diff format and why recovery is bit-exact are described in
:mod:`deepke_llm.training.weights.diff`.
Every check that can fail on the inputs (manifest, diff file sizes and sha256, side-file sha256,
raw tensor names/shapes/dtypes) runs before anything is written; the output is built in a temp
directory and renamed, so a mismatch found later (a recovered tensor's sha256) leaves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepke_llm.io import sha256_file
from deepke_llm.training.weights.diff import (
    EXTRA_ROWS,
    MANIFEST,
    PATCH_FILE,
    PATCH_INDEX,
    PATCH_VALUE,
    TensorHasher,
    encoding_counts,
    payload_dtype,
    widen_operand,
)
from deepke_llm.training.weights.io import (
    CheckpointReader,
    WeightsError,
    bits_view,
    block_rows,
    dtype_from_name,
    dtype_name,
    parse_size,
)
from deepke_llm.training.weights.manifest import load_manifest
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

Log = Callable[[str], None]


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


def verify_side_files(diff: Path, manifest: dict[str, Any]) -> list[str]:
    """Check size and sha256 of the config/tokenizer files the diff carries; return their names.

    Manifests written before side files were hashed list bare names; those are copied unchecked.
    """
    side_files = manifest.get("side_files") or {}
    if isinstance(side_files, list):
        return list(side_files)
    for name, info in side_files.items():
        path = diff / name
        if not path.is_file():
            raise WeightsError(f"diff side file {name} is missing from {diff}: the download is "
                               f"incomplete; fetch it again")
        digest = sha256_file(path)
        if path.stat().st_size != info["size"] or digest != info["sha256"]:
            raise WeightsError(f"diff side file {name} sha256 mismatch (expected {info['sha256']}, "
                               f"got {digest}): the file was changed or corrupted; fetch it again")
    return list(side_files)


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
                    dtype: str | None = None, allow_unverified: bool = False,
                    log: Log | None = None) -> WeightsResult:
    """Rebuild the tuned model as ``raw + diff`` in ``out``, verified tensor by tensor.

    A diff without a manifest cannot be verified and is refused unless ``allow_unverified``
    (the seed's layout: recovered as raw + diff in ``dtype``, default float32); a manifest diff
    always recovers the tuned dtypes exactly.
    """
    raw_path, diff_path, out_path = Path(raw), Path(diff), Path(out)
    if not diff_path.is_dir():
        raise WeightsError(f"--diff {diff_path}: no such directory")
    check_output_dir(out_path, [raw_path, diff_path], force)
    manifest = load_manifest(diff_path)
    if manifest is None:
        _refuse_missing_manifest(diff_path, allow_unverified)
        return _recover_unverified(raw_path, diff_path, out_path, parse_size(max_shard_size),
                                   force, dtype or "float32", log)
    if dtype:
        raise WeightsError(f"--dtype applies only to diffs without {MANIFEST}; "
                           f"{diff_path} recovers the tuned dtypes exactly")
    verify_diff_files(diff_path, manifest)
    side_files = set(verify_side_files(diff_path, manifest))
    raw_reader = CheckpointReader(raw_path, "--raw")
    entries = manifest["tensors"]
    _check_raw(raw_reader, entries)
    shard_names = [n for n in manifest["files"] if n != PATCH_FILE]
    diff_reader = CheckpointReader(diff_path, "--diff", files=[diff_path / n for n in shard_names])
    _check_payload(diff_reader, entries)
    patches = _load_patches(diff_path, manifest)
    by_name = {entry["name"]: entry for entry in entries}

    def produce(planned: PlannedTensor) -> Iterator[torch.Tensor]:
        entry = by_name[planned.name]
        tuned_hash = TensorHasher(hash_worker)
        for block in _recover_blocks(entry, planned, raw_reader, diff_reader, patches):
            tuned_hash.update(block)
            yield block
        raw_reader.release()
        diff_reader.release()
        if tuned_hash.hexdigest() != entry["sha256"]:
            raise _mismatch(entry, tuned_hash.hexdigest())

    planned = [PlannedTensor(e["name"], dtype_from_name(e["dtype"]), tuple(e["shape"]))
               for e in entries]
    with atomic_output_dir(out_path, force) as tmp, ThreadPoolExecutor(1) as hash_worker:
        writer = ShardWriter(tmp, planned, parse_size(max_shard_size), prefix="model",
                             single_name="model.safetensors")
        writer.write_all(produce)
        writer.write_index()
        copy_side_files(diff_path, tmp, only=side_files.__contains__)
    return WeightsResult(out_path, len(entries), writer.file_names, writer.total_size,
                         encoding_counts(entries),
                         verified="every tensor matches the manifest sha256")


def _mismatch(entry: dict[str, Any], got: str) -> WeightsError:
    """The error of a recovered tensor whose sha256 is not the manifest's."""
    # the diff files passed their sha256 and the arithmetic is deterministic, so a wrong
    # result means a different raw tensor (hashing raw as well would cost another pass)
    cause = (f"--raw is not the model this diff was made against (its {entry['name']} differs)"
             if entry["encoding"] != "whole" else "the diff is inconsistent with its manifest")
    return WeightsError(f"recovered tensor {entry['name']} sha256 mismatch (expected "
                        f"{entry['sha256']}, got {got}) although every diff file verified: {cause}")


def _refuse_missing_manifest(diff: Path, allow_unverified: bool) -> None:
    """Without a manifest nothing can be checked: recover only when the user says so explicitly."""
    if any(diff.glob("diff-*-of-*.safetensors")) or (diff / PATCH_FILE).exists():
        raise WeightsError(f"{diff}: deepke-llm diff shards without their {MANIFEST}; the diff "
                           f"is incomplete or was tampered with; fetch it again")
    if not allow_unverified:
        raise WeightsError(f"{diff}: no {MANIFEST}, so nothing in this diff can be verified; "
                           f"fetch the complete diff, or pass --allow-unverified (library: "
                           f"allow_unverified=True) for a seed weight_diff output you trust")


def _check_payload(diff_reader: CheckpointReader, entries: list[dict[str, Any]]) -> None:
    """Every tensor the manifest lists is in the diff shards with the dtype and shape it implies."""
    for entry in entries:
        name, dtype, shape = entry["name"], dtype_from_name(entry["dtype"]), tuple(entry["shape"])
        expected = {name: (payload_dtype(entry["encoding"], dtype), shape)}
        if "rows_from_raw" in entry:
            rows = entry["rows_from_raw"]
            expected[name] = (expected[name][0], (rows, *shape[1:]))
            if rows < shape[0]:
                expected[name + EXTRA_ROWS] = (dtype, (shape[0] - rows, *shape[1:]))
        for payload, (want_dtype, want_shape) in expected.items():
            meta = diff_reader.meta.get(payload)
            found = ("missing" if meta is None else f"{dtype_name(meta.dtype)} {list(meta.shape)}")
            if meta is None or meta.dtype != want_dtype or meta.shape != want_shape:
                raise WeightsError(
                    f"diff tensor {payload} is {found} in the diff shards, {MANIFEST} implies "
                    f"{dtype_name(want_dtype)} {list(want_shape)}: the diff is inconsistent with "
                    f"its manifest; fetch it again")


def _load_patches(diff: Path, manifest: dict[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Patched elements by tensor name, checked against the manifest before any is applied."""
    if PATCH_FILE not in manifest["files"]:
        return {}
    import torch
    from safetensors.torch import load_file

    tensors = load_file(str(diff / PATCH_FILE))
    entries = {entry["name"]: entry for entry in manifest["tensors"]}
    patches = {}
    for key, index in tensors.items():
        if not key.endswith(PATCH_INDEX):
            continue
        name = key.removesuffix(PATCH_INDEX)
        value, entry = tensors.get(name + PATCH_VALUE), entries.get(name)
        numel = 1
        for size in (entry or {}).get("shape", ()):
            numel *= size
        valid = (entry is not None and entry["encoding"] != "whole" and value is not None
                 and index.dtype == torch.int64 and index.dim() == value.dim() == 1
                 and index.numel() == value.numel() and value.dtype == dtype_from_name(entry["dtype"])
                 and bool((index[1:] > index[:-1]).all())
                 and (index.numel() == 0 or 0 <= int(index[0]) <= int(index[-1]) < numel))
        if not valid:
            raise WeightsError(f"{diff / PATCH_FILE}: patch {name} does not fit the tensor "
                               f"{MANIFEST} lists: the diff is inconsistent with its manifest; "
                               f"fetch it again")
        patches[name] = (index, value)
    return patches


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
            block = (widen_operand(a, d.dtype) + d).to(dtype)
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
        log(f"warning: {warning}")
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
