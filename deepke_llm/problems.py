"""The one error sink: bad input (and other non-fatal problems) counted, kept and passed on.

Every reader, command and report takes problems the same way: a :class:`Problems` is counted by
kind, keeps the first messages (all kinds together and the first few of each kind) and hands
every message to one callback, ``on_error: Callable[[str], None]``. A sink is itself such a
callback (``problems(message)``), and ``append`` lets it stand where a list of messages was
expected. Messages are one line, ``file:line: what`` where a line is known.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["ErrorCallback", "Problems", "one_line", "print_errors"]

ErrorCallback = Callable[[str], None]
"""What every ``on_error`` parameter takes: called once per problem with its one-line message."""


class Problems:
    """Counts problems by kind, keeps the first ``keep`` messages (and ``per_kind`` of each kind)
    and passes each message to ``on_error``.

    ``kind`` names what went wrong (``broken_line``, ``duplicate_id``, ...); a caller that has no
    kinds reports with the sink's ``default_kind``.
    """

    def __init__(self, on_error: ErrorCallback | None = None, *, keep: int = 1000,
                 per_kind: int = 5, default_kind: str = "error") -> None:
        self.on_error = on_error
        self.keep = keep
        self.per_kind = per_kind
        self.default_kind = default_kind
        self.counts: Counter = Counter()
        self.messages: list[str] = []
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, message: str, count: int = 1) -> None:
        """Report ``count`` problems of ``kind`` described by one ``message``."""
        self.counts[kind] += count
        if len(self.messages) < self.keep:
            self.messages.append(message)
        shown = self.examples.setdefault(kind, [])
        if len(shown) < self.per_kind:
            shown.append(message)
        if self.on_error is not None:
            self.on_error(message)

    def __call__(self, message: str) -> None:
        """Report one problem of the default kind (a sink is an ``on_error`` callback)."""
        self.add(self.default_kind, message)

    append = __call__  # so a sink can stand where a list of messages was expected
    report = __call__

    @property
    def count(self) -> int:
        """All problems reported so far."""
        return sum(self.counts.values())

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def merge(self, other: Problems) -> None:
        """Add ``other``'s counts and kept messages (no callback is called again)."""
        self.counts.update(other.counts)
        room = max(self.keep - len(self.messages), 0)
        self.messages.extend(other.messages[:room])
        for kind, messages in other.examples.items():
            shown = self.examples.setdefault(kind, [])
            shown.extend(messages[:max(self.per_kind - len(shown), 0)])

    def to_dict(self) -> dict[str, Any]:
        """``{"counts": {kind: n}, "messages": [first messages]}`` (the stats files' layout)."""
        return {"counts": dict(sorted(self.counts.items())), "messages": list(self.messages)}


def print_errors(show: int | None = None, prefix: str = "error: ") -> ErrorCallback:
    """An ``on_error`` callback printing each message to stderr as ``{prefix}{message}``.

    With ``show`` only the first ``show`` messages are printed, then one line saying the rest are
    counted, not shown.
    """
    printed = 0

    def emit(message: str) -> None:
        nonlocal printed
        printed += 1
        if show is None or printed <= show:
            print(f"{prefix}{message}", file=sys.stderr, flush=True)
        elif printed == show + 1:
            print(f"(more than {show} problems: the rest are counted, not shown)",
                  file=sys.stderr, flush=True)

    return emit


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
