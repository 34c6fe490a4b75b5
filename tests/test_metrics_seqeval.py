"""Our strict NER score equals seqeval (mode='strict', scheme=IOB2) on CoNLL-2003 test with
seeded noisy predictions: same P/R/F1 to the last bit, same tp/fp/fn."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from deepke_llm.evaluation.iob import (
    AlignmentError,
    document_to_iob2,
    documents_to_iob2,
    seqeval_strict,
)
from deepke_llm.evaluation.scoring import score_documents
from deepke_llm.records import Document, Entity

TYPES = ("person", "location", "organization", "else")


def noisy_predictions(documents: list[Document], seed: int) -> list[Document]:
    """Per gold entity: drop it, widen/narrow it by a token, or flip its type; add spurious spans.

    Edits work on token indices, so every prediction stays token-aligned (seqeval's world);
    overlapping results are resolved by keeping the leftmost.
    """
    rng = random.Random(seed)
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
                kind = rng.choice(TYPES)
            spans.append((a, b, kind))
        if tokens and rng.random() < 0.2:
            a = rng.randrange(len(tokens))
            spans.append((a, min(len(tokens) - 1, a + rng.randrange(3)), rng.choice(TYPES)))
        entities, taken = [], -1
        for a, b, kind in sorted(spans):
            if a > taken:
                start, end = tokens[a][0], tokens[b][1]
                entities.append(Entity(kind, document.text[start:end], start, end))
                taken = b
        out.append(replace(document, entities=tuple(entities)))
    return out


@pytest.fixture(scope="module")
def conll_test(data_dir):
    from deepke_llm.datasets import read_dataset

    return list(read_dataset("conll03", data_dir / "conll2003" / "eng.testb", schema="conll03",
                             split="test"))


@pytest.mark.parametrize("seed", [0, 1])
def test_strict_ner_equals_seqeval_on_conll2003_test(conll_test, seed):
    assert len(conll_test) == 3453
    predictions = noisy_predictions(conll_test, seed)
    ours = score_documents("ner", conll_test, predictions, ["strict"]).level("strict").overall
    theirs = seqeval_strict(documents_to_iob2(conll_test), documents_to_iob2(predictions))
    assert (ours.tp, ours.fp, ours.fn) == (theirs["tp"], theirs["fp"], theirs["fn"])
    assert ours.tp + ours.fn == 5648
    assert 0.5 < ours.f1 < 0.9  # the noise really is noise
    assert (ours.precision, ours.recall, ours.f1) == (theirs["precision"], theirs["recall"],
                                                       theirs["f1"])


def test_iob2_conversion_and_its_refusals():
    tokens = [[0, 5], [6, 9], [10, 13], [14, 19]]  # "Alice met Bob Smith"
    doc = Document("a", "Alice met Bob Smith", entities=(Entity("person", "Bob Smith", 10, 19),
                                                         Entity("person", "Alice", 0, 5)),
                   meta={"tokens": tokens})
    assert document_to_iob2(doc) == ["B-person", "O", "B-person", "I-person"]
    with pytest.raises(AlignmentError, match="token edges"):
        document_to_iob2(replace(doc, entities=(Entity("person", "lice", 1, 5),)))
    with pytest.raises(AlignmentError, match="overlaps"):
        document_to_iob2(replace(doc, entities=(Entity("x", "Bob", 10, 13),
                                                Entity("y", "Bob Smith", 10, 19))))
    with pytest.raises(AlignmentError, match="meta"):
        document_to_iob2(Document("b", "text"))
