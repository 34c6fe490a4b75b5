"""KG2Instruction linking edges: ties stay unlinked (or are flagged), the scorer's decided /
coverage split and ignore-case ambiguity, length-keeping case folding, caches, KB guards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kg2instruction_helpers import tiny_kb

from deepke_llm.problems import Problems
from kg2instruction.build import build
from kg2instruction.inputs import EntityRecord, RelationInfo
from kg2instruction.kb import KnowledgeBase, fold_case
from kg2instruction.mentions import detect_mentions
from kg2instruction.pipeline import BuildConfig


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture()
def coin_flip(tmp_path) -> list[Path]:
    """Two "2014" editions, each following its own "2013": nothing tells the pairs apart."""
    entities = write_lines(tmp_path / "e.jsonl", [
        {"id": "A14", "aliases": ["2014"]}, {"id": "A13", "aliases": ["2013"]},
        {"id": "B14", "aliases": ["2014"]}, {"id": "B13", "aliases": ["2013"]},
        {"id": "W", "aliases": ["Wimbledon"]}])
    (tmp_path / "t.tsv").write_text("A14\tP155\tA13\nB14\tP155\tB13\n")
    (tmp_path / "r.json").write_text(json.dumps({"P155": ["follows", ""]}))
    corpus = write_lines(tmp_path / "c.jsonl", [
        {"id": "x", "text": "He won Wimbledon in 2013 and 2014."}])
    return [entities, tmp_path / "t.tsv", tmp_path / "r.json", corpus]


def test_tied_links_are_written_without_kb_id(coin_flip, tmp_path):
    report = build(*coin_flip, tmp_path / "o.jsonl")
    doc = json.loads((tmp_path / "o.jsonl").read_text())
    assert [(e["text"], e.get("kb_id")) for e in doc["entities"]] == [
        ("Wimbledon", "W"), ("2013", None), ("2014", None)]
    assert doc["uncertain_links"] == [
        {"text": "2013", "start": 20, "end": 24, "candidates": ["A13", "B13"]},
        {"text": "2014", "start": 29, "end": 33, "candidates": ["A14", "B14"]}]
    assert "errors" not in doc and doc["relations"] == []
    assert report["links"] == 1 and report["links_by"]["tie"] == 2
    assert report["dropped"]["uncertain_link"] == 1


def test_keep_uncertain_links_the_first_candidate_and_says_so(coin_flip, tmp_path):
    report = build(*coin_flip, tmp_path / "o.jsonl", config=BuildConfig(drop_uncertain=False))
    doc = json.loads((tmp_path / "o.jsonl").read_text())
    assert [e.get("kb_id") for e in doc["entities"]] == ["W", "A13", "A14"]
    assert doc["errors"] == [
        "uncertain link: '2013' at 20-24 is A13 by a tie among A13, B13",
        "uncertain link: '2014' at 29-33 is A14 by a tie among A14, B14"]
    assert len(doc["uncertain_links"]) == 2 and report["triples"] == 1


def test_scorer_reports_decided_accuracy_and_coverage(coin_flip, tmp_path):
    from kg2instruction.evaluate import score_documents

    build(*coin_flip, tmp_path / "o.jsonl")
    text = "He won Wimbledon in 2013 and 2014."
    gold = {"id": "x", "text": text, "entities": [
        {"type": "e", "text": "2013", "start": 20, "end": 24, "kb_id": "A13"},
        {"type": "e", "text": "Wimbledon", "start": 7, "end": 16, "kb_id": "W"}],
        "relations": []}
    write_lines(tmp_path / "gold.jsonl", [gold])
    scores = score_documents(tmp_path / "o.jsonl", tmp_path / "gold.jsonl", coin_flip[0])
    assert scores["counts"]["ambiguous_mentions"] == 1
    assert scores["ambiguous_alias_accuracy"] == 0.0  # the tie counts as wrong
    assert scores["ambiguous_link_coverage"] == 0.0
    assert scores["mention_linking_accuracy"] == 0.5
    assert scores["mention_linking_accuracy_decided"] == 1.0


def test_scorer_decides_ambiguity_with_the_kbs_case_folding(tmp_path):
    from kg2instruction.evaluate import score_documents

    entities = write_lines(tmp_path / "e.jsonl", [{"id": "C", "aliases": ["Apple"]},
                                                  {"id": "F", "aliases": ["APPLE"]}])
    gold = {"id": "g", "text": "apple pie", "entities": [
        {"type": "e", "text": "apple", "start": 0, "end": 5, "kb_id": "F"}], "relations": []}
    write_lines(tmp_path / "gold.jsonl", [gold])
    write_lines(tmp_path / "out.jsonl", [{**gold, "entities": []}])
    exact = score_documents(tmp_path / "out.jsonl", tmp_path / "gold.jsonl", entities)
    folded = score_documents(tmp_path / "out.jsonl", tmp_path / "gold.jsonl", entities,
                             ignore_case=True)
    assert exact["counts"].get("ambiguous_mentions", 0) == 0
    assert folded["counts"]["ambiguous_mentions"] == 1


def test_case_folding_keeps_offsets_when_a_character_would_grow():
    assert "İ".lower() != "i" and len("İ".lower()) == 2  # why a plain lower() cannot be used
    text = "İstanbul and ANKARA"
    assert fold_case(text) == "İstanbul and ankara"
    kb = tiny_kb({"A": ["Ankara"], "I": ["İstanbul"]}, ignore_case=True)
    mentions = detect_mentions(text, [(0, len(text))], kb)
    assert [text[m.start:m.end] for m in mentions] == ["İstanbul", "ANKARA"]


def test_entities_cannot_be_added_after_triples():
    kb = KnowledgeBase([RelationInfo("r", "r")])
    kb.add_entity(EntityRecord("A", ("a",)))
    kb.add_entity(EntityRecord("B", ("b",)))
    kb.add_triples([("A", "r", "B", "t:1")], Problems())
    with pytest.raises(RuntimeError, match="before add_triples"):
        kb.add_entity(EntityRecord("C", ("c",)))
    assert kb.relations_between(0, 1) == (0,)


def test_tfidf_bag_cache_evicts_the_least_recently_used(monkeypatch):
    import kg2instruction.context as context

    monkeypatch.setattr(context, "CACHE_SIZE", 2)
    kb = tiny_kb({"A": ["a"], "B": ["b"], "C": ["c"]})
    scorer = context.make_context_scorer("tfidf", kb, "en")
    for entity in (0, 1, 0, 2):  # 0 is used again after 1, so 1 is the one to go
        scorer._bag(entity)
    assert list(scorer._bags) == [0, 2]


def test_context_tokens_fold_regular_plurals():
    from kg2instruction.context import tokens

    assert tokens("World Championships, cities, bus, Paralympics 中国队") == tokens(
        "world championship, city, bus, Paralympic 中国队")
    assert tokens("bus class basis the 中国队") == ["bus", "class", "basis", "the", "中", "国", "队",
                                                "中国", "国队"]
