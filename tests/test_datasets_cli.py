"""``deepke-llm convert`` and the reader registry: outputs, summary, errors, exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deepke_llm.cli import main
from deepke_llm.datasets import READERS, DatasetError, read_dataset, register_reader
from deepke_llm.records import read_documents


def _convert(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args)])


def test_convert_conll03_test_writes_records_and_summary(data_dir, tmp_path):
    out = tmp_path / "out" / "conll03-test.jsonl"
    result = _convert("--format", "conll03", "--input", data_dir / "conll2003" / "eng.testb",
                      "--schema", "conll03", "--split", "test", "--output", out)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"convert: 3453 documents, 5648 entities, 0 relations, 0 events, 0 errors -> {out}")
    docs = list(read_documents(str(out)))
    assert len(docs) == 3453 and docs[17].id == "conll03-test-17"
    assert sum(len(d.entities) for d in docs) == 5648
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temp file left


def test_convert_reports_bad_records_and_limits(tmp_path):
    source = tmp_path / "duee_dev.json"
    source.write_text('{"id": "a", "text": "甲公司裁员。", "event_list": [{"event_type": "组织关系-裁员",'
                      ' "trigger": "裁员", "trigger_start_index": 3, "arguments": []}]}\n'
                      "oops\n"
                      '{"id": "b", "text": "乙。"}\n', encoding="utf-8")
    out = tmp_path / "docs.jsonl"
    result = _convert("--format", "duee", "--input", source, "--output", out)
    assert result.exit_code == 1  # input errors: reported, the rest written
    assert f"{source}:2: not valid JSON" in result.output
    assert "convert: 2 documents, 0 entities, 0 relations, 1 events, 1 errors" in result.output
    result = _convert("--format", "duee", "--input", source, "--output", out, "--limit", 1)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a"]


def test_convert_input_errors_exit_1_and_keep_earlier_output(tmp_path):
    out = tmp_path / "docs.jsonl"
    out.write_text("earlier run\n")
    missing = _convert("--format", "spert", "--input", tmp_path / "nope.json", "--output", out)
    assert missing.exit_code == 1 and "nope.json does not exist" in missing.output
    wrong_option = _convert("--format", "spert", "--input", tmp_path, "--output", out,
                            "--unit", "document")
    assert wrong_option.exit_code == 1
    assert "format 'spert' has no option 'unit'" in wrong_option.output
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("nope\nnever\n")
    only_errors = _convert("--format", "oneie", "--input", garbage, "--output", out)
    assert only_errors.exit_code == 1 and "no document could be read" in only_errors.output
    bad_schema = _convert("--format", "oneie", "--input", garbage, "--output", out,
                          "--schema", "no-such-schema")
    assert bad_schema.exit_code == 1 and "unknown schema" in bad_schema.output
    assert out.read_text() == "earlier run\n"


def test_convert_help_has_an_example():
    result = CliRunner().invoke(main, ["convert", "--help"])
    assert result.exit_code == 0 and "deepke-llm convert --format conll03" in result.output


def test_registry_names_formats_and_rejects_duplicates(tmp_path):
    assert set(READERS) == {"conll03", "spert", "oneie", "duee", "duie", "bio", "fewrel", "bmes",
                            "fewfc", "phee", "finre"}
    with pytest.raises(ValueError, match="already registered"):
        register_reader("bio", READERS["bio"])
    with pytest.raises(DatasetError, match="unknown dataset format 'xml'"):
        read_dataset("xml", tmp_path / "x")
    with pytest.raises(DatasetError, match="is a directory"):
        read_dataset("bio", tmp_path)
