"""Relation hard negatives of `instruct`: direction twins, typed absent relations always asked,
self-relations left out, and the --hard-negatives flag."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deepke_llm.cli import main
from deepke_llm.instructions import documents_to_instructions, swapped_direction
from deepke_llm.records import Document, Entity, Relation, read_documents
from deepke_llm.schema import load_schema

OSWALD, KENNEDY = Entity("person", "Oswald", 0, 6), Entity("person", "Kennedy", 14, 21)
DALLAS = Entity("location", "Dallas", 25, 31)
KILL = Document("k", "Oswald killed Kennedy in Dallas .", "en",
                entities=(OSWALD, KENNEDY, DALLAS),
                relations=(Relation("kill", OSWALD, KENNEDY), Relation("live in", KENNEDY, DALLAS)))


def _asked_and_answer(line: dict) -> tuple[list[str], str, dict]:
    prompt = json.loads(line["instruction"])
    return prompt["schema"], prompt["input"], json.loads(line["output"])


def test_the_twin_trades_the_names_and_moves_every_record_with_its_text():
    twin = swapped_direction(KILL, load_schema("conll04"))
    assert twin.id == "k#swap" and twin.text == "Kennedy killed Oswald in Dallas ."
    assert twin.meta == {"swapped_from": "k"}
    kill, live_in = twin.relations
    assert (kill.type, kill.head.text, kill.head.start, kill.tail.text, kill.tail.start) == \
        ("kill", "Kennedy", 0, "Oswald", 15)
    # a relation of a swapped name stays with its position: now Oswald is the one in Dallas
    assert (live_in.head.text, live_in.head.start, live_in.tail.start) == ("Oswald", 15, 25)
    for record in (*twin.entities, *(end for r in twin.relations for end in (r.head, r.tail))):
        assert twin.text[record.start:record.end] == record.text


def test_no_twin_when_it_would_be_nonsense_or_ambiguous():
    schema = load_schema("conll04")
    john, acme = Entity("person", "John", 0, 4), Entity("organization", "Acme", 15, 19)
    typed = Document("w", "John works for Acme .", "en", entities=(john, acme),
                     relations=(Relation("work for", john, acme),))
    assert swapped_direction(typed, schema) is None  # "Acme works for John"
    twice = Document("t", "Oswald killed Kennedy ; Oswald fled .", "en",
                     relations=(Relation("kill", OSWALD, KENNEDY),))
    assert swapped_direction(twice, schema) is None  # which Oswald would move?
    straddle = Document("s", KILL.text, "en", entities=(Entity("other", "killed Kennedy", 7, 21),),
                        relations=(Relation("kill", OSWALD, KENNEDY),))
    assert swapped_direction(straddle, schema) is None
    finre = load_schema("finre")
    a, b = Entity("", "华谊", 0, 2), Entity("", "东汐", 4, 6)
    partners = Document("c", "华谊与东汐合作", "zh", relations=(Relation("合作", a, b),))
    assert swapped_direction(partners, finre) is None  # symmetric: nothing to learn
    bought = Document("b", "华谊收购东汐", "zh", relations=(Relation("收购", a, b),))
    assert swapped_direction(bought, finre).text == "东汐收购华谊"


def test_hard_negatives_ask_typed_absent_relations_and_drop_self_relations():
    self_pair = Document("x", "Acme bought Acme .", "en", entities=(Entity("person", "Acme", 0, 4),),
                         relations=(Relation("kill", Entity("person", "Acme", 0, 4),
                                             Entity("person", "Acme", 0, 4)),))
    plain = list(documents_to_instructions([KILL], "conll04", "re", neg_ratio=0))
    assert [_asked_and_answer(line)[0] for line in plain] == [["kill", "live in"]]
    errors: list[str] = []
    lines = list(documents_to_instructions([KILL, self_pair], "conll04", "re", neg_ratio=0,
                                           on_error=errors.append, hard_negatives=True))
    assert [line["id"] for line in lines] == ["k", "k#swap", "x"]
    asked, text, answer = _asked_and_answer(lines[1])
    # person + location present: live in / located in / kill asked; work for (no organization)
    # and organization based in are not
    assert asked == ["kill", "live in", "located in"]
    assert text == "Kennedy killed Oswald in Dallas ."
    assert answer == {"kill": [{"subject": "Kennedy", "object": "Oswald"}],
                      "live in": [{"subject": "Oswald", "object": "Dallas"}], "located in": []}
    # the self-relation is gone; kill is still asked (a person is there), and answered with none
    assert _asked_and_answer(lines[2])[2] == {"kill": []}
    assert errors == ["document 'x': 1 relation(s) with the same span as head and tail left out"]


def test_instruct_cli_flag(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps(KILL.to_dict()) + "\n", encoding="utf-8")
    assert [d.id for d in read_documents(str(docs))] == ["k"]
    out = tmp_path / "train.jsonl"
    runner = CliRunner()
    result = runner.invoke(main, ["instruct", "--schema", "conll04", "--input", str(docs),
                                  "--output", str(out), "--hard-negatives"])
    assert result.exit_code == 0, result.output
    # the twin gets relation lines only: its entities are the original's, moved
    assert [(x["id"], x["task"]) for x in map(json.loads, out.read_text().splitlines())] == [
        ("k", "NER"), ("k", "RE"), ("k#swap", "RE")]
    refused = runner.invoke(main, ["instruct", "--schema", "conll04", "--input", str(docs),
                                   "--output", str(out), "--split", "test", "--hard-negatives"])
    assert refused.exit_code != 0 and "training lines only" in refused.output
