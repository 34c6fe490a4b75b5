"""KG2Instruction inputs: bad input is counted by kind with file and line and never stops a run; relation inventories; plain-text corpora and shards."""

from __future__ import annotations

import json

from kg2instruction_helpers import write

from deepke_llm.problems import Problems
from kg2instruction.build import build
from kg2instruction.inputs import read_corpus


def test_bad_input_is_counted_with_file_and_line_never_fatal(tmp_path):
    entities = write(tmp_path / "e.jsonl", "\n".join([
        '{"id": "E1", "aliases": ["Ann Lee"]}',
        '{"id": "E2", "aliases": ["Acme"]}',
        '{"id": "E1", "aliases": ["duplicate"]}',
        '{"id": "E3", "aliases": []}',
        '{"id": "E4", "aliases": ["broken"',
        '{"aliases": ["no id"]}',
        '{"id": "E5", "label": "Bolt Works", "aliases": [], "popularity": "high"}',
    ]) + "\n")
    triples = write(tmp_path / "t.tsv", "E1\temployer\tE2\nE1\temployer\tE9\nE1\tP0\tE2\n"
                                        "just two\tcolumns\n\nE1\temployer\tE2\nE3\temployer\tE2\n")
    relations = write(tmp_path / "r.json", json.dumps({"employer": {"name": "employer"},
                                                       "bad": {"description": "no name"}}))
    corpus = write(tmp_path / "c.jsonl", '{"id": "d1", "text": "Ann Lee joined Acme."}\n'
                                         '{"id": "d2", "text": \n'
                                         '{"text": "Acme hired Ann Lee."}\n'
                                         '{"id": "d4", "body": "no text"}\n')
    report = build(entities, triples, relations, corpus, tmp_path / "out.jsonl")
    assert report["input_errors"]["counts"] == {
        "broken_field": 1, "broken_line": 4, "broken_relation": 1, "duplicate_id": 1,
        "duplicate_triple": 1, "empty_aliases": 1, "missing_id": 2, "unknown_entity": 1,
        "unknown_relation": 1}
    messages = report["input_errors"]["messages"]
    assert f"{entities}:3: duplicate entity id 'E1'; line skipped" in messages
    assert any(m.startswith(f"{entities}:5: not valid JSON") for m in messages)
    assert any(m.startswith(f"{entities}:4: entity 'E3' has no aliases") for m in messages)
    assert any(m.startswith(f"{triples}:2: entity 'E9' is not in the KB") for m in messages)
    assert any(m.startswith(f"{triples}:4: expected head, relation and tail") for m in messages)
    assert any(m.startswith(f"{corpus}:2: not valid JSON") for m in messages)
    assert f"{corpus}:3: missing 'id'; using 'line-3'" in messages
    docs = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [d["id"] for d in docs] == ["d1", "line-3"]
    assert [(r["head"]["kb_id"], r["tail"]["kb_id"]) for r in docs[0]["relations"]] == \
        [("E1", "E2")]
    assert report["kb"]["entities"] == 4  # E3 (no alias) stays relatable; E5 uses its label


def test_duplicate_relation_ids_in_an_inventory_object_are_reported(tmp_path):
    from kg2instruction.inputs import read_relations

    path = write(tmp_path / "r.json", '{"P1": {"name": "first"}, "P2": ["other", ""], '
                                      '"P1": {"name": "second"}}')
    issues = Problems()
    assert [(r.id, r.name) for r in read_relations(path, issues)] == [("P1", "first"),
                                                                      ("P2", "other")]
    assert issues.counts == {"duplicate_id": 1}
    listed = write(tmp_path / "l.json", '[{"id": "P1", "name": "x"}, {"id": "P1", "name": "y"}]')
    assert [r.name for r in read_relations(listed, issues)] == ["x"]


def test_plain_text_corpus_gets_line_ids_and_shards(tmp_path):
    corpus = write(tmp_path / "c.txt", "first doc\n\nsecond doc\nthird doc\n")
    issues = Problems()
    assert [(n, r["id"]) for n, r in read_corpus(corpus, issues)] == [
        (1, "line-1"), (3, "line-3"), (4, "line-4")]
    assert [r["id"] for _, r in read_corpus(corpus, issues, (1, 2))] == ["line-3"]
