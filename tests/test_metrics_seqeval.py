"""Our strict NER score equals seqeval (mode='strict', scheme=IOB2) on CoNLL-2003 test with
seeded noisy predictions: same P/R/F1 to the last bit, same tp/fp/fn."""

from __future__ import annotations

from dataclasses import replace

import pytest

from deepke_llm.evaluation.iob import (
    AlignmentError,
    document_to_iob2,
    documents_to_iob2,
    perturb_entities,
    seqeval_strict,
)
from deepke_llm.evaluation.scoring import score_documents
from deepke_llm.records import Document, Entity

TYPES = ("person", "location", "organization", "else")


@pytest.fixture(scope="module")
def conll_test(data_dir):
    from deepke_llm.datasets import read_dataset

    return list(read_dataset("conll03", data_dir / "conll2003" / "eng.testb", schema="conll03",
                             split="test"))


@pytest.mark.parametrize("seed", [0, 1])
def test_strict_ner_equals_seqeval_on_conll2003_test(conll_test, seed):
    assert len(conll_test) == 3453
    predictions = perturb_entities(conll_test, seed, TYPES)
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
