"""`deepke-llm extract` / `parse` end to end against a real local HTTP server, bad input, resume."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fake_server import rule_answer, rule_server

from deepke_llm.backends.base import GenerationConfig
from deepke_llm.batch import extract_file
from deepke_llm.cli import main
from deepke_llm.extractor import Extractor
from deepke_llm.records import Document


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write_lines(path, lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n"
                              for line in lines))
    return path


def test_extract_input_to_output_over_http(tmp_path):
    inp = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": f"n{i}", "text": f"Alice met Bob in Rome {i}."})
                                              for i in range(5)])
    out = tmp_path / "out.jsonl"
    with rule_server() as (url, server):
        result = run("extract", "--task", "ner", "--schema", "conll03", "--base-url", url,
                     "--api-model", "rule", "--input", str(inp), "--output", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    docs = [Document.from_dict(json.loads(line)) for line in out.read_text().splitlines()]
    assert [d.id for d in docs] == [f"n{i}" for i in range(5)]
    for d in docs:
        assert {e.text for e in d.entities} == {"Alice", "Bob", "Rome"}
        assert all(d.text[e.start:e.end] == e.text for e in d.entities)
    assert len(server.requests) == 5 and server.requests[0]["model"] == "rule"
    assert "documents: 5, records: 15, errors: 0, input errors: 0" in result.stderr


def test_bad_input_lines_are_reported_and_good_ones_written(tmp_path):
    inp = write_lines(tmp_path / "in.jsonl", [
        json.dumps({"id": "a", "text": "Alice came."}),
        "{not json",
        json.dumps({"id": "b"}),
        b'{"id": "c", "text": "caf\xe9"}',
        json.dumps({"id": "d", "text": "  "}),
        json.dumps({"id": "e", "text": "Eve left."}),
    ])
    out = tmp_path / "out.jsonl"
    with rule_server() as (url, _):
        result = run("extract", "--task", "ner", "--schema", "conll03", "--base-url", url,
                     "--api-model", "m", "--input", str(inp), "--output", str(out), "--no-progress")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert [e.split(": ")[1] for e in errors] == [f"{inp}:{n}" for n in (2, 3, 4, 5)]
    assert "not valid JSON" in errors[0] and "missing field 'text'" in errors[1]
    assert "UTF-8" in errors[2] and "empty" in errors[3]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "e"]
    assert "input errors: 4" in result.stderr


def test_usage_and_input_errors_are_one_line(monkeypatch):
    import deepke_llm.default_model as default_model

    def not_installed(progress=None):
        raise default_model.DefaultModelError("default model not installed (package x missing)")

    monkeypatch.setattr(default_model, "ensure_default_model", not_installed)
    monkeypatch.setattr(default_model, "ensure_default_gguf", not_installed)  # either engine
    result = run("extract", "--task", "ner", "--schema", "nosuch", "--model", "x", "hello")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "unknown schema 'nosuch'" in result.stderr
    result = run("extract", "--task", "ner", "--schema", "conll03", "hello")
    assert result.exit_code == 1 and "no model given" in result.stderr
    result = run("extract", "--task", "ner", "--schema", "conll03", "--model", "/no/such/dir", "hi")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    result = run("extract", "--task", "ner", "--schema", "conll03", "--model", "x")
    assert result.exit_code == 2  # usage: no text given


class FlakyBackend:
    """Answers by rule but dies on the given call, like a crash mid-run."""

    def __init__(self, die_on_call: int | None):
        self.die_on_call = die_on_call
        self.calls = 0
        self.seen: list[str] = []

    def generate(self, prompts, config):
        self.calls += 1
        if self.calls == self.die_on_call:
            raise KeyboardInterrupt
        self.seen.extend(json.loads(p.user)["input"] for p in prompts)
        return [rule_answer(p.user) for p in prompts]


def test_interrupted_run_keeps_finished_documents_and_resume_completes(tmp_path):
    inp = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": str(i), "text": f"Doc {i} Paris."})
                                              for i in range(20)])
    out = tmp_path / "out.jsonl"
    flaky = FlakyBackend(die_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        extract_file(Extractor(flaky, "conll03", "ner", generation=GenerationConfig(batch_size=8)),
                     input_path=str(inp), output=str(out), progress=False)
    assert not out.exists(), "an unfinished run must not leave a complete-looking output"
    partial = out.with_name("out.jsonl.partial")
    assert [json.loads(x)["id"] for x in partial.read_text().splitlines()] == [str(i) for i in range(8)]
    with open(partial, "a") as handle:
        handle.write('{"id": "8", "text": "torn')  # a torn last line from a hard kill
    resumed = FlakyBackend(die_on_call=None)
    summary = extract_file(Extractor(resumed, "conll03", "ner"), input_path=str(inp),
                           output=str(out), resume=True, progress=False)
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert ids == [str(i) for i in range(20)] and not partial.exists()
    assert summary.skipped == 8 and summary.documents == 12
    assert resumed.seen == [f"Doc {i} Paris." for i in range(8, 20)]


def test_parse_command_grounds_raw_outputs_and_iepile_lines(tmp_path):
    inp = write_lines(tmp_path / "raw.jsonl", [
        json.dumps({"id": "1", "text": "Alice met Bob.", "output": '```json\n{"person": ["Alice", "Bob",]}\n```'}),
        json.dumps({"id": "2", "instruction": json.dumps({"instruction": "x", "schema": ["person"],
                                                          "input": "Carol is here."}),
                    "output": '{"person": ["Carol"]}'}),
        json.dumps({"id": "2", "instruction": json.dumps({"instruction": "x", "schema": ["location"],
                                                          "input": "Carol is here."}),
                    "output": '{"location": ["here", "Mars"]}'}),
        json.dumps({"id": "3", "text": "no output"}),
    ])
    out = tmp_path / "records.jsonl"
    result = run("parse", "--task", "ner", "--schema", "conll03", "--input", str(inp), "--output", str(out))
    assert result.exit_code == 1 and f"{inp}:4" in result.stderr
    docs = {d["id"]: d for d in map(json.loads, out.read_text().splitlines())}
    assert [(e["text"], e["start"]) for e in docs["1"]["entities"]] == [("Alice", 0), ("Bob", 10)]
    assert [(e["type"], e["text"]) for e in docs["2"]["entities"]] == [
        ("person", "Carol"), ("location", "here"), ("location", "Mars")]
    assert docs["2"]["errors"] == ["entity 'Mars' (location) not found in the text"]


def test_parse_trims_copied_punctuation_unless_asked_to_keep_it(tmp_path):
    inp = write_lines(tmp_path / "raw.jsonl", [json.dumps(
        {"id": "1", "text": "They live in Texas.", "output": '{"location": ["Texas."]}'})])
    spans = {}
    for flag in ([], ["--keep-punctuation"]):
        out = tmp_path / f"records{len(flag)}.jsonl"
        result = run("parse", "--task", "ner", "--schema", "conll03", "--input", str(inp),
                     "--output", str(out), *flag)
        assert result.exit_code == 0, result.output
        (doc,) = map(json.loads, out.read_text().splitlines())
        spans[bool(flag)] = [(e["text"], e["start"], e["end"]) for e in doc["entities"]]
    assert spans == {False: [("Texas", 13, 18)], True: [("Texas.", 13, 19)]}


def test_texts_as_arguments_go_to_stdout():
    with rule_server() as (url, _):
        result = run("extract", "--task", "ner", "--schema", "conll03", "--base-url", url,
                     "--api-model", "m", "--no-progress", "Alice sings.", "Bob dances.")
    assert result.exit_code == 0
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [x["entities"][0]["text"] for x in lines] == ["Alice", "Bob"]


@pytest.mark.parametrize("line, options, expected", [
    ({"text": "张三在北京工作。"}, [], "zh"),  # no language field, Chinese text, English schema
    ({"text": "张三在北京工作。", "language": "en"}, [], "en"),  # the document's own field
    ({"text": "张三在北京工作。", "language": "en"}, ["--language", "zh"], "zh"),  # the option
    ({"text": "1999 - 2024"}, ["--schema", "peoples_daily"], "zh"),  # no letters: the schema's
])
def test_extract_and_parse_read_a_document_in_the_same_language(tmp_path, line, options, expected):
    """One rule for both commands: --language, else the document's field, else detected from
    the text, else the schema's language."""
    inp = write_lines(tmp_path / "in.jsonl", [json.dumps({"id": "d", **line, "output": "{}"})])
    schema = ["--schema", "conll03"] if "--schema" not in options else []
    languages = {}
    with rule_server() as (url, _):
        for command in ("extract", "parse"):
            out = tmp_path / f"{command}.jsonl"
            backend = ["--base-url", url, "--api-model", "rule", "--no-progress"] \
                if command == "extract" else []
            result = run(command, "--task", "ner", *schema, *options, "--input", str(inp),
                         "--output", str(out), *backend)
            assert result.exit_code == 0, result.output
            languages[command] = json.loads(out.read_text())["language"]
    assert languages == {"extract": expected, "parse": expected}
