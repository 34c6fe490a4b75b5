"""KG2Instruction inputs and edges: bad-input counting, sentence splitting, gazetteer matching,
the FewRel adapter and scorer, the Wikidata reader, instructions and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepke_llm.commands.kg2instruction import main
from deepke_llm.problems import Problems
from deepke_llm.sentences import sentence_spans
from kg2instruction.build import build
from kg2instruction.fewrel import detokenize, prepare_fewrel
from kg2instruction.inputs import read_corpus
from kg2instruction.kb import KnowledgeBase
from kg2instruction.mentions import detect_mentions
from kg2instruction.pipeline import BuildConfig
from kg2instruction.sentences import make_splitter
from kg2instruction.wikidata import convert_wikidata

DATA = Path(__file__).parent / "data" / "kg2instruction"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_input_is_counted_with_file_and_line_never_fatal(tmp_path):
    entities = write(tmp_path / "e.jsonl", "\n".join([
        '{"id": "E1", "aliases": ["Ann Lee"]}',
        '{"id": "E2", "aliases": ["Acme"]}',
        '{"id": "E1", "aliases": ["duplicate"]}',
        '{"id": "E3", "aliases": []}',
        '{"id": "E4", "aliases": ["broken"',
        '{"aliases": ["no id"]}',
        '{"id": "E5", "label": "Bolt Works", "aliases": [], "popularity": "high"}',
    ]) + "\n")
    triples = write(tmp_path / "t.tsv", "E1\temployer\tE2\nE1\temployer\tE9\nE1\tP0\tE2\n"
                                        "just two\tcolumns\n\nE1\temployer\tE2\nE3\temployer\tE2\n")
    relations = write(tmp_path / "r.json", json.dumps({"employer": {"name": "employer"},
                                                       "bad": {"description": "no name"}}))
    corpus = write(tmp_path / "c.jsonl", '{"id": "d1", "text": "Ann Lee joined Acme."}\n'
                                         '{"id": "d2", "text": \n'
                                         '{"text": "Acme hired Ann Lee."}\n'
                                         '{"id": "d4", "body": "no text"}\n')
    report = build(entities, triples, relations, corpus, tmp_path / "out.jsonl")
    assert report["input_errors"]["counts"] == {
        "broken_field": 1, "broken_line": 4, "broken_relation": 1, "duplicate_id": 1,
        "duplicate_triple": 1, "empty_aliases": 1, "missing_id": 2, "unknown_entity": 1,
        "unknown_relation": 1}
    messages = report["input_errors"]["messages"]
    assert f"{entities}:3: duplicate entity id 'E1'; line skipped" in messages
    assert any(m.startswith(f"{entities}:5: not valid JSON") for m in messages)
    assert any(m.startswith(f"{entities}:4: entity 'E3' has no aliases") for m in messages)
    assert any(m.startswith(f"{triples}:2: entity 'E9' is not in the KB") for m in messages)
    assert any(m.startswith(f"{triples}:4: expected head, relation and tail") for m in messages)
    assert any(m.startswith(f"{corpus}:2: not valid JSON") for m in messages)
    assert f"{corpus}:3: missing 'id'; using 'line-3'" in messages
    docs = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [d["id"] for d in docs] == ["d1", "line-3"]
    assert [(r["head"]["kb_id"], r["tail"]["kb_id"]) for r in docs[0]["relations"]] == \
        [("E1", "E2")]
    assert report["kb"]["entities"] == 4  # E3 (no alias) stays relatable; E5 uses its label


def test_duplicate_relation_ids_in_an_inventory_object_are_reported(tmp_path):
    from kg2instruction.inputs import read_relations

    path = write(tmp_path / "r.json", '{"P1": {"name": "first"}, "P2": ["other", ""], '
                                      '"P1": {"name": "second"}}')
    issues = Problems()
    assert [(r.id, r.name) for r in read_relations(path, issues)] == [("P1", "first"),
                                                                      ("P2", "other")]
    assert issues.counts == {"duplicate_id": 1}
    listed = write(tmp_path / "l.json", '[{"id": "P1", "name": "x"}, {"id": "P1", "name": "y"}]')
    assert [r.name for r in read_relations(listed, issues)] == ["x"]


def test_plain_text_corpus_gets_line_ids_and_shards(tmp_path):
    corpus = write(tmp_path / "c.txt", "first doc\n\nsecond doc\nthird doc\n")
    issues = Problems()
    assert [(n, r["id"]) for n, r in read_corpus(corpus, issues)] == [
        (1, "line-1"), (3, "line-3"), (4, "line-4")]
    assert [r["id"] for _, r in read_corpus(corpus, issues, (1, 2))] == ["line-3"]


def test_rule_splitter_is_the_shared_one():
    from deepke_llm.sentences import sentence_spans

    text = "苹果公司位于库比蒂诺；乔布斯创办了它。"
    assert [text[s:e] for s, e in sentence_spans(text, "zh")] == ["苹果公司位于库比蒂诺；",
                                                               "乔布斯创办了它。"]
    mixed = "Apple 位于库比蒂诺；it sells phones. Dr. Lee agreed!"
    for language in ("en", "zh"):
        assert make_splitter("rules", language)(mixed) == sentence_spans(mixed, language)


def test_english_rule_splitter_keeps_abbreviations_and_initials():
    text = "Dr. Smith met J. R. Tolkien in the U.S. in May. He left! Then (quietly) he went."
    assert [text[s:e] for s, e in sentence_spans(text, "en")] == [
        "Dr. Smith met J. R. Tolkien in the U.S. in May.", "He left!",
        "Then (quietly) he went."]


def test_chinese_rule_splitter():
    text = "乔布斯创办了苹果。“它很成功！”他说\n第二行"
    assert [text[s:e] for s, e in sentence_spans(text, "zh")] == [
        "乔布斯创办了苹果。", "“它很成功！”", "他说", "第二行"]


def test_spacy_sentencizer_when_installed():
    pytest.importorskip("spacy")
    split = make_splitter("spacy", "en")
    text = "Ann joined Acme. She left in May."
    assert [text[s:e] for s, e in split(text)] == ["Ann joined Acme.", "She left in May."]


def _kb(aliases: dict[str, list[str]], ignore_case: bool = False) -> KnowledgeBase:
    from kg2instruction.inputs import EntityRecord, RelationInfo

    kb = KnowledgeBase([RelationInfo("r", "r")], ignore_case=ignore_case)
    for entity_id, names in aliases.items():
        kb.add_entity(EntityRecord(entity_id, tuple(names)))
    kb.finalize()
    return kb


def test_mentions_respect_word_boundaries_and_prefer_longest():
    kb = _kb({"A": ["Art"], "Y": ["New York"], "T": ["New York Times"], "C": ["苹果"],
              "I": ["iPhone"]})
    text = "Martin read the New York Times; Art liked it. 他买了iPhone和苹果汁。"
    mentions = detect_mentions(text, [(0, len(text))], kb)
    assert [text[m.start:m.end] for m in mentions] == ["New York Times", "Art", "iPhone", "苹果"]
    kb = _kb({"S": ["서울"], "K": ["カメラ"]})  # Korean and kana: no word boundaries either
    text = "서울에서 カメラを買った"
    assert [text[m.start:m.end] for m in detect_mentions(text, [(0, len(text))], kb)] == [
        "서울", "カメラ"]
    kb = _kb({"A": ["art"]}, ignore_case=True)
    assert len(detect_mentions("ART fair", [(0, 8)], kb)) == 1


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


def test_spacy_ner_confirms_and_proposes_mentions(tmp_path):
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": "Steve Jobs"},
                        {"label": "ORG", "pattern": [{"LOWER": "apple"}]}])
    nlp.to_disk(tmp_path / "ner")
    corpus = write(tmp_path / "c.jsonl", json.dumps(
        {"id": "n", "text": "Steve Jobs founded APPLE in Cupertino."}) + "\n")
    base = DATA / "en"
    args = [base / "entities.jsonl", base / "triples.tsv", base / "relations.json", corpus]
    confirm = build(*args, tmp_path / "c.out", config=BuildConfig(
        ner_model=str(tmp_path / "ner"), ner_mode="confirm"))
    # Cupertino is no NER entity here: unconfirmed; "APPLE" is no alias as written
    assert confirm["ner"] == {"entities": 2, "unconfirmed": 1}
    assert confirm["mentions"] == 1 and confirm["triples"] == 0
    propose = build(*args, tmp_path / "p.out", config=BuildConfig(
        ner_model=str(tmp_path / "ner"), ner_mode="propose"))
    assert propose["ner"] == {"entities": 2, "proposed": 1}
    doc = json.loads((tmp_path / "p.out").read_text())
    assert [(e["text"], e["kb_id"]) for e in doc["entities"]] == [
        ("Steve Jobs", "Q7"), ("APPLE", "Q5"), ("Cupertino", "Q8")]
    assert [(r["head"]["text"], r["type"], r["tail"]["text"]) for r in doc["relations"]] == [
        ("APPLE", "founded by", "Steve Jobs"), ("APPLE", "headquarters location", "Cupertino")]


@pytest.mark.slow
def test_embedding_context_scorer_runs_on_a_local_model(tiny_llama_dir):
    from kg2instruction.context import make_context_scorer
    from kg2instruction.inputs import EntityRecord, RelationInfo

    kb = KnowledgeBase([RelationInfo("r", "r")])
    kb.add_entity(EntityRecord("A", ("Apple",), description="company making phones"))
    kb.add_entity(EntityRecord("B", ("Apple",), description="fruit of a tree"))
    kb.finalize()
    scorer = make_context_scorer(str(tiny_llama_dir), kb, "en")
    scores = scorer.scores("Apple sells phones.", "Apple", [0, 1])
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    assert scorer.scores("Apple sells phones.", "Apple", [1, 0]) == pytest.approx(scores[::-1])


def test_unknown_context_kind_is_an_input_error():
    from kg2instruction.context import make_context_scorer
    from kg2instruction.inputs import InputError

    with pytest.raises(InputError, match="tfidf, none, minilm"):
        make_context_scorer("no-such-model-dir", _kb({"A": ["a"]}), "en")
