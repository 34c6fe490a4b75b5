"""Bundled benchmark definitions load and point at real schemas; data paths resolve in the
documented order; missing (licensed) data gives one clear line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deepke_llm.cli import main
from deepke_llm.datasets import READERS, reader_options
from deepke_llm.evaluation.definitions import (
    BenchmarkError,
    bundled_benchmarks,
    load_benchmark,
    resolve_data_path,
)
from deepke_llm.schema import load_schema


def test_every_bundled_benchmark_is_valid():
    names = bundled_benchmarks()
    assert {"conll03", "conll04", "ace05", "duee", "duie", "peoples_daily", "msra",
            "fewrel"} <= set(names)
    for name in names:
        definition = load_benchmark(name)
        assert definition.name == name
        assert definition.format in READERS
        assert set(definition.reader_options) <= set(reader_options(definition.format))
        load_schema(definition.schema).types_for(definition.task)
        assert definition.default_split in definition.splits
    assert load_benchmark("duee").default_split == "dev"
    # CoNLL04's gold spans keep sentence-final periods ("Texas."): grounding must not trim them
    assert load_benchmark("conll04").trim_punctuation is False
    assert load_benchmark("conll03").trim_punctuation is True


def test_trim_punctuation_must_be_a_boolean(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"name": "b", "task": "ner", "format": "conll03", "schema": "conll03",
                                "splits": {"test": "x"}, "trim_punctuation": "no"}))
    with pytest.raises(BenchmarkError, match="trim_punctuation"):
        load_benchmark(str(path))


GOOD = {"name": "b", "task": "ner", "format": "conll03", "schema": "conll03",
        "splits": {"test": "x"}}


@pytest.mark.parametrize(("change", "expected"), [
    ({"splits": None}, "$: 'splits' is a required property"),
    ({"task": "srl"}, "$.task: 'srl' is not one of ['ner', 're', 'ee']"),
    ({"splits": {"test": 3}}, "$.splits.test: 3 is not of type 'string'"),
    ({"splits": {}}, "$.splits: {} should be non-empty"),
    ({"modes": []}, "$.modes: [] should be non-empty"),
    ({"modes": "strict"}, "$.modes: 'strict' is not of type 'array'"),
    ({"reader_options": []}, "$.reader_options: [] is not of type 'object'"),
    ({"language": "fr"}, "$.language: 'fr' is not one of ['en', 'zh', None]"),
    ({"name": 7}, "$.name: 7 is not of type 'string'"),
    ({"default_split": "dev"}, "$.default_split: 'dev' is not one of the splits (test)"),
])
def test_invalid_definition_is_one_line_naming_file_and_field(tmp_path, change, expected):
    data = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BenchmarkError) as info:
        load_benchmark(str(path))
    assert str(info.value) == f"{path}: {expected}"


def test_definition_must_be_an_object(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text("[1, 2]")
    with pytest.raises(BenchmarkError, match=r"bench.json: \$: \[1, 2\] is not of type 'object'"):
        load_benchmark(str(path))


def test_schema_enums_follow_the_scoring_modes_and_the_task_registry():
    from deepke_llm.evaluation.definitions import benchmark_schema
    from deepke_llm.evaluation.spans import MODES
    from deepke_llm.tasks import task_names

    properties = benchmark_schema()["properties"]
    assert tuple(properties["modes"]["items"]["enum"]) == MODES
    assert properties["task"]["enum"] == task_names()
    # the schema file sits beside the definitions but is not a benchmark itself
    assert "benchmark.schema" not in bundled_benchmarks()


def test_shipped_data_resolves_and_reads(data_dir):
    for name, split in (("conll03", "test"), ("conll04", "test"), ("msra", "test"),
                        ("peoples_daily", "test"), ("fewrel", "test")):
        assert resolve_data_path(load_benchmark(name), split, data_dir).is_file()


def test_data_dir_precedence(tmp_path, monkeypatch):
    (tmp_path / "a" / "conll2003").mkdir(parents=True)
    (tmp_path / "b" / "conll2003").mkdir(parents=True)
    for base in ("a", "b"):
        (tmp_path / base / "conll2003" / "eng.testb").write_text("")
    definition = load_benchmark("conll03")
    monkeypatch.setenv("DEEPKE_DATA", str(tmp_path / "b"))
    assert resolve_data_path(definition, "test", tmp_path / "a") == tmp_path / "a/conll2003/eng.testb"
    assert resolve_data_path(definition, "test") == tmp_path / "b/conll2003/eng.testb"
    with pytest.raises(BenchmarkError, match="has no split 'final': use one of train, dev, test"):
        resolve_data_path(definition, "final")


def test_definition_file_with_absolute_path(tmp_path, data_dir):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "task": "ner", "format": "conll03",
                                "schema": "conll03", "splits": {"test": str(data_dir / "conll2003" / "eng.testa")},
                                "modes": ["strict"], "unused": 1}))
    with pytest.warns(UserWarning, match="unknown field"):
        definition = load_benchmark(str(path))
    assert definition.modes == ("strict",)
    assert resolve_data_path(definition, "test", "/nowhere") == data_dir / "conll2003" / "eng.testa"
    path.write_text(json.dumps({"name": "x", "task": "ner", "format": "conll03", "schema": "s",
                                "splits": {"test": "t"}, "modes": ["fuzzy"]}))
    with pytest.raises(BenchmarkError, match=r"mine.json: \$\.modes\[0\]: 'fuzzy' is not one of"):
        load_benchmark(str(path))
    with pytest.raises(BenchmarkError, match="unknown benchmark 'nope': .*conll03"):
        load_benchmark("nope")


def test_licensed_data_missing_is_one_clear_line(tmp_path, monkeypatch):
    result = CliRunner().invoke(main, ["evaluate", "ace05", "--base-url", "http://127.0.0.1:9/v1",
                                       "--api-model", "m", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: benchmark 'ace05' split 'test': data file")
    assert "licensed by the LDC" in lines[0] and "ace05/test.oneie.json" in lines[0]
    import deepke_llm.default_model as default_model

    def not_installed(progress=None):
        raise default_model.DefaultModelError("default model not installed (package x missing)")

    monkeypatch.setattr(default_model, "ensure_default_model", not_installed)
    monkeypatch.setattr(default_model, "ensure_default_gguf", not_installed)  # either engine
    no_model = CliRunner().invoke(main, ["evaluate", "conll03"])
    assert no_model.exit_code == 1 and "--model" in no_model.stderr
    assert no_model.stderr.count("\n") == 1
