"""Bad input is counted and explained, and scoring goes on with what matches."""

from __future__ import annotations

from deepke_llm.evaluation.scoring import score_documents
from deepke_llm.records import Argument, Document, Entity, Event, Span

TEXT = "Alice met Bob ."


def test_id_mismatches_duplicates_offsets_and_unknown_types():
    gold = [
        Document("a", TEXT, entities=(Entity("person", "Alice", 0, 5),)),
        Document("b", TEXT, entities=(Entity("person", "Bob", 10, 13),)),
        Document("a", TEXT, entities=(Entity("person", "Zed", 0, 3),)),      # repeated id
        Document("c", TEXT, entities=(Entity("person", "Alice", 0, 5),)),
    ]
    pred = [
        Document("a", TEXT, entities=(Entity("person", "Alice", 0, 5),)),
        Document("a", TEXT),                                                   # repeated id
        Document("c", TEXT + " More", entities=(                              # other text
            Entity("person", "Alice", 0, 50),                                 # outside the text
            Entity("person", "Al", 0, 5),                                     # text[0:5] != Al
            Entity("martian", "Bob", 10, 13))),                               # unknown type
        Document("x", TEXT, entities=(Entity("person", "Bob", 10, 13),)),     # not in gold
    ]
    result = score_documents("ner", gold, pred, ["strict"], schema="conll03",
                             gold_name="g.jsonl", pred_name="p.jsonl")
    c = result.level("strict").overall
    # a: tp 1; b: missing -> fn 1; c: (person,0,5) matches via "Al", 0-50 and martian are FPs
    assert (c.tp, c.fp, c.fn) == (2, 2, 1)
    assert result.documents == 3
    diag = result.diagnostics
    expected = {"duplicate_id": 2, "missing_prediction": 1, "extra_prediction": 1,
                "text_mismatch": 1, "offsets_outside_text": 1, "offsets_mismatch": 1,
                "unknown_type": 1}
    assert {k: diag.counts[k] for k in expected} == expected
    assert "p.jsonl: document 'c' entities[0]: offsets [0, 50) are outside the text (length 20)" \
        in diag.examples["offsets_outside_text"]
    assert "p.jsonl: id 'x' is not in g.jsonl" in diag.examples["extra_prediction"]
    lines = diag.lines()
    assert len(lines) == len(expected) and all("\n" not in line for line in lines)
    assert any(line.startswith("gold documents without a prediction") and ": 1 (e.g. p.jsonl: "
               "no document with id 'b')" in line for line in lines)


def test_without_a_schema_predicted_types_unseen_in_gold_are_reported():
    gold = [Document("a", TEXT, entities=(Entity("person", "Alice", 0, 5),))]
    pred = [Document("a", TEXT, entities=(Entity("persn", "Alice", 0, 5),))]
    result = score_documents("ner", gold, pred)
    assert result.diagnostics.counts["unknown_type"] == 1
    assert "type 'persn' is unknown" in result.diagnostics.examples["unknown_type"][0]


def test_unknown_event_roles_are_reported_against_the_schema():
    text = "Troops fired ."
    event = Event("attack", Span("fired", 7, 12), (Argument("attacker", "Troops", 0, 6),))
    bad = Event("attack", Span("fired", 7, 12), (Argument("shooter", "Troops", 0, 6),))
    result = score_documents("ee", [Document("e", text, events=(event,))],
                             [Document("e", text, events=(bad,))], schema="ace05")
    assert result.diagnostics.counts["unknown_type"] == 1
    assert "role of 'attack' 'shooter'" in result.diagnostics.examples["unknown_type"][0]
    assert result.level("strict", "argument_identification").overall.tp == 1
