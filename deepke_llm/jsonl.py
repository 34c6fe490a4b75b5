"""Crash-safe, resumable JSON-lines output.

Lines go to ``OUT.partial`` as each document finishes (flushed, so an interrupted run keeps its
work); the file is renamed to ``OUT`` only when the run completes, so a file at the final path is
always whole. ``resume=True`` keeps what a previous run wrote (dropping a torn last line) and
reports the ids already done.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

__all__ = ["ResumableWriter", "write_jsonl_atomic"]


def _complete_lines(path: Path) -> tuple[list[bytes], set[str]]:
    """Whole, valid JSON lines of ``path`` and the ids they carry."""
    lines: list[bytes] = []
    ids: set[str] = set()
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # torn write at a crash
            try:
                data = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            lines.append(raw)
            if isinstance(data, dict) and "id" in data:
                ids.add(str(data["id"]))
    return lines, ids


class ResumableWriter:
    """Append JSON lines to ``path.partial``; :meth:`finish` renames it to ``path``."""

    def __init__(self, path: str | os.PathLike[str], resume: bool = False) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.done_ids: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[bytes] = []
        if resume:
            # a finished earlier run, then whatever a later interrupted run added
            for source in (self.path, self.partial):
                if source.exists():
                    lines, ids = _complete_lines(source)
                    kept.extend(line for line in lines if _line_id(line) not in self.done_ids)
                    self.done_ids |= ids
        tmp = self.partial.with_name(self.partial.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.writelines(kept)
        os.replace(tmp, self.partial)
        self._handle: IO[str] | None = open(self.partial, "a", encoding="utf-8")  # noqa: SIM115
        self.written = 0

    def write(self, record: dict[str, Any] | str) -> None:
        line = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
        assert self._handle is not None, "writer is finished"
        self._handle.write(line + "\n")
        self._handle.flush()
        self.written += 1

    def finish(self) -> Path:
        """Make the output final: fsync and rename ``path.partial`` -> ``path``."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
            os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        """Stop writing without finishing (the ``.partial`` file stays for ``--resume``)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.close()


def _line_id(line: bytes) -> str | None:
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return str(data["id"]) if isinstance(data, dict) and "id" in data else None


def write_jsonl_atomic(path: str | os.PathLike[str], records) -> int:
    """Write all ``records`` (dicts or objects with ``to_dict``) to ``path`` via temp file + rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in records:
                data = record.to_dict() if hasattr(record, "to_dict") else record
                handle.write(json.dumps(data, ensure_ascii=False) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())  # the rename must never expose unwritten data
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count
