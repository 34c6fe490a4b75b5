"""Split long texts into overlapping windows that fit a model's context next to the prompt.

Cuts prefer sentence ends, then whitespace, and never split a character. Each window knows its
character offset in the document so grounded offsets map back exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Window", "iter_windows", "split_windows"]

_SENTENCE_END = re.compile(r"[.!?。！？；;]['\"”’)\]]*\s+|[。！？；\n]")
_SPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Window:
    text: str
    start: int  # offset of text[0] in the document
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
