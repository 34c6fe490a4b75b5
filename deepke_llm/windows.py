"""Split long texts into overlapping windows that fit a model's context next to the prompt, and
merge what the windows found.

Cuts prefer sentence ends, then whitespace, and never split a character. Each window knows its
character offset in the document so grounded offsets map back exactly. Merging keeps a record
cut by a window's edge only when no overlapping window holds it whole.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Window", "WindowPlace", "iter_windows", "merge_window_records", "split_windows"]

_SENTENCE_END = re.compile(r"[.!?。！？；;]['\"”’)\]]*\s+|[。！？；\n]")
_SPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Window:
    text: str
    start: int  # offset of text[0] in the document
    first: bool
    last: bool

    @property
    def place(self) -> WindowPlace:
        """Where the window sits (what merging needs once its text is gone)."""
        return WindowPlace(self.start, self.start + len(self.text), self.first, self.last)


@dataclass(frozen=True)
class WindowPlace:
    """A window's place in its document (its text is not kept once its prompts are made)."""

    start: int
    end: int
    first: bool
    last: bool


def _cut_point(text: str, lo: int, hi: int) -> int:
    """Best cut in text[lo:hi]: after the last sentence end, else at the last space, else ``hi``."""
    best = -1
    for match in _SENTENCE_END.finditer(text, lo, hi):
        best = match.end()
    if best > lo:
        return best
    spaces = [m.start() for m in _SPACE.finditer(text, lo, hi)]
    return spaces[-1] + 1 if spaces and spaces[-1] + 1 > lo else hi


# texts up to this many characters are measured whole; longer ones by a sample of this size
# (tokenising a 50 MB text inside a prompt would cost gigabytes for one ratio)
MEASURE_CHARS = 1_000_000
# no tokenizer packs more characters than this into one token on average over real text
MAX_CHARS_PER_TOKEN = 32


def split_windows(text: str, max_tokens: int, count_tokens: Callable[[str], int],
                  overlap: float = 0.15, min_overlap_tokens: int = 32) -> list[Window]:
    """All windows of :func:`iter_windows` as a list."""
    return list(iter_windows(text, max_tokens, count_tokens, overlap, min_overlap_tokens))


def iter_windows(text: str, max_tokens: int, count_tokens: Callable[[str], int],
                 overlap: float = 0.15, min_overlap_tokens: int = 32) -> Iterator[Window]:
    """Windows of at most ``max_tokens`` tokens covering ``text``, consecutive ones overlapping,
    cut one at a time as they are asked for (memory stays bounded by a window).

    ``overlap`` is the share of a window repeated at the start of the next one (at least
    ``min_overlap_tokens``, at most half the window), so a mention cut by one window's edge
    appears whole in the next.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    if len(text) <= max_tokens * MAX_CHARS_PER_TOKEN:
        measured = text if len(text) <= MEASURE_CHARS else text[:MEASURE_CHARS]
        total = count_tokens(measured)
        if total <= max_tokens and measured is text:
            yield Window(text, 0, True, True)
            return
    else:
        measured = text[:MEASURE_CHARS]
        total = count_tokens(measured)
    chars_per_token = max(len(measured) / max(total, 1), 0.25)
    size = max(8, int(max_tokens * chars_per_token * 0.9))
    start = 0
    first = True
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            end = _cut_point(text, start + size // 2, end)
        while end - start > 1 and count_tokens(text[start:end]) > max_tokens:
            end = start + (end - start) * 3 // 4
            if end < len(text):
                end = _cut_point(text, start + (end - start) // 2, end)
        last = end >= len(text)
        yield Window(text[start:end], start, first, last)
        first = False
        if last:
            break
        step_back = max(int((end - start) * overlap),
                        min((end - start) // 2, int(min_overlap_tokens * chars_per_token)))
        next_start = end - step_back
        if step_back:
            # start the next window at a word or sentence start inside the overlap
            space = text.find(" ", next_start, end)
            next_start = space + 1 if 0 <= space < end - 1 else next_start
        start = max(next_start, start + 1)


def merge_window_records(found: Mapping[int, Sequence[Any]], windows: Sequence[WindowPlace]
                         ) -> list[Any]:
    """The records of every window (document offsets, keyed by window index), without repeats.

    With several windows, a record running into an edge where its window cut the text is left
    out when another window holds all of it, and a record with a mention its window's model
    named but the window does not hold is left out when another window grounded the same thing.
    """
    several = len(windows) > 1
    starts = [w.start for w in windows]
    widest = max((w.end - w.start for w in windows), default=0)
    records: list[Any] = []
    for index, records_found in found.items():
        for record in records_found:
            if several and _touches_cut(record, windows[index]) and \
                    _held_by_other(record, index, windows, starts, widest):
                continue  # cut by this window's edge; an overlapping window sees it whole
            records.append(record)
    records = list(dict.fromkeys(records))
    return _drop_ungrounded_twins(records) if several else records


def _spans(record: Any) -> list[tuple[int, int]]:
    return [(part.start, part.end) for part in record.mentions() if part.start is not None]


def _touches_cut(record: Any, window: WindowPlace) -> bool:
    """Does a span (document offsets) run into an edge where ``window`` cut the text?"""
    return any((not window.last and end >= window.end) or (not window.first and start <= window.start)
               for start, end in _spans(record))


def _held_by_other(record: Any, index: int, windows: Sequence[WindowPlace], starts: list[int],
                   widest: int) -> bool:
    """Does another window hold all of the record's spans? Only windows starting at most
    ``widest`` characters before the record can, so bisection finds the few to look at."""
    spans = _spans(record)
    if not spans:
        return False
    lo = min(s for s, _ in spans)
    hi = max(e for _, e in spans)
    first = bisect.bisect_left(starts, lo - widest)
    last = bisect.bisect_right(starts, lo)  # windows[first:last] start in [lo - widest, lo]
    return any(i != index and windows[i].end >= hi for i in range(first, last))


def _drop_ungrounded_twins(records: list[Any]) -> list[Any]:
    """A mention a window's model named without it being in that window is dropped when another
    window grounded the same thing."""
    whole = [len(_spans(r)) == len(r.mentions()) for r in records]
    grounded = {r.content_key() for r, ok in zip(records, whole, strict=True) if ok}
    return [r for r, ok in zip(records, whole, strict=True) if ok or r.content_key() not in grounded]
