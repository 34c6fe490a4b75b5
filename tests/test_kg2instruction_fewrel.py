"""KG2Instruction on FewRel: detokenisation, the adapter, its scorer, interrupted runs and the real-data goals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kg2instruction_helpers import write

from kg2instruction.build import build
from kg2instruction.fewrel import detokenize, prepare_fewrel


def test_detokenize_keeps_token_offsets():
    tokens = ["He", "said", '"', "yes", '"', "(", "twice", ")", ",", "didn't", "he", "?"]
    text, spans = detokenize(tokens)
    assert text == 'He said "yes" (twice), didn\'t he?'
    assert [text[s:e] for s, e in spans] == tokens


@pytest.fixture()
def tiny_fewrel(tmp_path) -> Path:
    data = {"P1": [
        {"tokens": ["Ann", "Lee", "works", "for", "Acme", "."], "h": ["ann lee", "E1", [[0, 1]]],
         "t": ["acme", "E2", [[4]]]},
        {"tokens": ["Bo", "(", "born", "1950", ")", "works", "for", "Acme", ",", "a", "firm", "."],
         "h": ["bo", "E3", [[0]]], "t": ["acme", "E2", [[7]]]}],
        "P2": [{"tokens": ["Acme", "is", "in", "Springfield", "."], "h": ["acme", "E4", [[0]]],
                "t": ["springfield", "E5", [[3]]]}]}
    write(tmp_path / "fewrel.json", json.dumps(data))
    write(tmp_path / "names.json", json.dumps({"P1": ["employer", "works for"],
                                               "P2": ["located in", "place"]}))
    return tmp_path


def test_fewrel_adapter_and_scoring(tiny_fewrel, tmp_path):
    from kg2instruction.evaluate import score_documents

    out = tmp_path / "inputs"
    summary = prepare_fewrel(tiny_fewrel / "fewrel.json", out, tiny_fewrel / "names.json")
    assert {k: summary[k] for k in ("sentences", "entities", "triples", "relations")} == \
        {"sentences": 3, "entities": 5, "triples": 3, "relations": 2}
    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    assert corpus[1] == {"id": "fewrel-00002", "text": "Bo (born 1950) works for Acme, a firm."}
    gold = [json.loads(line) for line in (out / "gold.jsonl").read_text().splitlines()]
    assert gold[1]["relations"][0]["kb_relation"] == "P1"
    assert gold[1]["source_id"] == "fewrel-P1-1"  # read by deepke_llm.datasets.fewrel
    assert gold[1]["relations"][0]["tail"] == {"type": "entity", "text": "Acme", "start": 25,
                                               "end": 29, "kb_id": "E2"}
    build(out / "kb_entities.jsonl", out / "kb_triples.tsv", out / "relations.json",
          out / "corpus.jsonl", out / "docs.jsonl")
    scores = score_documents(out / "docs.jsonl", out / "gold.jsonl", out / "kb_entities.jsonl",
                             out / "kb_triples.tsv")
    # "Acme" is ambiguous (E2 employer, E4 the one located in Springfield): coherence decides
    assert scores["recall"] == 1.0 and scores["precision"] == 1.0
    assert scores["counts"]["ambiguous_mentions"] == 3
    assert scores["ambiguous_alias_accuracy"] == 1.0
    assert scores["counts"]["ambiguous_distinguishable"] == 3
    assert scores["counts"].get("ambiguous_indistinguishable", 0) == 0


def test_interrupted_fewrel_adapter_leaves_no_output_that_looks_complete(tiny_fewrel,
                                                                          monkeypatch):
    import kg2instruction.fewrel as fewrel

    detokenize = fewrel.detokenize
    calls = []

    def interrupted(tokens):
        calls.append(tokens)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return detokenize(tokens)

    monkeypatch.setattr(fewrel, "detokenize", interrupted)
    out = tiny_fewrel / "inputs"
    with pytest.raises(KeyboardInterrupt):
        fewrel.prepare_fewrel(tiny_fewrel / "fewrel.json", out, tiny_fewrel / "names.json")
    assert not out.exists() or list(out.iterdir()) == []


def test_fewrel_real_data_meets_recall_goal_but_not_ambiguity_goal(data_dir, tmp_path):
    from kg2instruction.evaluate import score_documents

    fewrel = data_dir / "fewrel"
    out = tmp_path / "fewrel"
    prepare_fewrel(fewrel / "fewrel_val_wiki_8rel.json", out, fewrel / "relations.json",
                   fewrel / "kb_entities.jsonl", fewrel / "kb_triples.tsv")
    report = build(out / "kb_entities.jsonl", out / "kb_triples.tsv", out / "relations.json",
                   out / "corpus.jsonl", out / "docs.jsonl")
    assert report["documents"] == 5600 and report["input_errors"]["counts"] == {}
    scores = score_documents(out / "docs.jsonl", out / "gold.jsonl", out / "kb_entities.jsonl",
                             out / "kb_triples.tsv")
    assert scores["recall"] >= 0.95  # goal met
    assert scores["precision"] >= 0.9
    # goal (>= 95%) NOT met: a tie is left unlinked and counts as wrong; if this starts to fail
    # because the accuracy rose, rerun benchmarks/kg2instruction/fewrel.py and rename this test
    assert 0.90 <= scores["ambiguous_alias_accuracy"] < 0.95
    assert scores["ambiguous_alias_accuracy_decided"] >= 0.97
    assert 0.9 <= scores["ambiguous_link_coverage"] < 1.0
    # the KB is made from the evaluated sentences: full coverage by construction
    assert scores["kb_triple_coverage"] == scores["mention_alias_coverage"] == 1.0
    results = (Path(__file__).parents[1] / "benchmarks" / "results" / "kg2instruction"
               / "fewrel.md").read_text()
    assert "ambiguous-alias linking accuracy >= 95.00%" in results and "NOT met" in results
    assert "by construction" in results and "gold occurrences" in results
    committed = json.loads((Path(__file__).parents[1] / "benchmarks" / "results"
                            / "kg2instruction" / "fewrel.json").read_text())["scores"]
    assert committed["counts"] == scores["counts"]  # the results are this code's
