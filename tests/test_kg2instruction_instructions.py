"""KG2Instruction builds IEPile RE instruction lines from its documents."""

from __future__ import annotations

import json

import pytest
from kg2instruction_helpers import DATA

from kg2instruction.build import build
from kg2instruction.pipeline import BuildConfig


def test_instructions_follow_the_iepile_re_layout(tmp_path):
    instructions = pytest.importorskip(
        "deepke_llm.instructions", reason="deepke_llm.instructions (core converter) missing")
    assert hasattr(instructions, "documents_to_instructions")
    base = DATA / "zh"
    report = build(base / "entities.jsonl", base / "triples.tsv", base / "relations.json",
                   base / "corpus.jsonl", tmp_path / "docs.jsonl",
                   instructions=tmp_path / "train.jsonl", config=BuildConfig(language="zh"))
    lines = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert report["instructions"] == len(lines) > 0
    first = lines[0]
    assert first["task"] == "RE" and first["id"] == "zh-coherence"
    prompt = json.loads(first["instruction"])
    assert list(prompt) == ["instruction", "schema", "input"]
    assert prompt["input"] == "乔布斯创办了苹果。苹果的总部位于库比蒂诺。"
    assert set(prompt["schema"]) <= {"创办者", "总部位置", "毗邻水域"}
    output = json.loads(first["output"])
    assert list(output) == prompt["schema"]
    got = {(rel, item["subject"], item["object"]) for line in lines
           if line["id"] == "zh-coherence" for rel, items in json.loads(line["output"]).items()
           for item in items}
    assert got == {("创办者", "苹果", "乔布斯"), ("总部位置", "苹果", "库比蒂诺")}
