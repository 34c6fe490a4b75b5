"""Micro precision / recall / F1 from matched tuples, overall, per type and per document.

Matching is set or multiset arithmetic on hashable tuples (as seqeval does with its entities):
with ``multiset=False`` each distinct tuple of a document counts once on each side; with
``multiset=True`` a tuple repeated n times needs n matches (IEPile's ``normal`` mode: a duplicated
prediction is a false positive). Precision and recall are 0 when their denominator is 0, and F1
is ``2PR / (P + R)`` computed exactly as seqeval computes it, so the numbers are bit-identical.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counts", "LevelScore", "prf"]


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """(precision, recall, F1) as fractions; 0.0 where a denominator is 0."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    # the same expression seqeval evaluates (beta = 1), so floats agree to the last bit
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


@dataclass
class Counts:
    """True positives, false positives and false negatives."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, tp: int, fp: int, fn: int) -> None:
        self.tp += tp
        self.fp += fp
        self.fn += fn

    @property
    def precision(self) -> float:
        return prf(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        return prf(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float:
        return prf(self.tp, self.fp, self.fn)[2]

    def to_dict(self) -> dict[str, Any]:
        precision, recall, f1 = prf(self.tp, self.fp, self.fn)
        return {"precision": precision, "recall": recall, "f1": f1,
                "tp": self.tp, "fp": self.fp, "fn": self.fn}


@dataclass
class LevelScore:
    """Scores of one mode (and EE level), built one document at a time.

    ``type_index`` is the position of the per-type key inside each tuple (None: no per-type
    breakdown). ``per_document`` holds ``(tp, fp, fn)`` per document for the bootstrap.
    """

    type_index: int | None = None
    multiset: bool = False
    overall: Counts = field(default_factory=Counts)
    per_type: dict[str, Counts] = field(default_factory=dict)
    per_document: list[tuple[int, int, int]] = field(default_factory=list)

    def add_document(self, gold: Iterable[Hashable], pred: Iterable[Hashable]
                     ) -> tuple[list[Hashable], list[Hashable]]:
        """Match one document's tuples; returns the unmatched (missed gold, spurious pred)."""
        if self.multiset:
            gold_counts, pred_counts = Counter(gold), Counter(pred)
            matched = list((gold_counts & pred_counts).elements())
            missed = list((gold_counts - pred_counts).elements())
            spurious = list((pred_counts - gold_counts).elements())
        else:
            gold_set, pred_set = set(gold), set(pred)
            matched = list(gold_set & pred_set)
            missed = list(gold_set - pred_set)
            spurious = list(pred_set - gold_set)
        tp, fp, fn = len(matched), len(spurious), len(missed)
        self.overall.add(tp, fp, fn)
        self.per_document.append((tp, fp, fn))
        if self.type_index is not None:
            self._add_per_type(matched, spurious, missed)
        return missed, spurious

    def _add_per_type(self, matched: list, spurious: list, missed: list) -> None:
        index = self.type_index
        for items, slot in ((matched, "tp"), (spurious, "fp"), (missed, "fn")):
            for item in items:
                key = str(item[index])  # type: ignore[index]
                counts = self.per_type.get(key)
                if counts is None:
                    counts = self.per_type[key] = Counts()
                setattr(counts, slot, getattr(counts, slot) + 1)

    def to_dict(self) -> dict[str, Any]:
        """``{"precision", "recall", "f1", "tp", "fp", "fn", "per_type": {...}}`` (fractions)."""
        out = self.overall.to_dict()
        out["per_type"] = {key: self.per_type[key].to_dict() for key in sorted(self.per_type)}
        return out

    def document_counts(self):
        """``(n_documents, 3)`` int64 array of per-document tp, fp, fn."""
        import numpy as np

        return np.asarray(self.per_document, dtype=np.int64).reshape(-1, 3)
