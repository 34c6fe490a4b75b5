"""IEPile instruction conversion: exact line format, chunking, negatives, round trip, CLI."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deepke_llm.cli import main
from deepke_llm.instructions import documents_to_instructions
from deepke_llm.prompts.styles import get_style, split_schema
from deepke_llm.records import Argument, Document, Entity, Event, Relation, Span
from deepke_llm.schema import load_schema
from deepke_llm.tasks import get_task

DOC = Document(
    "d1", "John Smith works for Acme in Boston.", "en",
    entities=(Entity("person", "John Smith", 0, 10), Entity("organization", "Acme", 21, 25),
              Entity("location", "Boston", 29, 35)),
    relations=(Relation("work for", Entity("person", "John Smith", 0, 10),
                        Entity("organization", "Acme", 21, 25)),),
)


def test_split_schema_matches_iepile_remainder_rule():
    assert split_schema(list(range(49)), 4)[-1] == [44, 45, 46, 47, 48]  # 1 left -> merged
    assert [len(c) for c in split_schema(list(range(10)), 4)] == [4, 4, 2]
    assert [len(c) for c in split_schema(list(range(13)), 6)] == [6, 7]
    assert split_schema([1, 2], 4) == [[1, 2]] and split_schema([], 4) == []


def test_train_lines_have_iepile_layout_exactly():
    lines = list(documents_to_instructions([DOC], "conll04", "ner"))
    assert len(lines) == 1 and set(lines[0]) == {"id", "task", "source", "instruction", "output"}
    line = lines[0]
    assert (line["id"], line["task"], line["source"]) == ("d1", "NER", "conll04")
    expected_instruction = json.dumps({
        "instruction": "You are an expert in named entity recognition. Please extract entities that "
                       "match the schema definition from the input. Return an empty list if the entity "
                       "type does not exist. Please respond in the format of a JSON string.",
        "schema": ["person", "location", "organization", "other"], "input": DOC.text},
        ensure_ascii=False)
    schema = load_schema("conll04")
    assert [t.name for t in schema.entity_types] == ["person", "location", "organization", "other"]
    assert line["instruction"] == expected_instruction
    assert line["output"] == json.dumps({"person": ["John Smith"], "location": ["Boston"],
                                         "organization": ["Acme"], "other": []})


def test_test_lines_carry_label_and_shown_language_names():
    (line,) = documents_to_instructions([DOC], "conll04", "re", split="test", language="zh")
    assert "output" not in line
    work_for = next(t for t in load_schema("conll04").relation_types if t.name == "work for")
    assert json.loads(line["label"]) == [{"head": "John Smith", "relation": work_for.names["zh"],
                                          "tail": "Acme"}]
    assert json.loads(line["instruction"])["instruction"].startswith("你是专门进行关系抽取的专家")


def test_negative_sampling_is_seeded_per_document_and_keeps_positives():
    docs = [Document(f"x{i}", "Acme", entities=(Entity("organization", "Acme", 0, 4),)) for i in range(50)]
    runs = [list(documents_to_instructions(docs, "conll04", "ner", neg_ratio=0.3, seed=7)) for _ in range(2)]
    assert runs[0] == runs[1]
    shuffled = list(documents_to_instructions(docs[::-1], "conll04", "ner", neg_ratio=0.3, seed=7))
    assert sorted(map(json.dumps, shuffled)) == sorted(map(json.dumps, runs[0]))
    asked = [json.loads(line["instruction"])["schema"] for line in runs[0]]
    assert all("organization" in s for s in asked)
    sizes = {len(s) for s in asked}
    assert len(sizes) > 1 and max(sizes) <= 4  # some negatives dropped, some kept
    empty = Document("e", "nothing", entities=())
    (line,) = documents_to_instructions([empty], "conll04", "ner", neg_ratio=0.0)
    assert len(json.loads(line["instruction"])["schema"]) == 1  # at least one negative


def test_round_trip_gold_to_output_and_back_for_every_task_and_style():
    event_schema = load_schema("duee")
    event_type = event_schema.event_types[0]
    r0, r1 = event_type.roles[0].name, event_type.roles[1].name
    event_doc = Document("e", "昨天甲公司收购了乙公司。", "zh", events=(
        Event(event_type.name, Span("收购", 5, 7), (Argument(r0, "昨天", 0, 2), Argument(r1, "甲公司", 2, 5))),))
    cases = [(DOC, "conll04", "ner"), (DOC, "conll04", "re"), (event_doc, "duee", "ee")]
    for doc, schema_name, task_name in cases:
        schema, task = load_schema(schema_name), get_task(task_name)
        for style_name in ("iepile", "knowlm"):
            style = get_style(style_name)
            got = []
            for line in documents_to_instructions([doc], schema, task_name, prompt_style=style_name):
                chunk_names = _chunk_names(line, task_name, schema, style_name)
                chunk = schema.subset(task_name, chunk_names)
                records, errors = style.parse(task, line["output"], chunk, doc.language)
                assert errors == []
                got.extend(records)
            strip = _strings(got)
            assert strip == _strings(task.records(doc)), (task_name, style_name)


def _chunk_names(line, task_name, schema, style_name):
    if style_name == "iepile":
        shown = json.loads(line["instruction"])["schema"]
        shown = [s["event_type"] if isinstance(s, dict) else s for s in shown]
        return [schema.resolve(task_name, "zh" if schema.language == "zh" else "en", s).name for s in shown]
    return [t.name for t in schema.types_for(task_name)
            if t.display(schema.language, schema.language) in line["instruction"]]


def _strings(records):
    out = set()
    for r in records:
        if isinstance(r, Entity):
            out.add((r.type, r.text))
        elif isinstance(r, Relation):
            out.add((r.type, r.head.text, r.tail.text))
        else:
            out.add((r.type, r.trigger.text, frozenset((a.role, a.text) for a in r.arguments)))
    return out


def test_instruct_cli_writes_both_tasks_and_reports_bad_lines(tmp_path):
    inp = tmp_path / "docs.jsonl"
    inp.write_text(DOC.to_json() + "\n{broken\n", encoding="utf-8")
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(main, ["instruct", "--schema", "conll04", "--input", str(inp),
                                       "--output", str(out)])
    assert result.exit_code == 1 and f"{inp}:2" in result.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    # 4 entity types -> one NER line; 5 relation types -> one chunk of 4 with the 1 left merged in
    assert [x["task"] for x in lines] == ["NER", "RE"]
    assert len(json.loads(lines[1]["instruction"])["schema"]) == 5


def test_records_with_types_outside_the_schema_are_reported(tmp_path):
    raw = Document("r", "Acme", "en", entities=(Entity("Org", "Acme", 0, 4),))  # a raw dataset label
    problems: list[str] = []
    lines = list(documents_to_instructions([raw], "conll04", "ner", on_error=problems.append))
    assert len(lines) == 1 and len(problems) == 1 and "'Org' not in schema 'conll04'" in problems[0]
    inp = tmp_path / "raw.jsonl"
    inp.write_text(raw.to_json() + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["instruct", "--schema", "conll04", "--task", "ner",
                                       "--input", str(inp), "--output", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "'Org' not in schema" in result.stderr


def test_round_trip_gives_the_gold_records_back_with_offsets():
    """gold -> IEPile output -> parse + ground = the gold records, offsets and types included."""
    from deepke_llm.extractor import parse_output

    schema = load_schema("conll04")
    for task_name in ("ner", "re"):
        task = get_task(task_name)
        got = []
        for line in documents_to_instructions([DOC], schema, task_name):
            chunk = schema.subset(task_name, _chunk_names(line, task_name, schema, "iepile"))
            records, errors = parse_output(task, line["output"], chunk, DOC.text, "en")
            assert errors == []
            got.extend(records)
        assert sorted(map(repr, got)) == sorted(map(repr, task.records(DOC))), task_name
