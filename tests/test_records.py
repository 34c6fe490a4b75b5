"""Records: JSON round trip, validation at the edge, streaming reads with file:line errors."""

from __future__ import annotations

import pytest

from deepke_llm.records import (
    Argument,
    Document,
    Entity,
    Event,
    RecordError,
    Relation,
    Span,
    read_documents,
)

DOC = Document(
    id="conll03-test-17", text="Japan beat Syria.", language="en",
    entities=(Entity("location", "Japan", 0, 5, kb_id="Q17"),),
    relations=(Relation("beat", Entity("location", "Japan", 0, 5), Entity("location", "Syria", 11, 16),
                        kb_relation="P1"),),
    events=(Event("attack", Span("beat", 6, 10), (Argument("attacker", "Japan", 0, 5),)),),
    raw_output=("{}",), errors=("x",), meta={"source": "conll03"},
)


def test_round_trip_keeps_everything_including_extra_keys():
    data = DOC.to_dict()
    assert data["source"] == "conll03" and data["entities"][0]["kb_id"] == "Q17"
    again = Document.from_dict(data)
    assert again == DOC and again.meta == {"source": "conll03"}
    assert Document.from_dict(__import__("json").loads(DOC.to_json())) == DOC


@pytest.mark.parametrize("data, message", [
    ({"text": "x"}, "document: missing or empty field 'id'"),
    ({"id": "a"}, "document: missing field 'text'"),
    ({"id": "a", "text": "x", "entities": [{"type": "t", "text": "x", "start": 3}]},
     "document.entities[0]: 'start' and 'end' must both be set or both be null"),
    ({"id": "a", "text": "x", "entities": [{"type": "t", "text": "x", "start": True, "end": 1}]},
     "document.entities[0].start: expected int, got bool"),
    ({"id": "a", "text": "x", "relations": [{"type": "r", "head": {"text": "x"}}]},
     "document.relations[0]: missing field 'tail'"),
])
def test_bad_records_name_the_field(data, message):
    with pytest.raises(RecordError) as info:
        Document.from_dict(data)
    assert str(info.value) == message


def test_read_documents_collects_line_errors(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"id": "1", "text": "a"}\n\n[1\n{"id": 2, "text": "b"}\n{"id": "3"}\n')
    errors: list[str] = []
    docs = list(read_documents(str(path), errors))
    assert [d.id for d in docs] == ["1", "2"]
    assert errors[0].startswith(f"{path}:3: not valid JSON")
    assert errors[1] == f"{path}:5: missing field 'text'"
    with pytest.raises(RecordError):
        list(read_documents(str(path)))


def test_utf8_byte_order_mark_does_not_cost_the_first_line(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "1", "text": "a"}\n{"id": "2", "text": "b"}\n')
    assert [d.id for d in read_documents(str(path))] == ["1", "2"]


def test_records_shift_name_their_mentions_and_say_what_they_say_without_offsets():
    from deepke_llm.records import Argument, Entity, Event, Relation, Span

    head, tail = Entity("person", "Ann", 0, 3), Entity("location", "Paris", None, None)
    relation = Relation("live in", head, tail)
    assert relation.shifted(10) == Relation("live in", Entity("person", "Ann", 10, 13), tail)
    assert relation.mentions() == (head, tail) and relation.shifted(0) is relation
    assert relation.content_key() == ("live in", "ann", "paris")
    event = Event("attack", Span("Shot", 4, 8), (Argument("attacker", "Ann", 0, 3),))
    assert event.shifted(2).mentions() == (Span("Shot", 6, 10), Argument("attacker", "Ann", 2, 5))
    assert event.content_key() == ("attack", "shot") and head.content_key() == ("person", "ann")
    assert head.shifted(5).mentions() == (Entity("person", "Ann", 5, 8),)
