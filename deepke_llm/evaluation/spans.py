"""Records -> the hashable tuples each scoring mode compares (DESIGN.md "Scoring").

Each task builds its tuples (``Task.score_tuples`` in deepke_llm/tasks/) and names the place of
the per-type key in them (``Task.type_index``), so NER, RE and EE are scored by the same matching
code:

=====  ==========================  ===========================================================
task   level                       strict / boundary / string tuple
=====  ==========================  ===========================================================
ner    -                           (type, span) / (span,) / (text, type)
re     -                           (head span, head type, relation, tail span, tail type) /
                                   (head span, relation, tail span) / (head text, relation,
                                   tail text)
ee     trigger_identification      (span,) / = strict / (trigger text,)
ee     trigger_classification      (span, event type) / = strict / (event type, trigger text)
ee     argument_identification     (event type, span) / = strict / (event type, argument text)
ee     argument_classification     (event type, role, span) / = strict /
                                   (event type, argument text, role)
=====  ==========================  ===========================================================

Decisions the table implies (documented in the README of ``deepke-llm score``):

* NER boundary is the span alone (type ignored); a type-free tuple has no per-type breakdown,
  so its ``per_type`` is empty (likewise EE trigger identification).
* EE boundary equals strict: events carry no entity types to drop.
* Per type is the relation for RE, the event type for EE trigger classification and argument
  identification, and the role for argument classification.
* A span is :class:`Offsets`; a mention without offsets becomes :class:`Ungrounded`, tagged with
  the side it comes from, so it can never equal a gold span (a false positive in strict/boundary)
  while still counting in string mode by its text.
* The string tuples are exactly IEPile's tuples, so IEPile-format files reuse this table.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from deepke_llm.records import Document
from deepke_llm.tasks import get_task
from deepke_llm.tasks.ee import LEVELS as EE_LEVELS

__all__ = ["EE_LEVELS", "MODES", "Offsets", "Ungrounded", "levels", "record_tuples",
           "type_index"]

MODES = ("strict", "boundary", "string")


class Offsets(NamedTuple):
    """A grounded span ``[start, end)`` in the document text."""

    start: int
    end: int


class Ungrounded(NamedTuple):
    """A mention without offsets; ``side`` ("gold"/"pred") keeps the two sides from matching."""

    side: str
    text: str


def levels(task: str) -> tuple[str | None, ...]:
    """Sub-scores of a task: the four EE levels, or a single unnamed level for NER and RE."""
    return get_task(task).levels


def type_index(task: str, mode: str, level: str | None) -> int | None:
    """Position of the per-type key in tuples of ``(task, mode, level)`` (None: type-free)."""
    return get_task(task).type_index[(mode, level)]


def record_tuples(task: str, mode: str, document: Document, side: str
                  ) -> dict[str | None, list[tuple]]:
    """The tuples of ``document``'s ``task`` records compared in ``mode``, per level.

    ``side`` is ``"gold"`` or ``"pred"`` (see :class:`Ungrounded`). Duplicates are kept here;
    the scorer decides between set and multiset semantics.
    """
    if mode not in MODES:
        raise ValueError(f"unknown scoring mode '{mode}': use one of {', '.join(MODES)}")

    def span(part: Any) -> Offsets | Ungrounded:
        if part.start is None:
            return Ungrounded(side, part.text)
        return Offsets(part.start, part.end)

    return get_task(task).score_tuples(document, mode, span)
