"""FewFC reader: counts against the raw files, offsets checked, bad offsets reported, schema names,
and the fewfc_base / fewfc_trans benchmark definitions."""

from __future__ import annotations

import json

import pytest

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.fewfc import read_fewfc
from deepke_llm.evaluation.definitions import load_benchmark, resolve_data_path
from deepke_llm.schema import load_schema


def _raw_counts(path) -> tuple[int, int, int, set[str]]:
    """Sentences, events, arguments (mentions whose role is not 'trigger') and event types,
    straight from the JSON lines."""
    sentences = events = arguments = 0
    types: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        data = json.loads(line)
        sentences += 1
        for event in data.get("events", []):
            events += 1
            types.add(event["type"])
            arguments += sum(1 for m in event["mentions"] if m["role"] != "trigger")
    return sentences, events, arguments, types


@pytest.mark.parametrize("name, split, sentences, events", [
    ("fewfc_base", "train", 2732, 4682), ("fewfc_base", "test", 1821, 3320),
    ("fewfc_trans", "train", 820, 895), ("fewfc_trans", "test", 3609, 3993)])
def test_counts_match_the_raw_files_and_every_span_holds_its_text(data_dir, name, split,
                                                                   sentences, events):
    definition = load_benchmark(name)
    path = resolve_data_path(definition, split, data_dir)
    raw = _raw_counts(path)
    assert raw[:2] == (sentences, events)  # the counts stated in shared/data/README.md
    errors: list[str] = []
    docs = list(read_dataset(definition.format, path, definition.schema, split, errors=errors))
    assert errors == []  # every offset in FewFC holds its word: nothing to report
    assert len(docs) == raw[0]
    assert sum(len(d.events) for d in docs) == raw[1]
    assert sum(len(e.arguments) for d in docs for e in d.events) == raw[2]
    schema = load_schema(definition.schema)
    assert {e.type for d in docs for e in d.events} == {t.name for t in schema.event_types}
    assert {t.label for t in schema.event_types} == raw[3]
    roles = {t.name: {r.name for r in t.roles} for t in schema.event_types}
    for doc in docs:
        for event in doc.events:
            assert {a.role for a in event.arguments} <= roles[event.type]
            for mention in (event.trigger, *event.arguments):
                assert doc.text[mention.start:mention.end] == mention.text


def test_roles_get_the_chinese_names_of_the_event_definition(data_dir):
    docs = read_dataset("fewfc", data_dir / "fewfc/rearranged/train_base.json",
                        schema="fewfc_base", split="train")
    first = next(docs)
    assert first.id == "cbc5a8ed0bc6dcebd15cbe5d2b6b8311"
    (event,) = first.events
    assert (event.type, event.trigger.text, event.trigger.start) == ("质押", "质押", 46)
    assert ("质权公司", "上海浦东发展银行股份有限公司宜昌分行") in \
        {(a.role, a.text) for a in event.arguments}
    assert ("质押公司", "宜昌兴发集团有限责任公司") in {(a.role, a.text) for a in event.arguments}


def test_wrong_offsets_are_reported_and_repaired_never_dropped(tmp_path):
    path = tmp_path / "fewfc.json"
    lines = [
        # the trigger's span is one character off; the argument's word is not in the text
        {"id": "a", "content": "甲公司收购乙公司。", "events": [{"type": "收购", "mentions": [
            {"word": "收购", "span": [2, 4], "role": "trigger"},
            {"word": "甲公司", "span": [0, 3], "role": "sub-org"},
            {"word": "丙公司", "span": [5, 8], "role": "obj-org"}]}]},
        # no trigger: the event cannot be a record
        {"id": "b", "content": "无事件。", "events": [{"type": "收购", "mentions": [
            {"word": "无", "span": [0, 1], "role": "sub-org"}]}]},
        {"id": "c", "content": "没有事件的句子。", "events": []},
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n",
                    encoding="utf-8")
    errors: list[str] = []
    docs = list(read_fewfc(path, schema="fewfc_trans", errors=errors))
    assert [d.id for d in docs] == ["a", "b", "c"]
    (event,) = docs[0].events
    assert (event.trigger.start, event.trigger.end) == (3, 5)
    assert [(a.role, a.text, a.start) for a in event.arguments] == [
        ("收购公司", "甲公司", 0), ("被收购公司", "丙公司", None)]
    assert docs[1].events == () and docs[2].events == ()
    assert len(errors) == 3
    assert "index 2 points at '司收', not '收购'; used its occurrence at 3" in errors[0]
    assert "'丙公司' does not occur in the text" in errors[1]
    assert f"{path}:2: events[0]: no mention with role 'trigger'; event skipped" == errors[2]
