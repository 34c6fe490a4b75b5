"""OneIE/TextEE reader on a self-written sample: entities, relations, events, bad lines."""

from __future__ import annotations

import json

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.oneie import read_oneie

GOOD = {
    "doc_id": "NEWS7", "wnd_id": "NEWS7-0", "lang": "en",
    "text": "Maria Lopez moved to Lisbon after Acme Corp hired her.",
    "tokens": ["Maria", "Lopez", "moved", "to", "Lisbon", "after", "Acme", "Corp", "hired",
               "her", "."],
    "entity_mentions": [
        {"id": "NEWS7-0-E0", "entity_type": "PER", "text": "Maria Lopez", "start": 0, "end": 2},
        {"id": "NEWS7-0-E1", "entity_type": "GPE", "text": "Lisbon", "start": 4, "end": 5},
        {"id": "NEWS7-0-E2", "entity_type": "ORG", "text": "Acme Corp", "start": 6, "end": 8},
        {"id": "NEWS7-0-E3", "entity_type": "PER", "text": "her", "start": 9, "end": 10}],
    "relation_mentions": [
        {"id": "NEWS7-0-R0", "relation_type": "PHYS", "arguments": [
            {"entity_id": "NEWS7-0-E1", "role": "Arg-2", "text": "Lisbon"},
            {"entity_id": "NEWS7-0-E0", "role": "Arg-1", "text": "Maria Lopez"}]}],
    "event_mentions": [
        {"id": "NEWS7-0-EV0", "event_type": "Movement:Transport",
         "trigger": {"text": "moved", "start": 2, "end": 3},
         "arguments": [{"entity_id": "NEWS7-0-E0", "role": "Artifact", "text": "Maria Lopez"},
                       {"entity_id": "NEWS7-0-E1", "role": "Destination", "text": "Lisbon"}]},
        {"id": "NEWS7-0-EV1", "event_type": "Personnel:Start-Position",
         "trigger": {"text": "hired", "start": 8, "end": 9},
         "arguments": [{"entity_id": "NEWS7-0-E2", "role": "Entity", "text": "Acme Corp"},
                       {"entity_id": "NEWS7-0-E3", "role": "Person", "text": "her"}]}],
}
# OneIE's own layout: sent_id instead of wnd_id, no text, a broken argument and entity
ONEIE = {
    "doc_id": "NEWS8", "sent_id": "NEWS8-3",
    "tokens": ["Rebels", "shelled", "Kobani", "on", "Monday"],
    "entity_mentions": [
        {"id": "NEWS8-3-E0", "entity_type": "ORG", "text": "Rebels", "start": 0, "end": 1},
        {"id": "NEWS8-3-E1", "entity_type": "GPE", "text": "Kobane", "start": 2, "end": 3},
        {"id": "NEWS8-3-E2", "entity_type": "GPE", "text": "Nowhere", "start": 4, "end": 9}],
    "relation_mentions": [],
    "event_mentions": [
        {"event_type": "Conflict:Attack", "trigger": {"text": "shelled", "start": 1, "end": 2},
         "arguments": [{"entity_id": "NEWS8-3-E0", "role": "Attacker", "text": "Rebels"},
                       {"entity_id": "NEWS8-3-E1", "role": "Target", "text": "Kobani"},
                       {"entity_id": "NEWS8-3-E9", "role": "Time", "text": "Monday"}]}],
}


def _write(tmp_path, lines):
    path = tmp_path / "ace05_sample.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line)
                              for line in lines) + "\n", encoding="utf-8")
    return path


def test_oneie_sample_entities_relations_events(tmp_path):
    path = _write(tmp_path, [GOOD])
    (doc,) = read_oneie(path)
    assert doc.id == "NEWS7-0" and doc.meta["doc_id"] == "NEWS7"
    assert doc.text == "Maria Lopez moved to Lisbon after Acme Corp hired her ."
    assert [(e.type, e.text, e.start, e.end) for e in doc.entities] == [
        ("PER", "Maria Lopez", 0, 11), ("GPE", "Lisbon", 21, 27), ("ORG", "Acme Corp", 34, 43),
        ("PER", "her", 50, 53)]
    (relation,) = doc.relations
    assert (relation.type, relation.head.text, relation.tail.text) == (
        "PHYS", "Maria Lopez", "Lisbon")
    transport, hire = doc.events
    assert (transport.type, transport.trigger.text, transport.trigger.start) == (
        "Movement:Transport", "moved", 12)
    assert [(a.role, a.text, a.start, a.type) for a in hire.arguments] == [
        ("Entity", "Acme Corp", 34, "ORG"), ("Person", "her", 50, "PER")]


def test_oneie_with_ace05_schema_uses_canonical_names(tmp_path):
    path = _write(tmp_path, [GOOD])
    errors: list[str] = []
    (doc,) = read_dataset("oneie", path, schema="ace05", split="test", errors=errors)
    assert errors == []
    assert doc.id == "NEWS7-0"
    assert doc.relations[0].type == "physical"
    assert [e.type for e in doc.events] == ["transport", "start position"]
    assert [(a.role, a.type) for a in doc.events[0].arguments] == [
        ("artifact", "person"), ("destination", "geographical social political")]


def test_oneie_bad_lines_and_mentions_are_reported(tmp_path):
    path = _write(tmp_path, ["{not json", {"sent_id": "x"}, ONEIE, GOOD, GOOD])
    errors: list[str] = []
    docs = list(read_oneie(path, errors=errors))
    # ids: the dataset's own, else {file}-{line index} for a repeated one
    assert [d.id for d in docs] == ["NEWS8-3", "NEWS7-0", "ace05_sample-4"]
    assert docs[2].meta["orig_id"] == "NEWS7-0"
    shelling = docs[0]
    assert [e.text for e in shelling.entities] == ["Rebels", "Kobani"]
    (attack,) = shelling.events
    assert [(a.role, a.text) for a in attack.arguments] == [
        ("Attacker", "Rebels"), ("Target", "Kobani"), ("Time", "Monday")]
    assert attack.arguments[2].start is None  # unresolvable entity_id: kept ungrounded
    where = [m.split(": ")[0] for m in errors]
    assert where == [f"{path}:1", f"{path}:2", f"{path}:3", f"{path}:3", f"{path}:3",
                     f"{path}:5"]
    assert "not valid JSON" in errors[0] and "'tokens'" in errors[1]
    assert "'Kobane' differs" in errors[2] and "entity_mentions[2]" in errors[3]
    assert "arguments[2]" in errors[4] and "repeats an earlier record" in errors[5]
