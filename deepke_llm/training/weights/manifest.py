"""The diff manifest at the edge: JSON Schema validation once at load, file names kept in the diff.

Everything ``recover`` later indexes (``files``, ``side_files``, each tensor's ``name``, ``dtype``,
``shape``, ``encoding``, ``sha256``, ``raw``, ``rows_from_raw``) is checked here, so a malformed
manifest fails with one line naming the file and the field instead of a KeyError deep in the
recovery loop. Every file name the manifest mentions must be a plain name inside the diff
directory: no absolute paths, no ``..``, no separators, and no symlink that resolves outside it
(except into the repository folder of a Hugging Face cache snapshot, whose files are symlinks into
``blobs/``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from deepke_llm.training.weights.diff import FORMAT, FORMAT_VERSION, MANIFEST, METHODS
from deepke_llm.training.weights.io import WeightsError, is_plain_name, stored_dtype_names

ENCODINGS = ("delta", "xor", "whole")
FETCH_AGAIN = "the manifest is malformed or was edited; fetch the diff again"


@functools.cache
def manifest_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a version-1 ``diff_manifest.json``."""
    dtypes = {"enum": sorted(stored_dtype_names())}
    sha256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    size = {"type": "integer", "minimum": 0}
    shape = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    file_info = {"type": "object", "required": ["size", "sha256"],
                 "properties": {"size": size, "sha256": sha256}}
    tensor = {
        "type": "object",
        "required": ["name", "dtype", "shape", "encoding", "sha256"],
        "properties": {
            "name": {"type": "string", "minLength": 1}, "dtype": dtypes, "shape": shape,
            "encoding": {"enum": list(ENCODINGS)}, "sha256": sha256, "file": {"type": "string"},
            "raw": {"type": "object", "required": ["dtype", "shape"],
                    "properties": {"dtype": dtypes, "shape": shape, "sha256": sha256}},
            "rows_from_raw": {"type": "integer", "minimum": 1}, "patched": size,
        },
        # a delta/xor tensor is rebuilt from raw: diff always records what raw looked like
        "if": {"properties": {"encoding": {"enum": ["delta", "xor"]}}},
        "then": {"required": ["raw"]},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["format", "version", "files", "tensors"],
        "properties": {
            "format": {"const": FORMAT}, "version": {"const": FORMAT_VERSION},
            "created_by": {"type": "string"}, "method": {"enum": list(METHODS)},
            "files": {"type": "object", "additionalProperties": file_info},
            # manifests written before side files were hashed list bare names
            "side_files": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                                     {"type": "object", "additionalProperties": file_info}]},
            "tensors": {"type": "array", "items": tensor},
            "raw_only": {"type": "array", "items": {"type": "string"}},
        },
    }


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def load_manifest(diff: Path) -> dict[str, Any] | None:
    """The diff's validated manifest, or None for a diff without one (the seed's layout)."""
    path = diff / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        raise WeightsError(f"{path}: not valid JSON ({_short(str(exc))}); fetch the diff again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a {FORMAT} manifest; fetch the diff again")
    if manifest.get("version") != FORMAT_VERSION:
        raise WeightsError(f"{path}: manifest version {_short(repr(manifest.get('version')), 40)} "
                           f"is not supported by this deepke-llm (expects {FORMAT_VERSION}); "
                           f"upgrade deepke-llm")
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        raise WeightsError(f"{path}: {error.json_path}: {_short(error.message)}; {FETCH_AGAIN}")
    _check_consistency(path, manifest)
    for field, name in manifest_file_names(manifest):
        check_member(diff, name, f"{path}: {field}")
    return manifest


def manifest_file_names(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, file name) for every file name the manifest mentions."""
    names = [(f"$.files[{name!r}]", name) for name in manifest["files"]]
    side_files = manifest.get("side_files") or {}
    names += [(f"$.side_files[{name!r}]", name) for name in side_files]
    names += [(f"$.tensors[{i}].file", entry["file"])
              for i, entry in enumerate(manifest["tensors"]) if "file" in entry]
    return names


def _check_consistency(path: Path, manifest: dict[str, Any]) -> None:
    """What a schema cannot say: unique names, row counts within the shape, known shard files."""
    seen: set[str] = set()
    for i, entry in enumerate(manifest["tensors"]):
        where = f"{path}: $.tensors[{i}]"
        if entry["name"] in seen:
            raise WeightsError(f"{where}.name: tensor {_short(entry['name'], 80)} is listed twice; "
                               f"{FETCH_AGAIN}")
        seen.add(entry["name"])
        rows = entry.get("rows_from_raw")
        if rows is not None and (entry["encoding"] == "whole" or not entry["shape"]
                                 or rows > entry["shape"][0]):
            raise WeightsError(f"{where}.rows_from_raw: {rows} does not fit a {entry['encoding']} "
                               f"tensor of shape {entry['shape']}; {FETCH_AGAIN}")
        raw, shape = entry.get("raw"), entry["shape"]
        # delta/xor read rows [0, rows) of raw: raw must have them, in the same row shape
        if raw is not None and entry["encoding"] != "whole" and (
                len(raw["shape"]) != len(shape) or raw["shape"][1:] != shape[1:]
                or (shape and raw["shape"][0] < (rows or shape[0]))):
            raise WeightsError(f"{where}.raw.shape: {raw['shape']} cannot give the rows of a "
                               f"{entry['encoding']} tensor of shape {shape}; {FETCH_AGAIN}")
        if "file" in entry and entry["file"] not in manifest["files"]:
            raise WeightsError(f"{where}.file: {_short(entry['file'], 80)!r} is not listed in "
                               f"$.files; {FETCH_AGAIN}")


def _allowed_root(diff: Path) -> Path:
    """The folder a diff file may resolve into: the diff itself, or for a Hugging Face cache
    snapshot (``models--org--name/snapshots/REV``) its repository folder, where ``blobs/`` lives."""
    resolved = diff.resolve()
    if resolved.parent.name == "snapshots" and resolved.parent.parent.name.startswith("models--"):
        return resolved.parent.parent
    return resolved


def check_member(directory: Path, name: str, where: str) -> Path:
    """``directory / name`` for a plain file name that stays inside ``directory``; else an error."""
    if not is_plain_name(name):
        raise WeightsError(f"{where}: {_short(repr(name), 80)} is not a plain file name inside "
                           f"{directory}; refusing a path that points elsewhere ({FETCH_AGAIN})")
    path = directory / name
    if path.is_symlink():
        root = _allowed_root(directory)
        if not path.resolve().is_relative_to(root):
            raise WeightsError(f"{where}: {name} is a symlink to {path.resolve()}, outside {root}; "
                               f"refusing to read files outside the diff directory")
    return path
