"""IEPile-format scoring reproduces IEPile's evaluator (normal vs set, merged chunk lines, NAN
dropped, unparseable outputs counted) with its silent failures fixed and reported."""

from __future__ import annotations

import json

import pytest

from deepke_llm.evaluation.iepile_eval import score_iepile


def line(id_, label, output, chunk=0, source="s", task=None, **extra):
    data = {"id": id_, "source": source,
            "instruction": json.dumps({"instruction": "x", "schema": [f"chunk{chunk}"],
                                       "input": f"text {id_}"}),
            "label": json.dumps(label, ensure_ascii=False), **extra}
    if task:
        data["task"] = task
    if output is not None:
        data["output"] = output if isinstance(output, str) else json.dumps(output)
    return json.dumps(data, ensure_ascii=False)


def write(tmp_path, lines, name="test.json"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def ent(text, kind):
    return {"entity": text, "entity_type": kind}


NER_LINES = [
    # record 1 in two schema chunks: outputs merged; a duplicated prediction; "NAN" dropped
    line("1", [ent("Alice", "person"), ent("Paris", "location")],
         {"person": ["Alice", "Alice"], "organization": []}, chunk=0, task="NER"),
    line("1", [ent("Alice", "person"), ent("Paris", "location")],
         {"location": ["Paris", "NAN"]}, chunk=1, task="NER"),
    # record 2: duplicated gold; unparseable output -> its gold is missed
    line("2", [ent("Bob", "person"), ent("Bob", "person")], "Sure! Here are the entities"),
    # record 3: one right, one wrong type
    line("3", [ent("Rome", "location")], {"location": ["Rome"], "person": ["Rome"]}),
    # record 4: no gold, one spurious
    line("4", [], {"person": ["Eve"]}),
]


def test_ner_normal_mode_counts_duplicates_as_false_positives(tmp_path):
    result = score_iepile(write(tmp_path, NER_LINES), "ner", "normal")
    c = result.level("string").overall
    # record 1: tp 2, pred 3; record 2: gold 2; record 3: tp 1 fp 1; record 4: fp 1
    assert (c.tp, c.fp, c.fn) == (3, 3, 2)
    assert result.documents == 4
    assert result.extra["iepile"] == {"总样本数": 4, "错误数": 1, "match_mode": "normal",
                                      "P": 50.0, "R": 60.0, "F1": 54.55}
    diag = result.diagnostics.counts
    assert (diag["unparseable_output"], diag["nan_dropped"], diag["merged_lines"]) == (1, 1, 1)
    per_type = result.mode_dict("string")["per_type"]
    assert (per_type["person"]["tp"], per_type["person"]["fp"], per_type["person"]["fn"]) == (1, 3, 2)


def test_ner_set_mode_deduplicates_both_sides(tmp_path):
    result = score_iepile(write(tmp_path, NER_LINES), "ner", "set")
    c = result.level("string").overall
    assert (c.tp, c.fp, c.fn) == (3, 2, 1)
    assert (result.extra["iepile"]["P"], result.extra["iepile"]["R"],
            result.extra["iepile"]["F1"]) == (60.0, 75.0, 66.67)


def test_re_reads_subject_object_and_head_tail_outputs(tmp_path):
    lines = [
        line("1", [{"head": "Alice", "relation": "work for", "tail": "Acme"},
                   {"head": "Acme", "relation": "located in", "tail": "Paris"}],
             {"work for": [{"subject": "Alice", "object": "Acme"}],
              "located in": [{"head": "Acme", "tail": "Paris"}]}),  # IEPile scores this ('', .., '')
        line("2", [{"head": "Bob", "relation": "work for", "tail": "Beta"}],
             {"work for": [{"subject": "Bob", "object": "Beta"}, {"subject": "Bob", "object": "Beta"}]}),
        line("3", [{"subject": "Cy", "relation": "work for", "object": "Co"}],
             {"work for": [{"subject": "Cy"}]}),  # label in subject/object form; output lacks object
    ]
    path = write(tmp_path, lines)
    normal = score_iepile(path, "re", "normal").level("string").overall
    assert (normal.tp, normal.fp, normal.fn) == (3, 2, 1)  # dup FP; ('Cy', wf, '') FP, (Cy,wf,Co) FN
    result = score_iepile(path, "re", "set")
    assert (result.level("string").overall.tp, result.level("string").overall.fp) == (3, 1)
    assert result.diagnostics.counts["incomplete_item"] == 1


def test_ee_events_and_arguments_as_iepile_pools_them(tmp_path):
    lines = [
        line("1", [{"event_type": "attack", "event_trigger": "fired",
                    "arguments": [{"argument": "Troops", "role": "attacker"},
                                  {"argument": "village", "role": "target"}]}],
             {"attack": [{"trigger": "fired", "arguments": {"attacker": "Troops", "target": "NAN",
                                                            "place": ["village", "NAN"]}}],
              "die": []}),
        # arguments as a string crash IEPile; here the event stays, without arguments
        line("2", [], {"die": [{"trigger": "killed", "arguments": "oops"}]}),
        # a "NAN" trigger is IEPile's empty gold trigger
        line("3", [{"event_type": "die", "event_trigger": "", "arguments": []}],
             {"die": [{"trigger": "NAN", "arguments": {}}]}),
    ]
    result = score_iepile(write(tmp_path, lines), "ee", "normal")
    levels = {name: (s.overall.tp, s.overall.fp, s.overall.fn)
              for name, s in result.modes["string"].items()}
    assert levels == {"trigger_identification": (2, 1, 0), "trigger_classification": (2, 1, 0),
                      "argument_identification": (2, 0, 0), "argument_classification": (1, 1, 1)}
    iepile = result.extra["iepile"]
    assert (iepile["event_P"], iepile["event_R"], iepile["event_F1"]) == (66.67, 100.0, 80.0)
    assert (iepile["argument_P"], iepile["argument_R"], iepile["argument_F1"]) == (50.0, 50.0, 50.0)
    assert result.diagnostics.counts["skipped_item"] == 1
    assert result.diagnostics.counts["nan_dropped"] == 1  # the trigger; argument NANs are IEPile's own


def test_repeated_instruction_under_one_id_is_a_second_record(tmp_path):
    label = [ent("Ann", "person")]
    lines = [line("7", label, {"person": ["Ann"]}), line("7", label, {"person": ["Ann"]})]
    result = score_iepile(write(tmp_path, lines), "ner", "normal")
    c = result.level("string").overall
    assert result.documents == 2 and (c.tp, c.fp, c.fn) == (2, 0, 0)  # IEPile: tp 1, fp 1
    assert result.diagnostics.counts["repeated_instruction"] == 1


def test_bad_lines_are_reported_not_fatal(tmp_path):
    lines = [
        "{broken",
        json.dumps({"id": 5, "label": "[{\"entity\": \"Zed\", \"entity_type\": \"person\"}]",
                    "output": "{\"person\": [\"Zed\"]}"}),  # integer id, no source/instruction
        json.dumps({"id": "6", "label": "not json", "output": "{}"}),
        line("8", [ent("Kim", "person")], None),  # no output field
        line("9", [], {"person": "NAN", "location": 3, "else": [1]}),
        line("10", [ent("Kim", "person")], {"person": ["Kim"]}, task="RE"),  # another task
    ]
    result = score_iepile(write(tmp_path, lines), "ner")
    c = result.level("string").overall
    assert (c.tp, c.fp, c.fn) == (1, 0, 1)
    diag = result.diagnostics.counts
    assert diag["unreadable_line"] == 2  # broken JSON, unreadable label
    assert diag["unparseable_output"] == 1  # no output
    assert diag["skipped_item"] == 2  # location: 3, else: [1]; "NAN" is a plain empty answer
    assert diag["other_task"] == 1


def test_unknown_match_mode_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="match mode"):
        score_iepile(write(tmp_path, NER_LINES), "ner", "fuzzy")


def test_instruct_test_file_with_several_tasks_scores_each_task_alone(tmp_path):
    from deepke_llm.instructions import documents_to_instructions
    from deepke_llm.prompts.styles import get_style
    from deepke_llm.records import Document, Entity, Relation
    from deepke_llm.schema import load_schema
    from deepke_llm.tasks import get_task

    doc = Document("d1", "John Smith works for Acme in Boston.", "en",
                   entities=(Entity("person", "John Smith", 0, 10), Entity("organization", "Acme", 21, 25),
                             Entity("location", "Boston", 29, 35)),
                   relations=(Relation("work for", Entity("person", "John Smith", 0, 10),
                                       Entity("organization", "Acme", 21, 25)),))
    schema = load_schema("conll04")
    lines = []
    for line_ in documents_to_instructions([doc], schema, split="test"):
        task = get_task(line_["task"].lower())
        shown = json.loads(line_["instruction"])["schema"]
        chunk = schema.subset(task.name, [schema.resolve(task.name, "en", n).name for n in shown])
        line_["output"] = get_style("iepile").target(task, doc, chunk, "en")  # a perfect model
        lines.append(json.dumps(line_))
    path = write(tmp_path, lines)
    for task in ("ner", "re"):
        result = score_iepile(path, task)
        c = result.level("string").overall
        assert (c.tp, c.fp, c.fn) == ((3, 0, 0) if task == "ner" else (1, 0, 0)), task
        assert result.diagnostics.counts["other_task"] == 1
