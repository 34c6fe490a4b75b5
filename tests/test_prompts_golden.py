"""The published prompt formats, byte for byte (models in the wild were trained on them): the
prompt, the training target and the test label of every task in every built-in style, from one
document with repeats, records of types the schema lacks, absent and repeated roles."""

from __future__ import annotations

import json

import pytest

from deepke_llm.prompts.styles import get_style
from deepke_llm.records import Argument, Document, Entity, Event, Relation, Span
from deepke_llm.schema import load_schema
from deepke_llm.tasks import get_task

ANN, ACME = Entity("person", "Ann", 0, 3), Entity("organization", "Acme", 7, 11)
BOB, PARIS = Entity("person", "Bob", 16, 19), Entity("location", "Paris", 23, 28)
ANN2 = Entity("person", "Ann", 30, 33)
DOC = Document(
    "g", "Ann of Acme met Bob in Paris; Ann shot Bob in Paris.", "en",
    entities=(PARIS, BOB, ANN2, ANN, ACME, Entity("animal", "Rex")),
    relations=(Relation("live in", BOB, PARIS), Relation("work for", ANN, ACME),
               Relation("work for", ANN2, ACME), Relation("likes", ANN, BOB)),
    events=(Event("attack", Span("shot", 34, 38), (
                Argument("attacker", "Ann", 30, 33), Argument("target", "Bob", 39, 42),
                Argument("victim", "Bob", 39, 42), Argument("place", "Paris", 46, 51),
                Argument("place", "Paris", 23, 28), Argument("mood", "angry"))),
            Event("meet", Span("met", 12, 15), (Argument("entity", "Ann", 0, 3),
                                                 Argument("entity", "Bob", 16, 19))),
            Event("party", Span("party"))))
CONLL04 = load_schema("conll04")
EVENTS = load_schema("ace05").subset("ee", ["meet", "attack"], ordered=True)

IEPILE_TARGETS = {
    "ner": {"person": ["Ann", "Bob"], "location": ["Paris"], "organization": ["Acme"], "other": []},
    "re": {"work for": [{"subject": "Ann", "object": "Acme"}], "kill": [],
           "organization based in": [], "live in": [{"subject": "Bob", "object": "Paris"}],
           "located in": []},
    "ee": {"meet": [{"trigger": "met", "arguments": {"place": "NAN", "entity": ["Ann", "Bob"]}}],
           "attack": [{"trigger": "shot", "arguments": {"target": "Bob", "place": "Paris",
                                                         "victim": "Bob", "instrument": "NAN",
                                                         "attacker": "Ann"}}]},
}
IEPILE_SCHEMAS = {
    "ner": ["person", "location", "organization", "other"],
    "re": ["work for", "kill", "organization based in", "live in", "located in"],
    "ee": [{"event_type": "meet", "trigger": True, "arguments": ["place", "entity"]},
           {"event_type": "attack", "trigger": True,
            "arguments": ["target", "place", "victim", "instrument", "attacker"]}],
}
KNOWLM = {
    "ner": ("Identify the entities and types in the following text and where entity type list "
            "['person', 'location', 'organization', 'other']. Please provide your answerin the "
            "form of (Entity,Entity Type).",
            "(Ann,person)\n(Acme,organization)\n(Bob,person)\n(Paris,location)"),
    "re": ("Identify the head entities (subjects) and tail entities (objects) in the following "
           "text and provide the corresponding relation triples from relation list ['work for', "
           "'kill', 'organization based in', 'live in', 'located in']. Please provide your answer "
           "as a list of relation triples in the form of (Subject,Relation,Object).",
           "(Ann,work for,Acme)\n(Bob,live in,Paris)"),
    "ee": ("Given the candidate event dictionary: {'meet': ['place', 'entity'], 'attack': "
           "['target', 'place', 'victim', 'instrument', 'attacker']}, please extract any possible "
           "events from the input below. Please answer in the format of (Event Trigger,Event Type,"
           "Argument1#Argument Role1;Argument2#Argument Role2).",
           "(met,meet,Ann#entity;Bob#entity)\n"
           "(shot,attack,Ann#attacker;Bob#target;Bob#victim;Paris#place;Paris#place;angry#mood)"),
}
LABELS = {
    "ner": [{"entity": "Ann", "entity_type": "person"}, {"entity": "Acme", "entity_type": "organization"},
            {"entity": "Bob", "entity_type": "person"}, {"entity": "Paris", "entity_type": "location"},
            {"entity": "Ann", "entity_type": "person"}, {"entity": "Rex", "entity_type": "animal"}],
    "re": [{"head": "Ann", "relation": "work for", "tail": "Acme"},
           {"head": "Ann", "relation": "likes", "tail": "Bob"},
           {"head": "Bob", "relation": "live in", "tail": "Paris"},
           {"head": "Ann", "relation": "work for", "tail": "Acme"}],
    "ee": [{"event_type": "meet", "event_trigger": "met",
            "arguments": [{"argument": "Ann", "role": "entity"}, {"argument": "Bob", "role": "entity"}]},
           {"event_type": "attack", "event_trigger": "shot",
            "arguments": [{"argument": "Ann", "role": "attacker"}, {"argument": "Bob", "role": "target"},
                          {"argument": "Bob", "role": "victim"}, {"argument": "Paris", "role": "place"},
                          {"argument": "Paris", "role": "place"}, {"argument": "angry", "role": "mood"}]},
           {"event_type": "party", "event_trigger": "party", "arguments": []}],
}
SCHEMAS = {"ner": CONLL04, "re": CONLL04, "ee": EVENTS}


@pytest.mark.parametrize("task_name", ["ner", "re", "ee"])
def test_iepile_prompt_and_target_are_byte_for_byte_the_published_format(task_name):
    task, style, schema = get_task(task_name), get_style("iepile"), SCHEMAS[task_name]
    prompt = style.build(task, schema, "TEXT", "en")
    assert (prompt.input, prompt.template) == (None, None)
    assert json.loads(prompt.user)["schema"] == IEPILE_SCHEMAS[task_name]
    assert prompt.user.endswith(', "input": "TEXT"}') and prompt.user.startswith('{"instruction": "You are')
    assert style.target(task, DOC, schema, "en") == json.dumps(IEPILE_TARGETS[task_name],
                                                               ensure_ascii=False)


@pytest.mark.parametrize("task_name", ["ner", "re", "ee"])
def test_knowlm_prompt_and_target_are_byte_for_byte_the_published_format(task_name):
    task, style, schema = get_task(task_name), get_style("knowlm"), SCHEMAS[task_name]
    prompt = style.build(task, schema, "TEXT", "en")
    assert (prompt.user, prompt.input, prompt.template) == (KNOWLM[task_name][0], "TEXT", "alpaca")
    assert style.target(task, DOC, schema, "en") == KNOWLM[task_name][1]


@pytest.mark.parametrize("task_name", ["ner", "re", "ee"])
def test_test_file_labels_keep_every_gold_record_in_text_order(task_name):
    assert get_task(task_name).to_label(DOC, SCHEMAS[task_name], "en") == LABELS[task_name]


@pytest.mark.parametrize("task_name", ["ner", "re", "ee"])
def test_every_style_reads_its_own_target_back(task_name):
    task, schema = get_task(task_name), SCHEMAS[task_name]
    known = {t.name for t in schema.types_for(task_name)}
    for style_name in ("iepile", "knowlm"):
        style = get_style(style_name)
        records, errors = style.parse(task, style.target(task, DOC, schema, "en"), schema, "en")
        gold = {r for r in task.records(DOC) if r.type in known}
        assert errors == [] or task_name == "ee" and style_name == "knowlm"  # 'mood' is no role
        assert {r.content_key() for r in records} == {r.content_key() for r in gold}


def test_knowlm_reads_absent_values_as_iepile_does():
    """``NAN``/``none``/``无`` name nothing in either style (KnowLM used to keep "NAN" as a
    mention, which then grounded nowhere or on a stray 无 of a Chinese text)."""
    knowlm = get_style("knowlm")
    records, errors = knowlm.parse(get_task("ner"), "(NAN,person)\n(Ann,person)", CONLL04, "en")
    assert records == [Entity("person", "Ann")] and errors == []
    records, errors = knowlm.parse(get_task("re"), "(Ann,work for,NAN)", CONLL04, "en")
    assert records == [] and len(errors) == 1 and "cannot read" in errors[0]
