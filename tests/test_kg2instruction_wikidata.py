"""KG2Instruction's Wikidata dump reader: conversion, item filters, interrupted conversions."""

from __future__ import annotations

import json

import pytest
from kg2instruction_helpers import DATA

from kg2instruction.wikidata import convert_wikidata


def test_wikidata_dump_reader(tmp_path):
    summary = convert_wikidata(DATA / "wikidata_sample.json", tmp_path, "en",
                               type_constraints=True)
    assert summary["input_errors"]["counts"] == {"broken_line": 1}
    entities = [json.loads(line) for line in
                (tmp_path / "kb_entities.jsonl").read_text().splitlines()]
    # types are the classes' labels, never bare QIDs
    assert entities[0] == {"id": "Q100", "label": "Ada Quill", "aliases": ["A. Quill"],
                           "description": "fictional inventor", "types": ["human"],
                           "popularity": 2}
    # Q103 has no English label or alias: left out, and so is the triple naming it
    assert [e["id"] for e in entities] == ["Q100", "Q101", "Q5", "Q4830453", "Q104"]
    assert summary["skipped_no_name"] == 1 and summary["triples_to_left_out_items"] == 1
    # the deprecated statement and the time-valued property are left out
    assert (tmp_path / "kb_triples.tsv").read_text() == "head\trelation\ttail\nQ100\tP108\tQ101\n"
    assert json.loads((tmp_path / "relations.json").read_text()) == {"P108": {
        "name": "employer", "name_zh": "雇主",
        "description": "person or organization for which the subject works",
        "head_types": ["human"]}}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kb_entities.jsonl", "kb_triples.tsv", "relations.json"]  # no scratch files left
    convert_wikidata(DATA / "wikidata_sample.json", tmp_path / "zh", "zh")
    first = json.loads((tmp_path / "zh" / "kb_entities.jsonl").read_text().splitlines()[0])
    assert first["label"] == "艾达" and first["types"] == ["人类"]


def test_wikidata_item_filters(tmp_path):
    linked = convert_wikidata(DATA / "wikidata_sample.json", tmp_path / "linked", "en",
                              only_linked=True)
    ids = [json.loads(x)["id"] for x in
           (tmp_path / "linked" / "kb_entities.jsonl").read_text().splitlines()]
    assert ids == ["Q100", "Q101"] and linked["skipped_not_linked"] == 3
    popular = convert_wikidata(DATA / "wikidata_sample.json", tmp_path / "popular", "en",
                               min_sitelinks=1)
    ids = [json.loads(x)["id"] for x in
           (tmp_path / "popular" / "kb_entities.jsonl").read_text().splitlines()]
    assert ids == ["Q100", "Q5", "Q104"] and popular["skipped_few_sitelinks"] == 2
    # Q101 (no sitelinks) is gone, so is Q100's triple to it
    assert popular["triples"] == 0
    assert (tmp_path / "popular" / "kb_triples.tsv").read_text() == "head\trelation\ttail\n"


def test_wikidata_interrupted_conversion_leaves_no_output_that_looks_complete(tmp_path,
                                                                                monkeypatch):
    import kg2instruction.wikidata as wikidata

    read = wikidata.iter_dump

    def interrupted(path, issues):
        yield from list(read(path, issues))[:2]
        raise KeyboardInterrupt

    monkeypatch.setattr(wikidata, "iter_dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        wikidata.convert_wikidata(DATA / "wikidata_sample.json", tmp_path, "en")
    assert list(tmp_path.iterdir()) == []
