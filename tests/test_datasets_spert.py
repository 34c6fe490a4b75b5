"""SpERT reader (CoNLL04): counts, relation heads/tails, schema names, bad records."""

from __future__ import annotations

import json

import pytest

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.spert import read_spert


@pytest.mark.parametrize("split, sentences, relations", [
    ("test", 288, 422), ("dev", 231, 343), ("train", 922, 1283)])
def test_conll04_counts_and_offsets(data_dir, split, sentences, relations):
    errors: list[str] = []
    docs = list(read_spert(data_dir / "conll04" / f"conll04_{split}.json", errors=errors))
    assert errors == []
    assert len(docs) == sentences
    assert sum(len(d.relations) for d in docs) == relations
    for doc in docs:
        for entity in [*doc.entities, *(r.head for r in doc.relations),
                       *(r.tail for r in doc.relations)]:
            assert doc.text[entity.start:entity.end] == entity.text
        for relation in doc.relations:
            assert relation.head in doc.entities and relation.tail in doc.entities


def test_conll04_test_with_schema(data_dir):
    docs = list(read_dataset("spert", data_dir / "conll04" / "conll04_test.json",
                             schema="conll04", split="test"))
    first = docs[0]
    assert first.id == "conll04-test-0" and first.meta["orig_id"] == 17
    assert first.text.startswith("An art exhibit at the Hakawati Theatre in Arab east Jerusalem")
    relation = first.relations[0]
    assert (relation.type, relation.head.type, relation.head.text, relation.tail.type,
            relation.tail.text) == ("organization based in", "organization", "Hakawati Theatre",
                                    "location", "Jerusalem")
    assert {r.type for d in docs for r in d.relations} == {
        "work for", "kill", "organization based in", "live in", "located in"}


def test_bad_spert_records_are_reported_not_fatal(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([
        {"tokens": ["Ann", "lives", "in", "Rome"],
         "entities": [{"type": "Peop", "start": 0, "end": 1}, {"type": "Loc", "start": 3, "end": 9}],
         "relations": [{"type": "Live_In", "head": 0, "tail": 1}]},
        {"tokens": "not a list"},
        {"tokens": ["Bo", "works", "for", "IBM"],
         "entities": [{"type": "Peop", "start": 0, "end": 1}, {"type": "Org", "start": 3, "end": 4}],
         "relations": [{"type": "Work_For", "head": 0, "tail": 1}], "orig_id": "s-9"},
    ]), encoding="utf-8")
    errors: list[str] = []
    docs = list(read_spert(path, errors=errors))
    assert [d.id for d in docs] == ["bad-0", "s-9"]
    assert [e.text for e in docs[0].entities] == ["Ann"] and docs[0].relations == ()
    assert [r.tail.text for r in docs[1].relations] == ["IBM"]
    assert len(errors) == 3
    assert errors[0].startswith(f"{path}: record 0: entities[1]")
    assert errors[1].startswith(f"{path}: record 0: relations[0]")
    assert errors[2].startswith(f"{path}: record 1: 'tokens'")
