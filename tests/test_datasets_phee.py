"""PHEE reader: counts against the raw files, nested arguments as flat roles, attributes in meta,
discontinuous mentions, bad offsets reported; the phee benchmark definition."""

from __future__ import annotations

import json

import pytest

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.phee import ATTRIBUTES, read_phee
from deepke_llm.evaluation.definitions import load_benchmark, resolve_data_path
from deepke_llm.schema import load_schema


def _raw_counts(path) -> tuple[int, int, int]:
    """Sentences, events and argument pieces: every piece of every main argument and of every
    sub-argument except Combination (attributes and triggers are not arguments)."""
    sentences = events = pieces = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        sentences += 1
        for event in data["annotations"][0]["events"]:
            events += 1
            for key, group in event.items():
                if key in ("event_id", "event_type", "Trigger", *ATTRIBUTES):
                    continue
                groups = [group] + [v for k, v in group.items()
                                    if isinstance(v, dict) and k != "Combination"]
                pieces += sum(len(mention) for g in groups for mention in g["text"])
    return sentences, events, pieces


@pytest.mark.parametrize("split, sentences, events", [
    ("train", 2898, 3006), ("dev", 961, 1003), ("test", 968, 1010)])
def test_counts_match_the_raw_files_and_roles_are_the_schemas(data_dir, split, sentences, events):
    definition = load_benchmark("phee")
    path = resolve_data_path(definition, split, data_dir)
    raw = _raw_counts(path)
    assert raw[:2] == (sentences, events)
    errors: list[str] = []
    docs = list(read_dataset("phee", path, "phee", split, errors=errors))
    assert errors == []
    assert (len(docs), sum(len(d.events) for d in docs),
            sum(len(e.arguments) for d in docs for e in d.events)) == raw
    schema = load_schema("phee")
    known = {r.name for t in schema.event_types for r in t.roles}
    assert {e.type for d in docs for e in d.events} == {"adverse event",
                                                        "potential therapeutic event"}
    for doc in docs:
        assert doc.language == "en"
        for event in doc.events:
            assert {a.role for a in event.arguments} <= known
            for mention in (event.trigger, *event.arguments):
                assert doc.text[mention.start:mention.end] == mention.text


def _group(pieces: list[list[str]], starts: list[list[int]], **nested) -> dict:
    return {"text": pieces, "start": starts, "entity_id": ["T1"], **nested}


def test_nesting_flattens_attributes_go_to_meta_and_pieces_stay_apart(tmp_path):
    text = "Severe rash after oral amoxicillin and aspirin in a 5-year-old boy."
    event = {
        "event_id": "E1", "event_type": "Adverse_event",
        "Trigger": _group([["after"]], [[12]]),
        "Effect": _group([["Severe rash"]], [[0]]),
        # one treatment mention in two pieces, two drugs, a route, and a Combination event
        "Treatment": _group([["oral amoxicillin", "aspirin"]], [[18, 39]],
                            Drug=_group([["amoxicillin"], ["aspirin"]], [[23], [39]]),
                            Route=_group([["oral"]], [[18]]),
                            Combination=[{"event_id": "E2", "event_type": "Combination",
                                          "Trigger": _group([["and"]], [[35]])}]),
        "Subject": _group([["a 5-year-old boy"]], [[50]],
                          Age=_group([["5-year-old"]], [[52]]),
                          Gender=_group([["boy"]], [[63]])),
        "Severity": _group([["Severe"]], [[0]], value="High"),
    }
    bad = {"event_id": "E1", "event_type": "Adverse_event", "Trigger": _group([["rash"]], [[3]]),
           "Effect": _group([["fever"]], [[0]])}
    path = tmp_path / "phee.json"
    path.write_text(json.dumps({"id": "1_1", "context": text, "annotations": [{"events": [event]}]})
                    + "\n" + json.dumps({"id": "1_2", "context": "Severe rash.",
                                         "annotations": [{"events": [bad]}]}) + "\n",
                    encoding="utf-8")
    errors: list[str] = []
    first, second = read_phee(path, schema="phee", errors=errors)
    (ae,) = first.events
    assert (ae.type, ae.trigger.text) == ("adverse event", "after")
    assert [(a.role, a.text) for a in ae.arguments] == [
        ("effect", "Severe rash"), ("treatment", "oral amoxicillin"), ("treatment", "aspirin"),
        ("drug", "amoxicillin"), ("drug", "aspirin"), ("route", "oral"),
        ("subject", "a 5-year-old boy"), ("age", "5-year-old"), ("gender", "boy")]
    assert all(first.text[a.start:a.end] == a.text for a in ae.arguments)
    assert first.meta["attributes"] == [{"Severity": {"value": "High", "text": "Severe",
                                                      "start": 0}}]
    # the trigger's index is wrong (repaired, reported); the effect is not in the text (kept)
    (event2,) = second.events
    assert (event2.trigger.start, event2.arguments[0].start) == (7, None)
    assert "attributes" not in second.meta
    assert len(errors) == 2 and "index 3 points at 'ere ', not 'rash'" in errors[0]
    assert "'fever' does not occur in the text" in errors[1]
