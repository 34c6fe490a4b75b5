"""Score predicted Documents against gold Documents in strict, boundary and string modes.

On record files every mode compares per-document SETS of tuples (see :mod:`.spans`): two records
with the same tuple are the same mention (strict: same offsets and type) and count once, on
either side; a document with no records on either side counts nothing. The JSON form
(:meth:`TaskScore.to_dict`) is the contract of ``deepke-llm score --json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepke_llm.records import Document
from deepke_llm.schema import Schema, load_schema
from deepke_llm.tasks import get_task, task_names

from .diagnostics import Diagnostics, check_document, known_types, pair_documents, used_types
from .metrics import LevelScore
from .spans import MODES, levels, record_tuples, type_index

__all__ = ["MismatchSample", "TaskScore", "score_documents"]

@dataclass
class MismatchSample:
    """A missed gold tuple or a spurious predicted tuple of one document (for error reports)."""

    document: Document
    level: str | None
    kind: str  # "missed" | "spurious"
    item: tuple


@dataclass
class TaskScore:
    """All modes (and EE levels) of one task, plus what went wrong on the way."""

    task: str
    modes: dict[str, dict[str | None, LevelScore]]
    documents: int = 0
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    mismatches: dict[str, list[MismatchSample]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def level(self, mode: str, level: str | None = None) -> LevelScore:
        return self.modes[mode][level]

    def mode_dict(self, mode: str) -> dict[str, Any]:
        scores = self.modes[mode]
        if get_task(self.task).has_levels:
            return {name: score.to_dict() for name, score in scores.items()}
        return scores[None].to_dict()

    def to_dict(self) -> dict[str, Any]:
        """``{task: {mode: {"precision", ..., "per_type": {...}}}}`` (EE: one more level)."""
        return {self.task: {mode: self.mode_dict(mode) for mode in self.modes}}


def new_task_score(task: str, modes: Sequence[str], multiset: bool = False) -> TaskScore:
    """An empty TaskScore with a LevelScore for every mode and level of ``task``."""
    if task not in task_names():
        raise ValueError(f"unknown task '{task}': use one of {', '.join(task_names())}")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown scoring mode '{unknown[0]}': use one of {', '.join(MODES)}")
    return TaskScore(task, {mode: {level: LevelScore(type_index(task, mode, level), multiset)
                                   for level in levels(task)} for mode in modes})


def _gold_types(task: str, documents: Iterable[Document]) -> set[str]:
    return {value for document in documents for _, _, value in used_types(task, document)}


def score_documents(task: str, gold: Iterable[Document], pred: Iterable[Document],
                    modes: Sequence[str] = MODES, *, schema: Schema | str | None = None,
                    keep_mismatches: Sequence[str] = (), gold_name: str = "gold",
                    pred_name: str = "pred", diagnostics: Diagnostics | None = None) -> TaskScore:
    """Score ``pred`` against ``gold`` (paired by document id) in each of ``modes``.

    ``schema`` enables the unknown-type check (without one, predicted types that never occur in
    the gold are reported). ``keep_mismatches`` names modes whose missed and spurious tuples are
    kept for error reports. Problems are counted in ``TaskScore.diagnostics``; none is fatal.
    """
    result = new_task_score(task, modes)
    if diagnostics is not None:
        result.diagnostics = diagnostics
    diag = result.diagnostics
    pairs = list(pair_documents(gold, pred, diag, gold_name, pred_name))
    known = known_types(task, load_schema(schema)) if schema is not None else None
    pred_known = known if known is not None else _gold_types(task, (g for g, _ in pairs))
    for mode in keep_mismatches:
        result.mismatches[mode] = []
    for gold_doc, pred_doc in pairs:
        check_document(task, gold_doc, "gold", gold_name, diag, known)
        if pred_doc is not None:
            check_document(task, pred_doc, "pred", pred_name, diag, pred_known)
        for mode, scores in result.modes.items():
            gold_tuples = record_tuples(task, mode, gold_doc, "gold")
            pred_tuples = record_tuples(task, mode, pred_doc, "pred") if pred_doc else {}
            for level, score in scores.items():
                missed, spurious = score.add_document(gold_tuples[level],
                                                      pred_tuples.get(level, ()))
                if mode in result.mismatches:
                    result.mismatches[mode].extend(
                        [MismatchSample(gold_doc, level, "missed", t) for t in missed]
                        + [MismatchSample(pred_doc or gold_doc, level, "spurious", t)
                           for t in spurious])
    result.documents = len(pairs)
    return result
