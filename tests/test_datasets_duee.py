"""DuEE 1.0 reader on self-written lines: offsets checked, mismatches re-located and reported."""

from __future__ import annotations

import json

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.duee import read_duee

LAYOFF = {"id": "a1b2", "text": "6月3日，某科技公司宣布裁员200人。", "event_list": [
    {"event_type": "组织关系-裁员", "trigger": "裁员", "trigger_start_index": 12, "class": "组织关系",
     "arguments": [{"argument_start_index": 0, "role": "时间", "argument": "6月3日", "alias": []},
                   {"argument_start_index": 5, "role": "裁员方", "argument": "某科技公司"},
                   {"argument_start_index": 14, "role": "裁员人数", "argument": "200人"}]}]}
# a wrong trigger index (22 points at '米，') and an argument absent from the text
QUAKE = {"id": "c3d4", "text": "昨晚东部海域发生5.1级地震，震源深度10千米，地震未造成伤亡。", "event_list": [
    {"event_type": "灾害/意外-地震", "trigger": "地震", "trigger_start_index": 22,
     "arguments": [{"argument_start_index": 8, "role": "震级", "argument": "5.1级"},
                   {"argument_start_index": 2, "role": "震中", "argument": "西部海域"},
                   {"argument_start_index": 19, "role": "震源深度", "argument": "10千米"}]}]}
TEST_LINE = {"id": "e5f6", "text": "没有标注的测试句。"}


def _write(tmp_path, lines):
    path = tmp_path / "duee_dev.json"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)
                              for x in lines) + "\n", encoding="utf-8")
    return path


def test_duee_events_with_checked_offsets(tmp_path):
    path = _write(tmp_path, [LAYOFF, TEST_LINE])
    errors: list[str] = []
    layoff, unlabeled = read_dataset("duee", path, schema="duee", errors=errors)
    assert errors == []
    assert (layoff.id, layoff.language, unlabeled.id, unlabeled.events) == (
        "a1b2", "zh", "e5f6", ())
    (event,) = layoff.events
    assert (event.type, event.trigger.text, event.trigger.start, event.trigger.end) == (
        "组织关系-裁员", "裁员", 12, 14)
    assert [(a.role, a.text, a.start, a.end) for a in event.arguments] == [
        ("时间", "6月3日", 0, 4), ("裁员方", "某科技公司", 5, 10), ("裁员人数", "200人", 14, 18)]
    for argument in event.arguments:
        assert layoff.text[argument.start:argument.end] == argument.text


def test_duee_mismatched_offsets_are_relocated_and_missing_mentions_kept(tmp_path):
    path = _write(tmp_path, [QUAKE, "not json", {"id": "x"}, LAYOFF])
    errors: list[str] = []
    docs = list(read_duee(path, errors=errors))
    assert [d.id for d in docs] == ["c3d4", "a1b2"]
    (quake,) = docs[0].events
    # the occurrence of 地震 nearest to the given index (24, not 12) is used
    assert (quake.trigger.start, quake.trigger.end) == (24, 26)
    assert [(a.role, a.start) for a in quake.arguments] == [
        ("震级", 8), ("震中", None), ("震源深度", 19)]
    assert len(errors) == 4
    assert errors[0].startswith(f"{path}:1: event_list[0].trigger: index 22 points at")
    assert "used its occurrence at 24" in errors[0]
    assert errors[1].startswith(f"{path}:1: event_list[0].arguments[1]: '西部海域' does not occur")
    assert errors[2].startswith(f"{path}:2: not valid JSON")
    assert errors[3].startswith(f"{path}:3: missing string field 'text'")
