"""The kg2instruction command line: build, its input errors, --help of every subcommand, and the command under deepke-llm."""

from __future__ import annotations

import json

from click.testing import CliRunner
from kg2instruction_helpers import DATA

from deepke_llm.commands.kg2instruction import main


def test_cli_build_and_errors(tmp_path):
    base = DATA / "en"
    runner = CliRunner()
    args = ["build", "--kb-entities", str(base / "entities.jsonl"),
            "--kb-triples", str(base / "triples.tsv"), "--relations", str(base / "relations.json"),
            "--corpus", str(base / "corpus.jsonl"), "--output", str(tmp_path / "o.jsonl"),
            "--stats", str(tmp_path / "s.json"), "--workers", "1", "--shard", "0/1"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s.json").read_text())["triples"] == 7
    missing = runner.invoke(main, [*args[:8], str(tmp_path / "nope.jsonl"), *args[9:]])
    assert missing.exit_code == 1 and "nope.jsonl: file not found" in missing.output
    bad_shard = runner.invoke(main, [*args[:-1], "3/2"])
    assert bad_shard.exit_code == 2
    for command in ("build", "prepare-fewrel", "fewrel-adapter", "wikidata"):
        help_text = runner.invoke(main, [command, "--help"]).output
        assert "Example:" in help_text and "kg2instruction" in help_text


def test_deepke_llm_exposes_the_command():
    from deepke_llm.cli import main as deepke_main

    result = CliRunner().invoke(deepke_main, ["kg2instruction", "--help"])
    assert result.exit_code == 0 and "prepare-fewrel" in result.output
