"""The ``deepke_llm`` spaCy component: entities as doc.ents / doc.spans, relations and events as
Spans in extensions, ungrounded mentions kept, nlp.pipe batching, to_disk / spacy.load through
the entry point, English and Chinese blank pipelines, and the tiny local model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import spacy
from fake_server import knowledge_answer, rule_server
from spacy.tokens import Doc, Span

TEXT = "Alice Smith works for Acme Corp in Paris."
KNOWLEDGE = {
    # "Alice" overlaps "Alice Smith"; "Zed Unknown" is not in the text (an ungrounded mention)
    "person": ["Alice Smith", "Alice", "Zed Unknown"], "organization": ["Acme Corp"],
    "location": ["Paris"],
    "work for": [{"subject": "Alice Smith", "object": "Acme Corp"},
                 {"subject": "Zed Unknown", "object": "Acme Corp"}],
    "人物": ["张三"], "地理位置": ["北京"], "组织机构": ["清华大学"],
    "财经/交易-出售/收购": [{"trigger": "收购", "arguments": {
        "收购方": "腾讯", "交易物": "搜狗", "时间": "2020年", "出售方": "NAN"}}],
}


@pytest.fixture(scope="module")
def server():
    with rule_server(answer=knowledge_answer(KNOWLEDGE, keep_absent=True)) as (url, srv):
        yield url, srv


def pipeline(lang: str, url: str, **config):
    nlp = spacy.blank(lang)
    nlp.add_pipe("deepke_llm", config={"base_url": url, "api_model": "scripted", **config})
    return nlp


def test_entities_become_ents_and_all_overlapping_ones_spans(server):
    nlp = pipeline("en", server[0], task="ner", schema="conll03")
    doc = nlp(TEXT)
    assert [(e.text, e.label_, e.start_char, e.end_char) for e in doc.ents] == [
        ("Alice Smith", "person", 0, 11), ("Acme Corp", "organization", 22, 31),
        ("Paris", "location", 35, 40)]
    assert sorted((s.text, s.label_, s.start_char) for s in doc.spans["deepke_llm"]) == [
        ("Acme Corp", "organization", 22), ("Alice", "person", 0),
        ("Alice Smith", "person", 0), ("Paris", "location", 35)]
    record = doc._.deepke_llm["ner"]
    # the mention the text does not contain is kept, without offsets, and reported
    assert {"type": "person", "text": "Zed Unknown", "start": None, "end": None} in \
        record["entities"]
    assert any("Zed Unknown" in e for e in record["errors"])


def test_dataset_labels_and_bad_config(server):
    nlp = pipeline("en", server[0], task="ner", schema="conll03", use_labels=True)
    assert [e.label_ for e in nlp(TEXT).ents] == ["PER", "ORG", "LOC"]
    with pytest.raises(ValueError, match="unknown schema 'nosuch'"):
        pipeline("en", server[0], schema="nosuch")
    with pytest.raises(ValueError, match="has no relation"):
        pipeline("en", server[0], task="re", schema="conll03")


def test_relations_are_spans_and_ungrounded_heads_are_kept(server):
    doc = pipeline("en", server[0], task="re", schema="conll04")(TEXT)
    grounded, ungrounded = doc._.relations
    assert grounded["type"] == "work for"
    assert isinstance(grounded["head"], Span) and isinstance(grounded["tail"], Span)
    assert (grounded["head"].text, grounded["head"].label_, grounded["head"].start_char) == \
        ("Alice Smith", "person", 0)
    assert (grounded["tail"].text, grounded["tail"].label_, grounded["tail"].start_char) == \
        ("Acme Corp", "organization", 22)
    assert ungrounded["head"] is None and ungrounded["tail"].text == "Acme Corp"
    assert ungrounded["record"]["head"] == {"type": "person", "text": "Zed Unknown",
                                            "start": None, "end": None}
    assert doc.ents == ()  # an RE component leaves doc.ents alone
    # what nlp.pipe(n_process=N) and DocBin do: the Doc as bytes and back keeps the relations
    restored = Doc(doc.vocab).from_bytes(doc.to_bytes())
    assert [(r["type"], r["head"] and r["head"].text, r["tail"].text, r["tail"].start_char)
            for r in restored._.relations] == [("work for", "Alice Smith", "Acme Corp", 22),
                                                ("work for", None, "Acme Corp", 22)]


def test_chinese_entities_and_events_on_a_blank_zh_pipeline(server):
    text = "2020年，腾讯在北京收购了搜狗，张三来自清华大学。"
    doc = pipeline("zh", server[0], task="ner", schema="peoples_daily")(text)
    assert [(e.text, e.label_, e.start_char) for e in doc.ents] == [
        ("北京", "地理位置", text.index("北京")), ("张三", "人物", text.index("张三")),
        ("清华大学", "组织机构", text.index("清华大学"))]
    doc = pipeline("zh", server[0], task="ee", schema="duee")(text)
    (event,) = doc._.events
    assert event["type"] == "财经/交易-出售/收购"
    assert (event["trigger"].text, event["trigger"].start_char) == ("收购", text.index("收购"))
    arguments = {a["role"]: (a["span"].text, a["span"].start_char, a["span"].label_)
                 for a in event["arguments"]}
    assert arguments == {"收购方": ("腾讯", text.index("腾讯"), "收购方"),
                         "交易物": ("搜狗", text.index("搜狗"), "交易物"),
                         "时间": ("2020年", 0, "时间")}
    assert doc._.deepke_llm["ee"]["language"] == "zh"
    restored = Doc(doc.vocab).from_bytes(doc.to_bytes())
    assert restored._.events[0]["trigger"].text == "收购" and restored.ents == doc.ents


def test_nlp_pipe_sends_each_batch_through_one_extractor_run(server):
    url, srv = server
    nlp = pipeline("en", url, task="ner", schema="conll03", batch_size=4)
    component = nlp.get_pipe("deepke_llm")
    calls: list[int] = []
    generate = component.backend.generate

    def counting(prompts, config, **options):
        calls.append(len(prompts))
        return generate(prompts, config, **options)

    component.backend.generate = counting
    texts = [f"Alice Smith visited Paris on day {i}." for i in range(10)]
    before = len(srv.requests)
    docs = list(nlp.pipe(texts, batch_size=10))
    # conll03's 4 types are one prompt per document: 10 prompts in calls of 4, not 10 calls
    assert calls == [4, 4, 2] and len(srv.requests) - before == 10
    assert [d.text for d in docs] == texts
    assert all([e.text for e in d.ents] == ["Alice Smith", "Paris"] for d in docs)
    calls.clear()
    for text in texts[:3]:
        nlp(text)
    assert calls == [1, 1, 1]


def test_to_disk_and_spacy_load_restore_the_component_in_a_fresh_process(server, tmp_path):
    url, _ = server
    nlp = pipeline("en", url, task="re", schema="conll04", max_new_tokens=64, batch_size=2)
    nlp.to_disk(tmp_path / "pipeline")
    # a fresh interpreter that never imports deepke_llm: spaCy finds the factory through the
    # package's entry point
    script = textwrap.dedent(f"""
        import json, sys, spacy
        nlp = spacy.load({str(tmp_path / "pipeline")!r})
        assert "deepke_llm.spacy" in sys.modules
        doc = nlp({TEXT!r})
        print(json.dumps({{"cfg": nlp.get_pipe("deepke_llm").cfg,
                          "relations": [[r["head"] and r["head"].text, r["tail"].text]
                                        for r in doc._.relations]}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["cfg"] == nlp.get_pipe("deepke_llm").cfg
    assert result["cfg"]["base_url"] == url and result["cfg"]["max_new_tokens"] == 64
    assert result["relations"] == [["Alice Smith", "Acme Corp"], [None, "Acme Corp"]]


def test_tiny_local_model_through_the_component(tiny_llama_dir, one_torch_thread):
    from deepke_llm.backends.base import GenerationConfig
    from deepke_llm.extractor import Extractor
    from deepke_llm.records import Document

    nlp = spacy.blank("en")
    nlp.add_pipe("deepke_llm", config={"task": "ner", "schema": "conll03",
                                       "model": str(tiny_llama_dir), "engine": "hf",
                                       "max_new_tokens": 12})
    texts = ["Alice went to Paris.", "Bob works in Rome."]
    docs = list(nlp.pipe(texts))
    component = nlp.get_pipe("deepke_llm")
    assert type(component.backend).__name__ == "HFBackend"
    expected = Extractor(component.backend, "conll03", "ner",
                         generation=GenerationConfig(max_new_tokens=12)).extract(
        [Document(id=f"x{i}", text=t, language="en") for i, t in enumerate(texts)])
    for doc, want in zip(docs, expected, strict=True):
        record = doc._.deepke_llm["ner"]
        assert record["raw_output"] == list(want.raw_output)
        assert record["entities"] == [e.to_dict() for e in want.entities]
        assert {(s.start_char, s.end_char) for s in doc.spans["deepke_llm"]} >= {
            (e.start, e.end) for e in want.entities
            if e.start is not None and doc.text[e.start:e.end].strip() == e.text}
