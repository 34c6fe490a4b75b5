"""Spans (start, end) indexed for the questions grounding asks of many occurrences at once.

:class:`SpanIndex` answers "how far is the nearest span?" and "which span is nearest (ties: earlier
start, then list order)?" in O(log n) per question; :class:`TakenSpans` answers "does this span
overlap one already labelled?" while spans are added. Both replace a scan of every span per
question, which made grounding quadratic in the occurrences of a mention.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate, islice
from operator import le

__all__ = ["Offsets", "SpanIndex", "TakenSpans", "distance"]

Offsets = tuple[int, int]


def distance(a: Offsets, b: Offsets) -> int:
    """The characters between two spans (0 when they touch or overlap)."""
    return max(0, max(a[0], b[0]) - min(a[1], b[1]))


class TakenSpans:
    """The union of the spans NER has labelled, for "does this span overlap one?" in O(log n).

    Spans that overlap are merged; spans that only touch stay apart, so the answer is exactly
    "some labelled span shares a character with it" (``s < end and start < e``).
    """

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []  # disjoint spans, so the ends are sorted too

    def overlaps(self, span: Offsets) -> bool:
        last = bisect_left(self.starts, span[1]) - 1  # the last span starting before span ends
        return last >= 0 and self.ends[last] > span[0]

    def add(self, spans: list[Offsets]) -> None:
        """Label ``spans``: a few are inserted one by one, many in one merge of sorted lists
        (n insertions into the middle of a list of n spans would copy n^2 items)."""
        if len(spans) <= 64:
            for span in spans:
                self._insert(*span)
            return
        starts: list[int] = []
        ends: list[int] = []
        for start, end in sorted([*zip(self.starts, self.ends, strict=True), *spans]):
            if starts and start < ends[-1]:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(start)
                ends.append(end)
        self.starts, self.ends = starts, ends

    def _insert(self, start: int, end: int) -> None:
        first = bisect_right(self.ends, start)  # spans [first, stop) overlap the new one
        stop = bisect_left(self.starts, end)
        if first < stop:
            start, end = min(start, self.starts[first]), max(end, self.ends[stop - 1])
        self.starts[first:stop] = [start]
        self.ends[first:stop] = [end]


class SpanIndex:
    """Spans sorted by start and by end, for nearest-span questions in O(log n) each."""

    def __init__(self, spans: Sequence[Offsets]) -> None:
        self.spans = spans
        # sorted() is stable: equal keys keep list order, the last tie-break of every choice
        self.by_start = sorted(range(len(spans)), key=[s for s, _ in spans].__getitem__)
        self.starts = [spans[i][0] for i in self.by_start]
        # the largest end among the first k spans by start
        self.max_end = list(accumulate((spans[i][1] for i in self.by_start), max))
        ends = [spans[i][1] for i in self.by_start]
        if all(map(le, ends, islice(ends, 1, None))):  # usual: no span inside another
            self.by_end, self.ends = self.by_start, ends  # then start order is (end, start) order
        else:
            self.by_end = sorted(range(len(spans)), key=[(e, s) for s, e in spans].__getitem__)
            self.ends = [spans[i][1] for i in self.by_end]

    def distances(self, spans: Sequence[Offsets]) -> list[int]:
        """For each of ``spans``, the smallest :func:`distance` to any indexed span."""
        starts, ends, max_end, far = self.starts, self.ends, self.max_end, 1 << 62
        out = []
        for start, end in spans:
            before_end = bisect_right(starts, end)  # spans starting at or before span's end
            if before_end and max_end[before_end - 1] >= start:
                out.append(0)
                continue
            best = starts[before_end] - end if before_end < len(starts) else far
            left = bisect_left(ends, start)  # spans ending before span starts
            out.append(min(best, start - ends[left - 1]) if left else best)
        return out

    def nearest(self, spans: Sequence[Offsets]) -> list[tuple[int, int, int] | None]:
        """For each of ``spans``: (distance, start, index) of the nearest indexed span other than
        that span itself; ties go to the earlier start, then to the earlier index."""
        starts, by_start, ends, by_end = self.starts, self.by_start, self.ends, self.by_end
        indexed, max_end, count = self.spans, self.max_end, len(self.starts)
        out: list[tuple[int, int, int] | None] = []
        for start, end in spans:
            # touching or overlapping (distance 0): the first by (start, index) that is not span
            same = bisect_left(starts, start)
            first = bisect_left(max_end, start, 0, same)  # the first span ending at/after start
            if first < same:
                out.append((0, starts[first], by_start[first]))
                continue
            after = bisect_right(starts, start, same)
            k = same  # spans starting where span starts: skip copies of span itself
            while k < after and indexed[by_start[k]][1] == end:
                k += 1
            if k < after:
                out.append((0, start, by_start[k]))
                continue
            if after < count and starts[after] <= end:
                out.append((0, starts[after], by_start[after]))
                continue
            found = None
            right = bisect_right(starts, end, after)  # the first span starting after span ends
            if right < count:
                found = (starts[right] - end, starts[right], by_start[right])
            left = bisect_left(ends, start)  # spans ending before span starts
            if left:
                group = bisect_left(ends, ends[left - 1])  # the latest end, earliest start
                i = by_end[group]
                option = (start - ends[left - 1], indexed[i][0], i)
                found = option if found is None or option < found else found
            out.append(found)
        return out
