"""Records -> the hashable tuples each scoring mode compares (DESIGN.md "Scoring").

One table for all tasks, so NER, RE and EE are scored by the same matching code:

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

from collections.abc import Callable
from typing import Any, NamedTuple

from deepke_llm.records import Document

__all__ = ["EE_LEVELS", "MODES", "Offsets", "Ungrounded", "levels", "record_tuples",
           "type_index"]

MODES = ("strict", "boundary", "string")
EE_LEVELS = ("trigger_identification", "trigger_classification", "argument_identification",
             "argument_classification")


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
    return EE_LEVELS if task == "ee" else (None,)


def _span(part: Any, side: str) -> Offsets | Ungrounded:
    if part.start is None:
        return Ungrounded(side, part.text)
    return Offsets(part.start, part.end)


# (task, mode, level) -> index of the per-type key inside the tuple, None when type-free
_TYPE_INDEX: dict[tuple[str, str, str | None], int | None] = {
    ("ner", "strict", None): 0, ("ner", "boundary", None): None, ("ner", "string", None): 1,
    ("re", "strict", None): 2, ("re", "boundary", None): 1, ("re", "string", None): 1,
}
for _mode in ("strict", "boundary"):
    _TYPE_INDEX.update({("ee", _mode, "trigger_identification"): None,
                        ("ee", _mode, "trigger_classification"): 1,
                        ("ee", _mode, "argument_identification"): 0,
                        ("ee", _mode, "argument_classification"): 1})
_TYPE_INDEX.update({("ee", "string", "trigger_identification"): None,
                    ("ee", "string", "trigger_classification"): 0,
                    ("ee", "string", "argument_identification"): 0,
                    ("ee", "string", "argument_classification"): 2})


def type_index(task: str, mode: str, level: str | None) -> int | None:
    """Position of the per-type key in tuples of ``(task, mode, level)`` (None: type-free)."""
    return _TYPE_INDEX[(task, mode, level)]


def _ner(document: Document, mode: str, side: str) -> dict[str | None, list[tuple]]:
    if mode == "string":
        return {None: [(e.text, e.type) for e in document.entities]}
    if mode == "boundary":
        return {None: [(_span(e, side),) for e in document.entities]}
    return {None: [(e.type, _span(e, side)) for e in document.entities]}


def _re(document: Document, mode: str, side: str) -> dict[str | None, list[tuple]]:
    if mode == "string":
        return {None: [(r.head.text, r.type, r.tail.text) for r in document.relations]}
    if mode == "boundary":
        return {None: [(_span(r.head, side), r.type, _span(r.tail, side))
                       for r in document.relations]}
    return {None: [(_span(r.head, side), r.head.type, r.type, _span(r.tail, side), r.tail.type)
                   for r in document.relations]}


def _ee(document: Document, mode: str, side: str) -> dict[str | None, list[tuple]]:
    out: dict[str | None, list[tuple]] = {level: [] for level in EE_LEVELS}
    text = mode == "string"
    for event in document.events:
        trigger = event.trigger.text if text else _span(event.trigger, side)
        out["trigger_identification"].append((trigger,))
        out["trigger_classification"].append((event.type, trigger) if text
                                              else (trigger, event.type))
        for argument in event.arguments:
            if text:
                out["argument_identification"].append((event.type, argument.text))
                out["argument_classification"].append((event.type, argument.text, argument.role))
            else:
                span = _span(argument, side)
                out["argument_identification"].append((event.type, span))
                out["argument_classification"].append((event.type, argument.role, span))
    return out


_BUILDERS: dict[str, Callable[[Document, str, str], dict[str | None, list[tuple]]]] = {
    "ner": _ner, "re": _re, "ee": _ee}


def record_tuples(task: str, mode: str, document: Document, side: str
                  ) -> dict[str | None, list[tuple]]:
    """The tuples of ``document``'s ``task`` records compared in ``mode``, per level.

    ``side`` is ``"gold"`` or ``"pred"`` (see :class:`Ungrounded`). Duplicates are kept here;
    the scorer decides between set and multiset semantics.
    """
    if mode not in MODES:
        raise ValueError(f"unknown scoring mode '{mode}': use one of {', '.join(MODES)}")
    return _BUILDERS[task](document, mode, side)
