"""Exclusive, non-blocking locks on output files: one run writes an output at a time.

:func:`output_lock` holds ``OUT.lock`` while a run writes ``OUT``; a second run on the same
output gets :class:`OutputBusy` instead of rewriting the first run's work.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["OutputBusy", "OutputLock", "output_lock"]

PathLike = str | os.PathLike[str]


class OutputBusy(RuntimeError):
    """Another running process is writing the same output."""


class OutputLock:
    """An exclusive, non-blocking lock on ``PATH.lock`` that leaves no file behind.

    Why not ``filelock``: it cannot remove its lock file (another process may be about to lock
    that inode), so every output would keep a ``.lock`` beside it. Here the holder unlinks the
    file *while holding it*, and a new holder checks after locking that the file it locked is
    still the one at the path (else it retries), which makes the removal safe. ``flock`` locks
    die with their process, so a killed run never blocks the next one. Taking the lock again in
    the same process nests (one lock per path per process).
    """

    _held: dict[str, OutputLock] = {}

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._depth = 0

    @classmethod
    def take(cls, target: PathLike) -> OutputLock:
        """Acquire the lock of ``target`` (its ``.lock`` sibling); :class:`OutputBusy` if held."""
        path = Path(target).with_name(Path(target).name + ".lock")
        key = os.path.realpath(path)
        lock = cls._held.get(key) or cls(path)
        lock._acquire(Path(target))
        cls._held[key] = lock
        return lock

    def _acquire(self, target: Path) -> None:
        if self._depth:
            self._depth += 1
            return
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputBusy(f"another run is writing {target} (it holds {self.path}); "
                                 "wait for it to finish or choose another output path") from None
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                self._fd, self._depth = fd, 1
                return
            os.close(fd)  # the previous holder removed that file as we locked it: take the new one

    def release(self) -> None:
        """Release one level; the last release removes the lock file."""
        if not self._depth:
            return
        self._depth -= 1
        if self._depth or self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # still holding it: nobody can have locked this file meanwhile
        os.close(self._fd)
        self._fd = None
        OutputLock._held.pop(os.path.realpath(self.path), None)


def output_lock(path: PathLike) -> OutputLock:
    """Hold ``PATH.lock`` (non-blocking); :class:`OutputBusy` when another process holds it.

    Release it with ``.release()``; taking it again in the same process nests.
    """
    return OutputLock.take(path)
