"""FewRel reader: 8 x 700 instances, relation names, Wikidata ids, exact offsets."""

from __future__ import annotations

import json
from collections import Counter

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.fewrel import read_fewrel


def test_fewrel_instances_relation_names_and_kb_ids(data_dir):
    errors: list[str] = []
    docs = list(read_fewrel(data_dir / "fewrel" / "fewrel_val_wiki_8rel.json", errors=errors))
    assert errors == []
    assert len(docs) == 5600
    assert Counter(d.meta["pid"] for d in docs) == {pid: 700 for pid in (
        "P155", "P177", "P2094", "P364", "P410", "P413", "P463", "P641")}
    for doc in docs:
        (relation,) = doc.relations
        assert relation.kb_relation == doc.meta["pid"]
        for entity in (relation.head, relation.tail):
            assert doc.text[entity.start:entity.end] == entity.text
            assert entity.kb_id.startswith("Q")
    first = docs[0]
    assert first.id == "fewrel_val_wiki_8rel-P155-0"
    head, tail = first.relations[0].head, first.relations[0].tail
    assert first.relations[0].type == "follows"  # from relations.json next to the file
    assert (head.text, head.kb_id, tail.text, tail.kb_id) == (
        "Song for a Future Generation", "Q7561099", "Whammy Kiss", "Q7990594")


def test_fewrel_schema_names_and_fallback_to_pid(data_dir, tmp_path):
    docs = read_dataset("fewrel", data_dir / "fewrel" / "fewrel_val_wiki_8rel.json",
                        schema="fewrel", split="val")
    first = next(docs)
    assert first.id == "fewrel-val-P155-0" and first.relations[0].type == "follows"
    lone = tmp_path / "lone.json"  # no relations.json beside it: the PID is the type
    lone.write_text(json.dumps({"P17": [
        {"tokens": ["Paris", "is", "in", "France"], "h": ["paris", "Q90", [[0]]],
         "t": ["france", "Q142", [[3]]]},
        {"tokens": ["x"], "h": ["x", "Q1", [[5]]], "t": ["x", "Q1", [[0]]]}]}),
        encoding="utf-8")
    errors: list[str] = []
    docs = list(read_fewrel(lone, errors=errors))
    assert [(r.type, r.kb_relation, r.head.text, r.tail.text) for d in docs
            for r in d.relations] == [("P17", "P17", "Paris", "France")]
    assert len(errors) == 1 and errors[0].startswith(f"{lone}: P17[1]: 'h'")
