"""The light core: parse, score, convert, instruct, schemas, and extract against a server run
without torch, transformers or any other extra; a command that needs one names the pip install.

The commands run in a subprocess whose import system refuses every package an extra brings (as
a virtualenv with only ``pip install deepke-llm`` would), so this fails as soon as a core path
imports one of them, whether or not it is installed here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_server import rule_server

from deepke_llm.commands.common import EXTRAS

REPO = Path(__file__).resolve().parents[1]
BLOCKER = f"""
import importlib.abc, sys
BLOCKED = {sorted(EXTRAS)!r}

class NoExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NoExtras())
from deepke_llm.cli import main
main(prog_name="deepke-llm")
"""


def light(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def files(tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "1", "text": "Alice met Bob in Paris.", "entities": [
        {"type": "person", "text": "Alice", "start": 0, "end": 5},
        {"type": "location", "text": "Paris", "start": 17, "end": 22}]}) + "\n")
    raw = tmp_path / "raw.jsonl"
    raw.write_text(json.dumps({"id": "1", "text": "Alice met Bob in Paris.",
                               "output": '{"person": ["Alice", "Bob"], "location": ["Paris"]}'})
                   + "\n")
    return tmp_path


def test_core_commands_run_without_any_extra(files):
    parsed = light("parse", "--task", "ner", "--schema", "conll03", "--input", "raw.jsonl",
                   "--output", "pred.jsonl", cwd=files)
    assert parsed.returncode == 0, parsed.stderr
    scored = light("score", "--task", "ner", "--gold", "gold.jsonl", "--pred", "pred.jsonl",
                   "--json", cwd=files)
    assert scored.returncode == 0, scored.stderr
    strict = json.loads(scored.stdout)["ner"]["strict"]
    assert (strict["tp"], strict["fp"], strict["fn"]) == (2, 1, 0)
    instructed = light("instruct", "--schema", "conll03", "--input", "gold.jsonl",
                       "--output", "train.jsonl", cwd=files)
    assert instructed.returncode == 0, instructed.stderr
    assert json.loads((files / "train.jsonl").read_text().splitlines()[0])["task"] == "NER"
    conll = files / "tiny.conll"
    conll.write_text("-DOCSTART- -X- O O\n\nJapan NNP B-NP B-LOC\nwins VBZ B-VP O\n\n")
    converted = light("convert", "--format", "conll03", "--input", "tiny.conll", "--output",
                      "docs.jsonl", "--schema", "conll03", cwd=files)
    assert converted.returncode == 0, converted.stderr
    assert json.loads((files / "docs.jsonl").read_text())["entities"][0]["text"] == "Japan"
    listed = light("schemas", cwd=files)
    assert listed.returncode == 0 and "conll04" in listed.stdout


def test_extract_against_a_server_runs_without_any_extra(files):
    with rule_server() as (url, _):
        result = light("extract", "--task", "ner", "--schema", "conll03", "--base-url", url,
                       "--api-model", "m", "Alice met Bob.", cwd=files)
    assert result.returncode == 0, result.stderr
    assert [e["text"] for e in json.loads(result.stdout)["entities"]] == ["Alice", "Bob"]


def test_a_command_that_needs_an_extra_names_the_pip_install(files):
    result = light("extract", "--task", "ner", "--schema", "conll03", "--model",
                   str(files), "Alice met Bob.", cwd=files)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: this needs the 'torch' package, which the light install leaves out: "
        "pip install 'deepke-llm[hf]'")


def test_evaluate_against_a_server_runs_without_any_extra(files, data_dir):
    with rule_server() as (url, _):
        result = light("evaluate", "conll03", "--base-url", url, "--api-model", "rule",
                       "--limit", "5", "--bootstrap", "50", "--data-dir", data_dir,
                       "--output", "results", cwd=files)
    assert result.returncode == 0, result.stderr
    assert "no chart (pip install 'deepke-llm[eval]'" in result.stderr
    reports = list((files / "results" / "conll03").glob("*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["scores"]
