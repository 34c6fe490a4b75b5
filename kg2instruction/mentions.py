"""Mention detection: alias-gazetteer matches (Aho-Corasick), longest non-overlapping, on word
boundaries for scripts that separate words with spaces.

A match must not start or end inside a word of a space-separated script (Latin, Cyrillic, digits
...); Chinese/Japanese characters carry no word boundaries, so a CJK alias may match anywhere and a
Latin alias inside Chinese text still matches. The boundary test is per character, so English and
Chinese text go through the same code.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from deepke_llm.cjk import is_cjk
from kg2instruction.kb import KnowledgeBase


@dataclass(slots=True)
class Mention:
    start: int
    end: int
    alias: int
    sentence: int


def _word_char(char: str) -> bool:
    return char.isalnum() and (char.isascii() or not is_cjk(char))


def find_matches(text: str, kb: KnowledgeBase) -> list[tuple[int, int, int]]:
    """All alias matches ``(start, end, alias)`` that respect word boundaries."""
    if kb.automaton is None or not len(kb.automaton):
        return []
    haystack = kb.key(text)
    lengths = kb.alias_length
    size = len(text)
    found = []
    word = _word_char
    for last, alias in kb.automaton.iter(haystack):
        end = last + 1
        start = end - lengths[alias]
        # cheapest test first: most raw matches end inside a word of the text
        if end < size and word(text[end]) and word(text[last]):
            continue
        if start > 0 and word(text[start - 1]) and word(text[start]):
            continue
        found.append((start, end, alias))
    return found


def select_longest(matches: list[tuple[int, int, int]],
                   support: dict[int, int] | None = None) -> list[tuple[int, int, int]]:
    """Longest matches first, then leftmost; drop any match overlapping a kept one.

    ``support`` (match position in ``matches`` -> 1) lets KB-supported matches go first.
    """
    order = sorted(range(len(matches)), key=lambda i: (
        -(support or {}).get(i, 0), matches[i][0] - matches[i][1], matches[i][0]))
    starts: list[int] = []
    ends: list[int] = []
    kept: list[tuple[int, int, int]] = []
    for position in order:
        start, end, _ = match = matches[position]
        i = bisect_right(starts, start)
        if i and ends[i - 1] > start:
            continue
        if i < len(starts) and starts[i] < end:
            continue
        starts.insert(i, start)
        ends.insert(i, end)
        kept.insert(i, match)
    return kept


def _overlap_clusters(matches: list[tuple[int, int, int]]) -> list[list[int]]:
    """Groups of (indices of) matches connected by overlap; ``matches`` sorted by start."""
    clusters: list[list[int]] = []
    reach = -1
    for i, (start, end, _) in enumerate(matches):
        if start < reach:
            clusters[-1].append(i)
            reach = max(reach, end)
        else:
            clusters.append([i])
            reach = end
    return clusters


def _kb_support(kb: KnowledgeBase, alias: int, partners: list[int]) -> int:
    """1 when some candidate of ``alias`` is KB-related to a candidate of a partner alias."""
    mine = kb.candidates(alias)[:MAX_CHECKED_CANDIDATES]
    for other in partners:
        if other == alias:
            continue
        for b in kb.candidates(other)[:MAX_CHECKED_CANDIDATES]:
            for a in mine:
                if a != b and kb.related(a, b):
                    return 1
    return 0


MAX_CHECKED_CANDIDATES = 20
MAX_PARTNERS = 30


def detect_mentions(text: str, sentences: list[tuple[int, int]],
                    kb: KnowledgeBase) -> list[Mention]:
    """Gazetteer mentions inside sentences, in text order.

    Overlapping matches are resolved longest-first, except that a match whose entity the KB
    relates to another mention of the sentence beats one that has no such support — so
    "super middleweight" yields to "middleweight" when only the latter is related to the boxer
    named next to it. A match across a sentence end is dropped.
    """
    bounds = [s[0] for s in sentences]
    by_sentence: dict[int, list[tuple[int, int, int]]] = {}
    for start, end, alias in find_matches(text, kb):
        k = bisect_right(bounds, start) - 1
        if k >= 0 and end <= sentences[k][1]:
            by_sentence.setdefault(k, []).append((start, end, alias))
    mentions: list[Mention] = []
    for k in sorted(by_sentence):
        matches = sorted(by_sentence[k])
        support: dict[int, int] = {}
        for cluster in _overlap_clusters(matches):
            if len(cluster) < 2:
                continue
            inside = set(cluster)
            partners = [m[2] for i, m in enumerate(matches) if i not in inside][:MAX_PARTNERS]
            for i in cluster:
                support[i] = _kb_support(kb, matches[i][2], partners)
        mentions.extend(Mention(start, end, alias, k)
                        for start, end, alias in select_longest(matches, support))
    return mentions
