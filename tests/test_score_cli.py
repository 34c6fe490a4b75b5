"""``deepke-llm score``: the JSON contract, human tables, IEPile files, warnings and exit codes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deepke_llm.cli import main
from deepke_llm.records import Argument, Document, Entity, Event, Span

KEYS = {"precision", "recall", "f1", "tp", "fp", "fn", "per_type"}
TEXT = "Alice met Bob in Paris ."


def run(*args: str):
    return CliRunner().invoke(main, ["score", *args], catch_exceptions=False)


def write_docs(path, documents, extra_lines=()):
    lines = [d.to_json() for d in documents] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def ner_files(tmp_path):
    gold = write_docs(tmp_path / "gold.jsonl", [
        Document("a", TEXT, entities=(Entity("person", "Alice", 0, 5), Entity("person", "Bob", 10, 13),
                                      Entity("location", "Paris", 17, 22))),
        Document("b", "Rome .", entities=(Entity("location", "Rome", 0, 4),)),
    ])
    pred = write_docs(tmp_path / "pred.jsonl", [
        Document("a", TEXT, entities=(Entity("person", "Alice", 0, 5),
                                      Entity("location", "Bob", 10, 13))),
    ], extra_lines=["{not json"])
    return gold, pred


def test_json_output_is_exactly_the_contract(tmp_path):
    gold, pred = ner_files(tmp_path)
    result = run("--task", "ner", "--gold", gold, "--pred", pred, "--json")
    assert result.exit_code == 1, result.output  # the unreadable line: scored without it
    data = json.loads(result.stdout)
    assert list(data) == ["ner"] and list(data["ner"]) == ["strict", "boundary", "string"]
    for mode in data["ner"].values():
        assert set(mode) == KEYS
        for per_type in mode["per_type"].values():
            assert set(per_type) == KEYS - {"per_type"}
    strict = data["ner"]["strict"]
    assert (strict["tp"], strict["fp"], strict["fn"]) == (1, 1, 3)
    assert strict["precision"] == 0.5 and strict["recall"] == 0.25
    assert data["ner"]["boundary"]["tp"] == 2 and data["ner"]["boundary"]["per_type"] == {}
    assert data["ner"]["strict"]["per_type"]["location"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 1, "fn": 2}
    # problems go to stderr, counted, one line each
    assert "warning: gold documents without a prediction (their gold records count as missed): 1" \
        in result.stderr
    assert "warning: lines that could not be read (skipped): 1" in result.stderr


def test_human_tables_show_percentages_with_two_decimals(tmp_path):
    gold, pred = ner_files(tmp_path)
    result = run("--task", "ner", "--gold", gold, "--pred", pred, "--mode", "strict")
    assert result.exit_code == 1  # one unreadable prediction line
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line}
    assert rows["strict"] == ["50.00", "25.00", "33.33", "1", "1", "3"]
    assert "boundary" not in rows
    assert rows["person"] == ["100.00", "50.00", "66.67", "1", "0", "1"]


def test_ee_json_has_the_four_levels(tmp_path):
    text = "Troops fired ."
    doc = Document("e", text, events=(Event("attack", Span("fired", 7, 12),
                                            (Argument("attacker", "Troops", 0, 6),)),))
    gold = write_docs(tmp_path / "g.jsonl", [doc])
    result = run("--task", "ee", "--gold", gold, "--pred", gold, "--json", "--schema", "ace05")
    data = json.loads(result.stdout)["ee"]
    levels = ["trigger_identification", "trigger_classification", "argument_identification",
              "argument_classification"]
    for mode in ("strict", "boundary", "string"):
        assert list(data[mode]) == levels
        assert all(set(data[mode][lv]) == KEYS and data[mode][lv]["f1"] == 1.0 for lv in levels)
    assert result.stderr == ""


def test_iepile_format_and_match_modes(tmp_path):
    def line(id_, label, output):
        return json.dumps({"id": id_, "source": "s", "instruction": "{}",
                           "label": json.dumps(label), "output": json.dumps(output)})

    path = tmp_path / "iepile.json"
    path.write_text("\n".join([
        line("1", [{"head": "Al", "relation": "work for", "tail": "Co"}],
             {"work for": [{"head": "Al", "tail": "Co"}, {"subject": "Al", "object": "Co"}]}),
    ]) + "\n")
    normal = json.loads(run("--task", "re", "--format", "iepile", "--input", str(path),
                            "--json").stdout)
    assert list(normal["re"]) == ["string"]
    assert (normal["re"]["string"]["tp"], normal["re"]["string"]["fp"]) == (1, 1)
    as_set = json.loads(run("--task", "re", "--format", "iepile", "--input", str(path),
                            "--match", "set", "--json").stdout)
    assert (as_set["re"]["string"]["tp"], as_set["re"]["string"]["fp"]) == (1, 0)
    human = run("--task", "re", "--format", "iepile", "--input", str(path))
    assert "IEPile evaluator numbers" in human.stdout and "P=50.0" in human.stdout


def test_input_errors_exit_1_and_usage_errors_exit_2(tmp_path):
    gold, pred = ner_files(tmp_path)
    missing = run("--task", "ner", "--gold", gold, "--pred", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 1 and "error: file" in missing.stderr and "nope.jsonl" in missing.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert run("--task", "ner", "--gold", str(empty), "--pred", pred).exit_code == 1
    assert run("--task", "ner", "--gold", gold).exit_code == 2
    assert run("--task", "ner", "--gold", gold, "--pred", pred, "--match", "set").exit_code == 2
    assert run("--task", "ner", "--format", "iepile", "--input", gold, "--mode",
               "strict").exit_code == 2
    bad_schema = run("--task", "ner", "--gold", gold, "--pred", pred, "--schema", "nosuch")
    assert bad_schema.exit_code == 1 and "unknown schema 'nosuch'" in bad_schema.stderr
    help_text = run("--help").stdout
    assert "deepke-llm score --task ner --gold gold.jsonl --pred pred.jsonl" in help_text
