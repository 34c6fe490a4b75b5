"""Entity records <-> IOB2 tags on token-aligned documents, and seqeval's score of them.

Documents read from token files (CoNLL-2003, BIO) carry ``meta["tokens"]``, the ``[start, end]``
character offsets of each token; an entity maps to tags when its offsets fall on token edges.
This is how our strict NER scorer is cross-checked against seqeval (strict mode, IOB2).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from deepke_llm.records import Document, Entity

__all__ = ["AlignmentError", "documents_to_iob2", "perturb_entities", "seqeval_strict"]


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


def perturb_entities(documents: Iterable[Document], seed: int,
                     types: Sequence[str] | None = None) -> list[Document]:
    """Seeded, token-aligned noisy copies of gold entities (synthetic predictions for cross-checks).

    Per gold entity: dropped (10%), widened by a token on the right (8%) or left (6%), narrowed
    (4%), or given a random type (10%); a fifth of the documents gets one spurious 1-3 token span.
    Overlaps are resolved by keeping the leftmost span, so the result is expressible in IOB2.
    """
    rng = random.Random(seed)
    documents = list(documents)
    kinds = list(types or sorted({e.type for d in documents for e in d.entities}))
    out = []
    for document in documents:
        tokens = document.meta["tokens"]
        first = {start: i for i, (start, _) in enumerate(tokens)}
        last = {end: i for i, (_, end) in enumerate(tokens)}
        spans = []
        for entity in document.entities:
            a, b, kind = first[entity.start], last[entity.end], entity.type
            roll = rng.random()
            if roll < 0.10:
                continue
            if roll < 0.18:
                b = min(len(tokens) - 1, b + 1)
            elif roll < 0.24:
                a = max(0, a - 1)
            elif roll < 0.28 and b > a:
                b -= 1
            elif roll < 0.38:
                kind = rng.choice(kinds)
            spans.append((a, b, kind))
        if tokens and kinds and rng.random() < 0.2:
            a = rng.randrange(len(tokens))
            spans.append((a, min(len(tokens) - 1, a + rng.randrange(3)), rng.choice(kinds)))
        entities, taken = [], -1
        for a, b, kind in sorted(spans):
            if a > taken:
                start, end = tokens[a][0], tokens[b][1]
                entities.append(Entity(kind, document.text[start:end], start, end))
                taken = b
        out.append(replace(document, entities=tuple(entities)))
    return out
