"""Entity records <-> IOB2 tags on token-aligned documents, and seqeval's score of them.

Documents read from token files (CoNLL-2003, BIO) carry ``meta["tokens"]``, the ``[start, end]``
character offsets of each token; an entity maps to tags when its offsets fall on token edges.
This is how our strict NER scorer is cross-checked against seqeval (strict mode, IOB2).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deepke_llm.records import Document

__all__ = ["AlignmentError", "documents_to_iob2", "seqeval_strict"]


class AlignmentError(ValueError):
    """An entity cannot be written as IOB2 tags (off token edges, ungrounded or overlapping)."""


def document_to_iob2(document: Document) -> list[str]:
    """IOB2 tags (``B-type`` / ``I-type`` / ``O``) of ``document``'s entities over its tokens."""
    tokens = document.meta.get("tokens")
    if not isinstance(tokens, list):
        raise AlignmentError(f"document '{document.id}' has no meta['tokens'] (read it from a "
                             "token file such as CoNLL-2003)")
    starts = {int(start): i for i, (start, _) in enumerate(tokens)}
    ends = {int(end): i for i, (_, end) in enumerate(tokens)}
    tags = ["O"] * len(tokens)
    for entity in sorted(document.entities, key=lambda e: (e.start or 0, e.end or 0)):
        first = starts.get(entity.start) if entity.start is not None else None
        last = ends.get(entity.end) if entity.end is not None else None
        if first is None or last is None or last < first:
            raise AlignmentError(f"document '{document.id}': entity '{entity.text}' "
                                 f"[{entity.start}, {entity.end}) is not on token edges")
        if any(tag != "O" for tag in tags[first:last + 1]):
            raise AlignmentError(f"document '{document.id}': entity '{entity.text}' overlaps "
                                 "another entity (IOB2 cannot express that)")
        tags[first] = f"B-{entity.type}"
        for i in range(first + 1, last + 1):
            tags[i] = f"I-{entity.type}"
    return tags


def documents_to_iob2(documents: Iterable[Document]) -> list[list[str]]:
    """IOB2 tag sequences, one per document (see :func:`document_to_iob2`)."""
    return [document_to_iob2(document) for document in documents]


def seqeval_strict(gold_tags: list[list[str]], pred_tags: list[list[str]]) -> dict[str, Any]:
    """seqeval's micro P/R/F1 (mode='strict', scheme=IOB2) plus its tp / predicted / gold counts.

    The counts come from seqeval's own entity sets (per type, per sentence) so they can be
    compared with our tp/fp/fn.
    """
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.v1 import Entities
    from seqeval.scheme import IOB2

    options = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    true_entities = Entities(gold_tags, IOB2, False)
    pred_entities = Entities(pred_tags, IOB2, False)
    tp = predicted = gold = 0
    for name in true_entities.unique_tags | pred_entities.unique_tags:
        true_set = true_entities.filter(name)
        pred_set = pred_entities.filter(name)
        tp += len(true_set & pred_set)
        predicted += len(pred_set)
        gold += len(true_set)
    return {"precision": float(precision_score(gold_tags, pred_tags, **options)),
            "recall": float(recall_score(gold_tags, pred_tags, **options)),
            "f1": float(f1_score(gold_tags, pred_tags, **options)),
            "tp": tp, "fp": predicted - tp, "fn": gold - tp}
