"""Sentence splitting: the package's shared rules (:mod:`deepke_llm.sentences`) by default,
spaCy's sentencizer on request.

The rule splitter is the default because it is an order of magnitude faster than building a
spaCy ``Doc`` per document (throughput goal: thousands of sentences per second per core), has no
dependency and is the one rule set corpus preparation uses too (Chinese ends on 。！？； and
ASCII !?;, English on . ! ? outside abbreviations, a line break always). ``splitter="spacy"``
uses ``spacy.blank(lang)`` + ``sentencizer`` (no model download needed). All return
``(start, end)`` character offsets with surrounding space trimmed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from deepke_llm.sentences import sentence_spans

Span = tuple[int, int]


def _trimmed(text: str, start: int, end: int, out: list[Span]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        out.append((start, end))


def spacy_splitter(language: str) -> Callable[[str], list[Span]]:
    """A splitter backed by ``spacy.blank(language)`` + the rule-based ``sentencizer``."""
    try:
        import spacy
    except ImportError:
        raise ImportError("splitter 'spacy' needs spaCy: pip install spacy (or use the default "
                          "rule splitter)") from None
    nlp = spacy.blank(language)
    nlp.add_pipe("sentencizer")

    def split(text: str) -> list[Span]:
        spans: list[Span] = []
        for sent in nlp(text).sents:
            _trimmed(text, sent.start_char, sent.end_char, spans)
        return spans

    return split


def make_splitter(kind: str, language: str) -> Callable[[str], list[Span]]:
    """``kind`` is "rules" (default), "spacy" or "none" (each document is one sentence)."""
    if kind == "rules":
        return partial(sentence_spans, language=language)
    if kind == "spacy":
        return spacy_splitter(language)
    if kind == "none":
        def whole(text: str) -> list[Span]:
            spans: list[Span] = []
            _trimmed(text, 0, len(text), spans)
            return spans
        return whole
    raise ValueError(f"unknown sentence splitter '{kind}': use rules, spacy or none")
