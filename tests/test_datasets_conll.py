"""CoNLL-2003 reader: published counts, IOB1/IOB2 decoding, documents, offsets, bad lines."""

from __future__ import annotations

import pytest

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.conll import read_conll


def _check_offsets(docs):
    for doc in docs:
        for entity in doc.entities:
            assert doc.text[entity.start:entity.end] == entity.text
        for start, end in doc.meta["tokens"]:
            assert doc.text[start:end].strip() == doc.text[start:end] != ""


@pytest.mark.parametrize("name, sentences, entities", [
    ("eng.testb", 3453, 5648), ("eng.testa", 3250, 5942), ("eng.train", 14041, 23499)])
def test_conll03_counts_match_published_statistics(data_dir, name, sentences, entities):
    errors: list[str] = []
    docs = list(read_conll(data_dir / "conll2003" / name, errors=errors))
    assert errors == []
    assert len(docs) == sentences
    assert sum(len(d.entities) for d in docs) == entities
    _check_offsets(docs)


def test_conll03_test_with_schema_has_canonical_names_and_split_ids(data_dir):
    docs = list(read_dataset("conll03", data_dir / "conll2003" / "eng.testb", schema="conll03",
                             split="test"))
    assert docs[0].id == "conll03-test-0" and docs[-1].id == "conll03-test-3452"
    assert {e.type for d in docs for e in d.entities} == {"person", "location", "organization",
                                                          "else"}
    japan = docs[3]
    assert japan.text.startswith("Japan began the defence of their Asian Cup title")
    assert japan.entities[0].to_dict() == {"type": "location", "text": "Japan", "start": 0,
                                           "end": 5}
    assert japan.language == "en" and japan.meta["document"] == 0


def test_conll03_document_unit_keeps_offsets_and_sentence_bounds(data_dir):
    docs = list(read_conll(data_dir / "conll2003" / "eng.testb", unit="document"))
    assert len(docs) == 231  # -DOCSTART- documents
    assert sum(len(d.entities) for d in docs) == 5648
    assert sum(len(d.meta["sentences"]) for d in docs) == 3453
    _check_offsets(docs)
    first = docs[0]
    assert first.id == "eng.testb-doc0"
    start, end = first.meta["sentences"][1]
    assert first.text[start:end] == "Nadim Ladki"
    assert first.text[end] == "\n"


SAMPLE = """\
-DOCSTART- -X- O O

Hans NNP I-NP I-PER
Bauer NNP I-NP I-PER
Maria NNP I-NP B-PER
met VBD I-VP O
EU NNP I-NP I-ORG
officials NNS I-NP O

Paris NNP I-NP B-LOC
Hilton NNP I-NP I-LOC
Berlin NNP I-NP I-LOC

-DOCSTART- -X- O O

Lone NN I-NP O
"""


def test_iob1_b_tag_separates_adjacent_spans_and_iob2_is_accepted(tmp_path):
    path = tmp_path / "sample.conll"
    path.write_text(SAMPLE, encoding="utf-8")
    docs = list(read_conll(path))
    assert [d.id for d in docs] == ["sample-0", "sample-1", "sample-2"]
    assert docs[0].text == "Hans Bauer Maria met EU officials"
    assert [(e.type, e.text) for e in docs[0].entities] == [
        ("PER", "Hans Bauer"), ("PER", "Maria"), ("ORG", "EU")]
    # IOB2: B- opens, I- continues
    assert [(e.type, e.text) for e in docs[1].entities] == [("LOC", "Paris Hilton Berlin")]
    assert [d.meta["document"] for d in docs] == [0, 0, 1]
    by_document = list(read_conll(path, unit="document"))
    assert [d.text for d in by_document] == [
        "Hans Bauer Maria met EU officials\nParis Hilton Berlin", "Lone"]
    assert by_document[0].entities[-1].start == len("Hans Bauer Maria met EU officials\n")


def test_token_offsets_rebuild_seqeval_spans(data_dir):
    """meta['tokens'] lets token-level scorers map spans back: IOB2 tags rebuilt from the
    character spans decode (seqeval strict IOB2) to the same chunks as the IOB1 file."""
    from seqeval.metrics.sequence_labeling import get_entities
    from seqeval.scheme import IOB2, Entities

    docs = list(read_conll(data_dir / "conll2003" / "eng.testa"))[:400]
    for doc in docs:
        starts = {s: i for i, (s, _) in enumerate(doc.meta["tokens"])}
        ends = {e: i for i, (_, e) in enumerate(doc.meta["tokens"])}
        tags = ["O"] * len(doc.meta["tokens"])
        expected = []
        for entity in doc.entities:
            first, last = starts[entity.start], ends[entity.end]
            tags[first] = f"B-{entity.type}"
            for i in range(first + 1, last + 1):
                tags[i] = f"I-{entity.type}"
            expected.append((entity.type, first, last))
        strict = Entities([tags], IOB2).entities[0]
        assert [(e.tag, e.start, e.end - 1) for e in strict] == expected == get_entities(tags)


def test_bad_lines_are_reported_with_file_and_line_and_skipped(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"Rome NNP I-NP I-LOC\nlonely\nis VBZ I-VP X-LOC\nnice JJ I-NP O\n\n"
                     b"\xff\xfe NN I-NP O\nOslo NNP I-NP I-LOC\n")
    errors: list[str] = []
    docs = list(read_conll(path, errors=errors))
    assert [d.text for d in docs] == ["Rome is nice", "Oslo"]
    assert [e.text for d in docs for e in d.entities] == ["Rome", "Oslo"]
    assert len(errors) == 3
    assert errors[0].startswith(f"{path}:2: expected a token and a tag")
    assert errors[1].startswith(f"{path}:3: tag 'X-LOC'")
    assert errors[2].startswith(f"{path}:6: not valid UTF-8")


def test_unknown_label_reported_once_and_kept(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_text("Rex NNP I-NP I-DOG\n\nFido NNP I-NP I-DOG\nBob NNP I-NP I-PER\n",
                    encoding="utf-8")
    errors: list[str] = []
    docs = list(read_conll(path, schema="conll03", errors=errors))
    assert [e.type for d in docs for e in d.entities] == ["DOG", "DOG", "person"]
    assert len(errors) == 1 and f"{path}:1: entity type label 'DOG'" in errors[0]
