"""Files, the one way: atomic writes, locked resumable JSON-lines output, progress, the error sink.

- :func:`atomic_path` / :func:`write_jsonl_atomic`: write to a temp file in the target's folder,
  fsync, rename; a crash never leaves a half-written file at the final path.
- :class:`ResumableWriter`: lines go to ``OUT.partial`` as each document finishes (flushed, so an
  interrupted run keeps its work) and the file becomes ``OUT`` only when the run completes. It
  holds ``OUT.lock`` while it writes, so a second run on the same output refuses instead of
  rewriting the first run's ``.partial``; the OS drops the lock when a process dies, so a killed
  run never blocks the next one.
- :func:`json_line`: no record can crash a writer (lone surrogates become U+FFFD).
- :func:`refuse_same_file`: an output that is one of the inputs (also through links) is refused.
- :func:`read_jsonl`: the one JSON-lines reader: ``(line number, value)`` per non-blank line,
  a bad line (not UTF-8, not JSON, a huge int, a lone surrogate escape) reported as
  ``file:line: reason`` to ``on_error`` (or raised as :class:`LineError`) and skipped.
- :class:`Problems` (:mod:`deepke_llm.problems`): the error sink every reader and command reports
  bad input to; :class:`ProgressBar` (:mod:`deepke_llm.progress`): tqdm on stderr, or nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from deepke_llm.locks import OutputBusy, output_lock
from deepke_llm.problems import ErrorCallback, Problems, print_errors
from deepke_llm.progress import ProgressBar

__all__ = ["ErrorCallback", "LineError", "OutputBusy", "Problems", "ProgressBar",
           "ResumableWriter", "SameFileError", "atomic_path", "count_lines", "decode_line",
           "has_surrogate",
           "json_chunks", "json_line", "json_value", "nonblank_lines", "open_input",
           "output_lock", "print_errors", "read_jsonl", "refuse_same_file", "replace_surrogates",
           "sha256_file", "write_jsonl_atomic"]

PathLike = str | os.PathLike[str]


class SameFileError(ValueError):
    """An output path names one of the run's inputs."""


def json_line(record: Any) -> str:
    """One JSON line (no newline) for a dict or an object with ``to_dict``; never fails to encode.

    A lone surrogate (from a broken ``\\ud800`` escape) cannot be written as UTF-8; it becomes
    U+FFFD, which keeps every offset valid (one code point for one).
    """
    return "".join(json_chunks(record))


def json_chunks(record: Any) -> Iterator[str]:
    """The pieces of :func:`json_line`, each record of a Document dumped on its own, so writing
    a document with millions of mentions never builds them all as dicts and one string."""
    if not hasattr(record, "items") or isinstance(record, dict):
        data = record.to_dict() if hasattr(record, "to_dict") else record
        yield replace_surrogates(json.dumps(data, ensure_ascii=False))
        return
    separator = "{"
    for key, value in record.items():
        yield f"{separator}{json.dumps(key, ensure_ascii=False)}: "
        separator = ", "
        if isinstance(value, Iterator):
            inner = "["
            for item in value:
                yield inner + replace_surrogates(json.dumps(item, ensure_ascii=False))
                inner = ", "
            yield "[]" if inner == "[" else "]"
        else:
            yield replace_surrogates(json.dumps(value, ensure_ascii=False))
    yield "}" if separator == ", " else "{}"


def refuse_same_file(output: PathLike | None, inputs: Iterable[PathLike | None]) -> None:
    """Raise :class:`SameFileError` when ``output`` is one of ``inputs`` (or its ``.partial``).

    Compared by resolved path (symlinks followed) and, for existing files, by inode, so a hard
    link or ``./x`` vs ``x`` is caught too.
    """
    if output is None:
        return
    out = Path(output)
    targets = [out, out.with_name(out.name + ".partial")]
    for item in inputs:
        if item is None:
            continue
        source = Path(item)
        for target in targets:
            same = os.path.realpath(source) == os.path.realpath(target)
            if not same and source.exists() and target.exists():
                with contextlib.suppress(OSError):
                    same = os.path.samefile(source, target)
            if same:
                raise SameFileError(f"output {output} is the input {item}: writing it would "
                                    "destroy the input; choose another output path")


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on error it is removed.

    The caller writes (and closes) the temp file; directories work too, also over an existing
    directory or file (see :func:`_replace`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())  # the rename must never expose unwritten data
        _replace(tmp, target)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _replace(tmp: Path, target: Path) -> None:
    """``os.replace(tmp, target)``, also for a directory ``tmp`` over an existing ``target``.

    rename(2) cannot put a directory over a non-empty directory or over a file, which is what
    overwriting an output directory needs (``weights ... --force``, a re-exported adapter). So
    the old target is moved aside, the new one renamed in, and the old one deleted only then; a
    failure in between puts the old one back.
    """
    if not tmp.is_dir() or not os.path.lexists(target):
        os.replace(tmp, target)
        return
    import shutil

    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def sha256_file(path: PathLike, block: int = 8 << 20) -> str:
    """Hex sha256 of a file, read in blocks (reports name data by it; weights are checked by it)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def write_jsonl_atomic(path: PathLike, records: Iterable[Any]) -> int:
    """Write all ``records`` (dicts or objects with ``to_dict``) to ``path`` via temp + rename."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json_line(record) + "\n")
            count += 1
    return count


def _complete_lines(path: Path) -> tuple[list[bytes], set[str]]:
    """Whole, valid JSON lines of ``path`` and the ids they carry (a torn tail is dropped)."""
    lines: list[bytes] = []
    ids: set[str] = set()
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break  # torn write at a crash
            try:
                data = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                break
            if isinstance(data, dict) and "id" in data:
                if str(data["id"]) in ids:
                    continue
                ids.add(str(data["id"]))
            lines.append(raw)
    return lines, ids


class ResumableWriter:
    """Append JSON lines to ``path.partial`` under ``path.lock``; :meth:`finish` renames it to
    ``path``. ``resume=True`` keeps what earlier runs wrote and lists their ids in ``done_ids``."""

    def __init__(self, path: PathLike, resume: bool = False) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.done_ids: set[str] = set()
        self._lock = output_lock(self.path)
        try:
            kept: list[bytes] = []
            if resume:
                # a finished earlier run, then whatever a later interrupted run added
                for source in (self.path, self.partial):
                    if source.exists():
                        lines, ids = _complete_lines(source)
                        kept.extend(line for line, line_id in zip(lines, map(_line_id, lines),
                                                                   strict=True)
                                    if line_id not in self.done_ids)
                        self.done_ids |= ids
            with atomic_path(self.partial) as tmp, open(tmp, "wb") as handle:
                handle.writelines(kept)
            self._handle: IO[str] | None = open(self.partial, "a", encoding="utf-8")  # noqa: SIM115
        except BaseException:
            self._lock.release()
            raise
        self.written = 0

    def write(self, record: Any) -> None:
        """Append one record (a Document, a dict, or an already serialised JSON line) and flush.

        A Document is written piece by piece (:func:`json_chunks`)."""
        if self._handle is None:
            raise ValueError(f"writer for {self.path} is closed")
        start = self._handle.tell()
        try:
            if isinstance(record, str):
                self._handle.write(replace_surrogates(record))
            else:
                self._handle.writelines(json_chunks(record))
            self._handle.write("\n")
            self._handle.flush()
        except BaseException:
            # never leave half a line for the next one to be appended to (a full disk, Ctrl-C)
            with contextlib.suppress(OSError, ValueError):
                self._handle.truncate(start)
            raise
        self.written += 1

    def finish(self) -> Path:
        """Make the output final: fsync and rename ``path.partial`` -> ``path``."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
            os.replace(self.partial, self.path)
            self._release()
        return self.path

    def close(self) -> None:
        """Stop writing without finishing (the ``.partial`` file stays for ``--resume``)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._release()

    def _release(self) -> None:
        self._lock.release()

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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    return str(data["id"]) if isinstance(data, dict) and "id" in data else None


def count_lines(path: PathLike) -> int:
    """Non-blank lines of a file (what a JSON-lines reader will look at); cheap next to the work."""
    with open(path, "rb") as handle:
        return sum(1 for raw in handle if raw.strip())


_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> str:
    """``text`` with every lone surrogate code point replaced by U+FFFD (same length, so offsets
    stay valid); such code points cannot be written as UTF-8."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def has_surrogate(value: Any) -> bool:
    """Does any string (or key) inside a parsed JSON value hold a lone surrogate?"""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class LineError(ValueError):
    """A line of an input file cannot be read; the message is ``file:line: reason``."""


def open_input(path: PathLike) -> IO[bytes]:
    """Open ``path`` for reading bytes; ``.gz`` and ``.bz2`` files are decompressed on the fly."""
    name = str(path)
    if name.endswith(".gz"):
        import gzip

        return gzip.open(name, "rb")
    if name.endswith(".bz2"):
        import bz2

        return bz2.open(name, "rb")
    return open(name, "rb")  # noqa: SIM115 (the caller closes it)


def nonblank_lines(path: PathLike) -> Iterator[tuple[int, bytes]]:
    """``(line_number, raw bytes)`` of every line that is not blank (numbers count blank ones)."""
    with open_input(path) as handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                yield number, raw


def decode_line(raw: bytes, where: str, first_line: bool = False) -> str:
    """One line's text; :class:`LineError` ``{where}: reason`` when it is not UTF-8.

    A UTF-8 byte-order mark (some editors write one) is not part of the first line.
    """
    try:
        return raw.decode("utf-8-sig" if first_line else "utf-8")
    except UnicodeDecodeError:
        raise LineError(f"{where}: not valid UTF-8; re-encode the file as UTF-8") from None


def json_value(line: str, where: str) -> Any:
    """The JSON value of one line; :class:`LineError` ``{where}: reason`` when it has none.

    An integer longer than Python reads, JSON nested too deeply and a lone surrogate escape are
    errors, never crashes.
    """
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        message = f"{where}: not valid JSON ({exc.msg} at column {exc.colno})"
    except ValueError as exc:  # e.g. an integer longer than Python reads (4,300 digits)
        message = f"{where}: not valid JSON ({str(exc).split(';')[0]})"
    except RecursionError:
        message = f"{where}: JSON nested too deeply to read"
    else:
        # UTF-8 bytes cannot hold a surrogate; only a lone "\udXXX" escape can
        if "\\u" not in line or not has_surrogate(value):
            return value
        message = (f"{where}: a string holds a lone surrogate escape (\\ud800-\\udfff), "
                   "which is not Unicode text; fix or drop the line")
    raise LineError(message)


def read_jsonl(path: PathLike, on_error: ErrorCallback | None = None
               ) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for each non-blank line of a JSON-lines file.

    A line that cannot be read (see :func:`decode_line`, :func:`json_value`) is passed to ``on_error`` as
    ``file:line: reason`` and skipped; without ``on_error`` it raises :class:`LineError`.
    """
    for number, raw in nonblank_lines(path):
        try:
            where = f"{path}:{number}"
            yield number, json_value(decode_line(raw, where, number == 1), where)
        except LineError as exc:
            if on_error is None:
                raise
            on_error(str(exc))
