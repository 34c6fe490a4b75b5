"""KG2Instruction end to end on hand-written English and Chinese KBs + corpora
(tests/data/kg2instruction): exact links, triples, rule drops and stats."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from kg2instruction_helpers import DATA

from kg2instruction.build import build
from kg2instruction.linking import LinkerConfig
from kg2instruction.pipeline import BuildConfig


def run(tmp_path: Path, language: str = "en", corpus: Path | None = None, name: str = "docs",
        **kwargs) -> tuple[dict[str, dict], dict]:
    base = DATA / language
    config = kwargs.pop("config", BuildConfig(language=language))
    output = tmp_path / f"{name}.jsonl"
    report = build(base / "entities.jsonl", base / "triples.tsv", base / "relations.json",
                   corpus or base / "corpus.jsonl", output, config=config, **kwargs)
    docs = {}
    for line in output.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        docs[doc["id"]] = doc
    return docs, report


def links(doc: dict) -> list[tuple[str, str, int]]:
    return [(e["text"], e["kb_id"], e["start"]) for e in doc["entities"]]


def triples(doc: dict) -> list[tuple[str, str, str, str]]:
    return [(r["head"]["text"], r["type"], r["kb_relation"], r["tail"]["text"])
            for r in doc["relations"]]


def test_english_links_and_triples_are_exact(tmp_path):
    docs, _ = run(tmp_path)
    assert list(docs) == ["coherence", "context", "country", "spouse", "types", "conflict",
                          "self", "distance", "nothing", "two-sentences"]
    assert links(docs["coherence"]) == [("Jordan", "Q1", 0), ("Chicago Bulls", "Q3", 31)]
    assert triples(docs["coherence"]) == [("Jordan", "member of sports team", "P54",
                                           "Chicago Bulls")]
    assert links(docs["context"]) == [("Apple", "Q5", 0)]
    assert links(docs["country"]) == [("Amman", "Q4", 0), ("Jordan", "Q2", 24)]
    assert triples(docs["country"]) == [("Amman", "capital of", "P1376", "Jordan")]
    assert triples(docs["spouse"]) == [("Michael Jordan", "spouse", "P26", "Juanita Vanoy")]
    assert triples(docs["types"]) == [] and triples(docs["conflict"]) == []
    assert triples(docs["self"]) == [("Bulls", "sport", "P641", "basketball")]
    assert triples(docs["distance"]) == [("Scottie Pippen", "member of sports team", "P54",
                                          "Chicago Bulls")]
    assert docs["nothing"]["entities"] == [] and docs["nothing"]["relations"] == []
    two = docs["two-sentences"]
    assert links(two) == [("Steve Jobs", "Q7", 0), ("Apple", "Q5", 19), ("Apple", "Q5", 38),
                          ("Cupertino", "Q8", 56)]
    assert triples(two) == [("Apple", "founded by", "P112", "Steve Jobs"),
                            ("Apple", "headquarters location", "P159", "Cupertino")]
    # offsets ground the mention text, corpus ids and extra fields survive
    for doc in docs.values():
        for entity in doc["entities"]:
            assert doc["text"][entity["start"]:entity["end"]] == entity["text"]
        assert doc["language"] == "en"
    assert two["source"] == "hand-written"


def test_ambiguous_alias_resolved_by_coherence_not_prior(tmp_path):
    # "Jordan": the country is more popular (200 vs 100); the KB relating the player to the
    # Chicago Bulls in the same sentence is what picks the player
    docs, report = run(tmp_path)
    assert links(docs["coherence"])[0] == ("Jordan", "Q1", 0)
    assert links(docs["country"])[1] == ("Jordan", "Q2", 24)
    assert report["links_by"] == {"single": 15, "coherence": 4, "context": 1, "prior": 0,
                                  "combined": 0, "tie": 0}
    weak = BuildConfig(linker=LinkerConfig(sentence_coherence=0.0, document_coherence=0.0,
                                           same_entity_in_document=0.0), context="none")
    docs, _ = run(tmp_path, config=weak, name="no-coherence")
    assert links(docs["coherence"])[0] == ("Jordan", "Q2", 0)


def test_ambiguous_alias_resolved_by_context_not_prior(tmp_path):
    # "Apple": the fruit is more popular (80 vs 50); the sentence about smartphones and software
    # matches the company's description
    docs, _ = run(tmp_path)
    assert links(docs["context"]) == [("Apple", "Q5", 0)]
    docs, _ = run(tmp_path, config=BuildConfig(context="none"), name="no-context")
    assert links(docs["context"]) == [("Apple", "Q6", 0)]


def test_stats_counts_are_exact(tmp_path):
    _, report = run(tmp_path, stats_path=tmp_path / "stats.json")
    on_disk = json.loads((tmp_path / "stats.json").read_text())
    assert on_disk["documents"] == report["documents"]
    expected = {"documents": 10, "documents_with_relations": 6, "sentences": 11, "mentions": 20,
                "ambiguous_mentions": 5, "candidates": 25, "links": 20, "candidate_triples": 14,
                "triples": 7}
    assert {k: report[k] for k in expected} == expected
    assert report["triples_per_relation"] == {
        "capital of": 1, "founded by": 1, "headquarters location": 1,
        "member of sports team": 2, "sport": 1, "spouse": 1}
    assert report["dropped"] == {"not_in_schema": 0, "self_relation": 2, "uncertain_link": 0,
                                 "type_constraint": 1, "max_distance": 0,
                                 "duplicate_mention_pair": 1, "conflicting_relations": 2,
                                 "symmetric_duplicate": 1}
    assert report["kb"] == {"entities": 15, "aliases": 23, "ambiguous_aliases": 2, "triples": 16,
                            "relations": 8, "symmetric_relations": ["P26", "P460"]}
    assert report["input_errors"] == {"counts": {}, "messages": []}
    # every candidate triple is either kept or dropped by exactly one rule
    assert report["candidate_triples"] == report["triples"] + sum(report["dropped"].values())


# ---- one test per rule filter ------------------------------------------------------------------

def test_rule_type_constraint_drops_wrong_domain(tmp_path):
    # KB error: "basketball -headquarters location-> Cupertino"; the relation wants a company
    docs, report = run(tmp_path)
    assert links(docs["types"]) == [("Basketball", "Q9", 0), ("Cupertino", "Q8", 25)]
    assert triples(docs["types"]) == [] and report["dropped"]["type_constraint"] == 1


def test_rule_max_distance(tmp_path):
    docs, report = run(tmp_path, config=BuildConfig(max_distance=40), name="near")
    assert triples(docs["distance"]) == []
    assert report["dropped"]["max_distance"] == 1
    assert triples(docs["coherence"])  # 26 characters apart: kept


def test_rule_self_relation_and_duplicate_mention_pair(tmp_path):
    # "Chicago Bulls" and "Bulls" are one entity: its KB self-loop (P460) gives two candidates,
    # both self-relations; "sport" comes from both mentions, only the closer pair is kept
    docs, report = run(tmp_path)
    assert links(docs["self"]) == [("Chicago Bulls", "Q3", 4), ("Bulls", "Q3", 36),
                                   ("basketball", "Q9", 48)]
    assert triples(docs["self"]) == [("Bulls", "sport", "P641", "basketball")]
    assert report["dropped"]["self_relation"] == 2
    assert report["dropped"]["duplicate_mention_pair"] == 1


def test_rule_symmetric_duplicate_keeps_text_order(tmp_path):
    # spouse holds both ways in the KB (so it is inferred symmetric): one triple, head first
    docs, report = run(tmp_path)
    assert triples(docs["spouse"]) == [("Michael Jordan", "spouse", "P26", "Juanita Vanoy")]
    assert report["dropped"]["symmetric_duplicate"] == 1
    assert "P26" in report["kb"]["symmetric_relations"]


def test_rule_conflicting_relations(tmp_path):
    # "follows" is not symmetric, yet the KB has it both ways for this pair: a contradiction
    docs, report = run(tmp_path)
    assert links(docs["conflict"]) == [("Alpha Season", "Q13", 0), ("Beta Season", "Q14", 25)]
    assert triples(docs["conflict"]) == [] and report["dropped"]["conflicting_relations"] == 2


def test_rule_declared_conflicts_and_symmetric_from_rules_file(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"conflicts": [["founded by", "P159"]], "symmetric": ["P155"]}))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "c", "text": "Alpha Season came before Beta Season."})
                      + "\n")
    docs, report = run(tmp_path, corpus=corpus, rules=rules)
    # declared symmetric: no contradiction any more, one direction kept
    assert triples(docs["c"]) == [("Alpha Season", "follows", "P155", "Beta Season")]
    assert report["dropped"]["symmetric_duplicate"] == 1
    assert report["kb"]["symmetric_relations"] == ["P26", "P155", "P460"]


def test_rule_user_drop_rule(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"drop": [
        {"name": "teams-have-no-sport", "relation": "sport", "head_type": "sports team"},
        {"name": "no-years", "sentence": "\\b1[0-9]{3}\\b"}]}))
    docs, report = run(tmp_path, rules=rules)
    assert triples(docs["self"]) == []
    assert triples(docs["spouse"]) == []  # the sentence names 1989
    assert report["dropped"]["user:teams-have-no-sport"] == 1
    assert report["dropped"]["user:no-years"] == 1
    assert triples(docs["coherence"])  # untouched


def test_rule_not_in_schema(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"name": "teams", "language": "en", "relation_types": [
        {"name": "plays for", "label": "P54"}, {"name": "capital of"}]}))
    docs, report = run(tmp_path, schema=str(schema))
    assert triples(docs["coherence"]) == [("Jordan", "plays for", "P54", "Chicago Bulls")]
    assert triples(docs["country"]) == [("Amman", "capital of", "P1376", "Jordan")]
    assert triples(docs["two-sentences"]) == []
    assert report["dropped"]["not_in_schema"] == 11  # filtered first: 14 candidates - 3
    assert report["triples_per_relation"] == {"capital of": 1, "plays for": 2}


def test_uncertain_link_rule_drops_coin_flips(tmp_path):
    # two "2014" editions, each following its own "2013": nothing tells the pairs apart
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(e) for e in [
        {"id": "A14", "aliases": ["2014"]}, {"id": "A13", "aliases": ["2013"]},
        {"id": "B14", "aliases": ["2014"]}, {"id": "B13", "aliases": ["2013"]}]) + "\n")
    (tmp_path / "t.tsv").write_text("A14\tP155\tA13\nB14\tP155\tB13\n")
    (tmp_path / "r.json").write_text(json.dumps({"P155": ["follows", ""]}))
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "x", "text": "He won in 2013 and 2014."})
                                      + "\n")
    args = [tmp_path / "e.jsonl", tmp_path / "t.tsv", tmp_path / "r.json", tmp_path / "c.jsonl"]
    report = build(*args, tmp_path / "o.jsonl")
    assert report["dropped"]["uncertain_link"] == 1 and report["triples"] == 0
    assert report["links_by"]["tie"] == 2
    report = build(*args, tmp_path / "o.jsonl", config=BuildConfig(drop_uncertain=False))
    assert report["triples"] == 1


# ---- Chinese ----------------------------------------------------------------------------------

def test_chinese_links_and_triples_are_exact(tmp_path):
    docs, report = run(tmp_path, language="zh")
    first = docs["zh-coherence"]
    assert links(first) == [("乔布斯", "Z3", 0), ("苹果", "Z1", 6), ("苹果", "Z1", 9),
                            ("库比蒂诺", "Z4", 16)]
    assert triples(first) == [("苹果", "创办者", "P112", "乔布斯"),
                              ("苹果", "总部位置", "P159", "库比蒂诺")]
    assert links(docs["zh-context"]) == [("苹果", "Z1", 0)]  # the fruit is more popular
    assert triples(docs["zh-river"]) == [("上海", "毗邻水域", "P206", "长江")]
    assert report["sentences"] == 4 and report["links_by"]["context"] == 1
    assert report["links_by"]["coherence"] == 2
    docs, _ = run(tmp_path, language="zh", config=BuildConfig(language="zh", context="none"),
                  name="zh-no-context")
    assert links(docs["zh-context"]) == [("苹果", "Z2", 0)]


# ---- scale: workers and shards -----------------------------------------------------------------

def test_two_workers_write_the_same_output(tmp_path):
    corpus = tmp_path / "big.jsonl"
    lines = (DATA / "en" / "corpus.jsonl").read_text().splitlines()
    with corpus.open("w") as handle:
        for copy in range(30):
            for line in lines:
                doc = json.loads(line)
                handle.write(json.dumps({**doc, "id": f"{doc['id']}-{copy}"}) + "\n")
    one_cfg = BuildConfig(chunk_size=7)
    _, one = run(tmp_path, corpus=corpus, config=one_cfg, name="one")
    _, two = run(tmp_path, corpus=corpus, config=replace(one_cfg, workers=2), name="two")
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    for report in (one, two):
        report.pop("timing"), report.pop("config")
    assert one == two and one["documents"] == 300


def test_shards_partition_the_corpus(tmp_path):
    _, full = run(tmp_path, name="full")
    whole = (tmp_path / "full.jsonl").read_text().splitlines()
    parts = []
    for i in range(3):
        _, report = run(tmp_path, config=BuildConfig(shard=(i, 3)), name=f"s{i}")
        parts.append((tmp_path / f"s{i}.jsonl").read_text().splitlines())
        assert report["config"]["shard"] == f"{i}/3"
    assert [len(p) for p in parts] == [4, 3, 3]
    assert sorted(sum(parts, [])) == sorted(whole)
    assert parts[1][0].startswith('{"id": "context"')  # round-robin: record 1 goes to shard 1


def test_skip_empty_writes_only_documents_with_relations(tmp_path):
    docs, report = run(tmp_path, config=BuildConfig(keep_empty=False))
    assert len(docs) == report["documents_with_relations"] == 6
    assert all(doc["relations"] for doc in docs.values())


@pytest.mark.parametrize("bad", ["schema-without-match"])
def test_schema_matching_nothing_is_an_input_error(tmp_path, bad):
    from kg2instruction.inputs import InputError

    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"name": bad, "language": "en",
                                  "relation_types": [{"name": "unrelated"}]}))
    with pytest.raises(InputError, match="no relation type"):
        run(tmp_path, schema=str(schema))


def test_rules_naming_unknown_relations_are_reported_with_file_and_line(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"drop": [{"name": "typo", "relation": "sprot"}],
                                 "conflicts": [["P54", "P999"]],
                                 "symmetric": ["follows"]}, indent=1))
    _, report = run(tmp_path, rules=rules)
    assert report["input_errors"]["counts"] == {"unknown_relation": 2}
    assert report["input_errors"]["messages"] == [
        f"{rules}:5: $.drop[0].relation: relation 'sprot' is not in the relation inventory; "
        "this part of the rule never applies",
        f"{rules}:11: $.conflicts[0]: relation 'P999' is not in the relation inventory; "
        "this part of the rule never applies"]


@pytest.mark.parametrize(("direction", "dropped"), [("any", 2), ("same", 0), ("opposite", 2)])
def test_rule_declared_conflict_directions(tmp_path, direction, dropped):
    # the KB says "Alpha Season follows Beta Season" and "Beta Season founded by Alpha Season"
    (tmp_path / "e.jsonl").write_text(
        '{"id": "A", "aliases": ["Alpha Season"]}\n{"id": "B", "aliases": ["Beta Season"]}\n')
    (tmp_path / "t.tsv").write_text("A\tP155\tB\nB\tP112\tA\n")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"conflicts": [{"relations": ["follows", "founded by"],
                                                "direction": direction}]}))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "c", "text": "Alpha Season came after Beta Season."})
                      + "\n")
    report = build(tmp_path / "e.jsonl", tmp_path / "t.tsv", DATA / "en" / "relations.json",
                   corpus, tmp_path / "o.jsonl", rules=rules)
    assert report["dropped"]["conflicting_relations"] == dropped
    assert report["triples"] == 2 - dropped


def test_sentence_rules_split_on_chinese_semicolons(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "s", "text": "苹果位于库比蒂诺；乔布斯创办了苹果。"},
                                 ensure_ascii=False) + "\n")
    docs, report = run(tmp_path, language="zh", corpus=corpus)
    assert report["sentences"] == 2
    assert triples(docs["s"]) == [("苹果", "总部位置", "P159", "库比蒂诺"),
                                  ("苹果", "创办者", "P112", "乔布斯")]
