"""Sentence splitting rules (English and Chinese) and plain-text / JSONL source reading."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepke_llm.training.corpus import SourceSpec, iter_raw_records, sentence_spans, split_sentences


@pytest.mark.parametrize("text, expected", [
    ("Japan won. Syria lost! Why? Nobody knows.", ["Japan won.", "Syria lost!", "Why?", "Nobody knows."]),
    # abbreviations and initials do not end sentences
    ("Mr. Smith met Dr. Jones at 3 p.m. today. It rained.", ["Mr. Smith met Dr. Jones at 3 p.m. today.", "It rained."]),
    ("The U.S. Army hired J. R. Smith. He left.", ["The U.S. Army hired J. R. Smith.", "He left."]),
    ("Cats, dogs, etc. are pets. So are fish, e.g. Goldfish.", ["Cats, dogs, etc. are pets.", "So are fish, e.g. Goldfish."]),
    # decimals and a lower-case continuation are not boundaries
    ("Pi is 3.14 roughly. version 2.0 is out. Done.", ["Pi is 3.14 roughly. version 2.0 is out.", "Done."]),
    # closing quotes / brackets stay with their sentence; opening ones start the next
    ('He said "Stop." Then "Why?" (It was late.) Fine.', ['He said "Stop."', 'Then "Why?"', "(It was late.)", "Fine."]),
    ("Wait... Really?! Yes.", ["Wait...", "Really?!", "Yes."]),
    ("1999 was odd. 2000 was too.", ["1999 was odd.", "2000 was too."]),
])
def test_english_sentences(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("今天下雨。明天晴！真的吗？是的；好", ["今天下雨。", "明天晴！", "真的吗？", "是的；", "好"]),
    # closing quotes kept with the sentence
    ("他说：“你好。”然后走了。「好！」她答。『行？』", ["他说：“你好。”", "然后走了。", "「好！」", "她答。", "『行？』"]),
    # ASCII !?; end a Chinese sentence (right after a CJK character), no space needed
    ("快跑!为什么?因为;所以", ["快跑!", "为什么?", "因为;", "所以"]),
    ("第一行\n第二行\r\n\n第三行", ["第一行", "第二行", "第三行"]),
    ("小米发布了新手机。Apple released a phone. 然后呢？", ["小米发布了新手机。", "Apple released a phone.", "然后呢？"]),
    ("重复的句号。。。结束", ["重复的句号。。。", "结束"]),
])
def test_chinese_sentences(text, expected):
    assert split_sentences(text) == expected


def test_newlines_always_split_and_blank_text_gives_nothing():
    assert split_sentences("a line without stop\nanother one") == ["a line without stop", "another one"]
    assert split_sentences("   \n\t\n") == []
    assert split_sentences("") == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("ab Z.!?;。！？；”」\n\t1你") + ["Mr. ", "e.g. "]), max_size=40).map("".join))
def test_spans_cover_all_non_space_text_in_order(text):
    spans = sentence_spans(text)
    assert all(s < e for s, e in spans)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False))
    for s, e in spans:
        assert text[s:e] == text[s:e].strip()
        assert "\n" not in text[s:e]
    assert split_sentences(text) == [text[s:e] for s, e in spans]
    # nothing but whitespace is lost
    assert "".join("".join(text[s:e] for s, e in spans).split()) == "".join(text.split())


def test_source_spec_names_and_formats(tmp_path):
    assert SourceSpec.parse("wiki=data/a.jsonl").name == "wiki"
    spec = SourceSpec.parse("data/news.2024.txt.gz")
    assert (spec.name, spec.is_jsonl) == ("news", False)
    assert SourceSpec.parse("x.jsonl.gz").is_jsonl


def test_plain_text_documents_are_paragraphs_or_lines(tmp_path):
    path = tmp_path / "t.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("p1 l1\np1 l2\n\n\np2 l1\n\n")
    spec = SourceSpec.parse(str(path))
    assert list(iter_raw_records(spec)) == [(1, "p1 l1\np1 l2\n"), (5, "p2 l1\n")]
    assert [r for _, r in iter_raw_records(spec, "line")] == ["p1 l1\n", "p1 l2\n", "p2 l1\n"]
