"""The shared sentence splitter (deepke_llm.sentences): English, Chinese and mixed text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepke_llm.sentences import sentence_spans, split_sentences


@pytest.mark.parametrize("text, expected", [
    ("Japan won. Syria lost! Why? Nobody knows.", ["Japan won.", "Syria lost!", "Why?", "Nobody knows."]),
    # abbreviations and initials do not end sentences
    ("Mr. Smith met Dr. Jones at 3 p.m. today. It rained.", ["Mr. Smith met Dr. Jones at 3 p.m. today.", "It rained."]),
    ("The U.S. Army hired J. R. Smith. He left.", ["The U.S. Army hired J. R. Smith.", "He left."]),
    ("Dr. Smith met J. R. Tolkien in the U.S. in May. He left! Then (quietly) he went.",
     ["Dr. Smith met J. R. Tolkien in the U.S. in May.", "He left!", "Then (quietly) he went."]),
    ("Cats, dogs, etc. are pets. So are fish, e.g. Goldfish.", ["Cats, dogs, etc. are pets.", "So are fish, e.g. Goldfish."]),
    # decimals and a lower-case continuation are not boundaries
    ("Pi is 3.14 roughly. version 2.0 is out. Done.", ["Pi is 3.14 roughly. version 2.0 is out.", "Done."]),
    # closing quotes / brackets stay with their sentence; opening ones start the next
    ('He said "Stop." Then "Why?" (It was late.) Fine.', ['He said "Stop."', 'Then "Why?"', "(It was late.)", "Fine."]),
    ("Wait... Really?! Yes.", ["Wait...", "Really?!", "Yes."]),
    ("1999 was odd. 2000 was too.", ["1999 was odd.", "2000 was too."]),
    # a semicolon is not a full stop in English
    ("He came; he saw. He won.", ["He came; he saw.", "He won."]),
])
def test_english_sentences(text, expected):
    assert split_sentences(text) == expected
    assert split_sentences(text, "en") == expected


@pytest.mark.parametrize("text, expected", [
    ("今天下雨。明天晴！真的吗？是的；好", ["今天下雨。", "明天晴！", "真的吗？", "是的；", "好"]),
    ("苹果公司位于库比蒂诺；乔布斯创办了它。", ["苹果公司位于库比蒂诺；", "乔布斯创办了它。"]),
    # closing quotes kept with the sentence
    ("他说：“你好。”然后走了。「好！」她答。『行？』", ["他说：“你好。”", "然后走了。", "「好！」", "她答。", "『行？』"]),
    ("乔布斯创办了苹果。“它很成功！”他说\n第二行", ["乔布斯创办了苹果。", "“它很成功！”", "他说", "第二行"]),
    ("（他走了。）然后呢？", ["（他走了。）", "然后呢？"]),
    # ASCII !?; end a Chinese sentence (right after a CJK character), no space needed
    ("快跑!为什么?因为;所以", ["快跑!", "为什么?", "因为;", "所以"]),
    ("第一行\n第二行\r\n\n第三行", ["第一行", "第二行", "第三行"]),
    ("重复的句号。。。结束", ["重复的句号。。。", "结束"]),
])
def test_chinese_sentences(text, expected):
    assert split_sentences(text) == expected
    assert split_sentences(text, "zh") == expected


@pytest.mark.parametrize("text, expected", [
    ("中文句子。English sentence follows. 又一个中文句子！", ["中文句子。", "English sentence follows.", "又一个中文句子！"]),
    ("小米发布了新手机。Apple released a phone. 然后呢？", ["小米发布了新手机。", "Apple released a phone.", "然后呢？"]),
    ("他用Python写代码。It works!很好", ["他用Python写代码。", "It works!", "很好"]),
])
def test_mixed_chinese_english(text, expected):
    assert split_sentences(text) == expected


def test_chinese_mode_ends_on_ascii_marks_after_latin_text():
    text = "他喜欢Python;我也是"
    assert split_sentences(text) == [text]  # mixed rules: after Latin text ";" is English punctuation
    assert split_sentences(text, "zh") == ["他喜欢Python;", "我也是"]


def test_newlines_always_split_and_blank_text_gives_nothing():
    assert split_sentences("a line without stop\nanother one") == ["a line without stop", "another one"]
    assert split_sentences("   \n\t\n") == []
    assert split_sentences("") == []


def test_spans_are_offsets_into_the_original_text():
    text = "  First one.  Second one!\n\n  第三句。 "
    spans = sentence_spans(text)
    assert spans == [(2, 12), (14, 25), (29, 33)]
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one!", "第三句。"]


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="unknown sentence language 'fr'"):
        sentence_spans("x", "fr")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("ab Z.!?;。！？；”」\n\t1你") + ["Mr. ", "e.g. "]), max_size=40).map("".join),
       st.sampled_from([None, "en", "zh"]))
def test_spans_cover_all_non_space_text_in_order(text, language):
    spans = sentence_spans(text, language)
    assert all(s < e for s, e in spans)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False))
    for s, e in spans:
        assert text[s:e] == text[s:e].strip()
        assert "\n" not in text[s:e]
    assert split_sentences(text, language) == [text[s:e] for s, e in spans]
    # nothing but whitespace is lost
    assert "".join("".join(text[s:e] for s, e in spans).split()) == "".join(text.split())


def test_single_letter_abbreviations_do_not_end_sentences():
    from deepke_llm.sentences import split_sentences

    assert split_sentences("See p. 49 for details. Goethe (d. 1832) wrote it.") == [
        "See p. 49 for details.", "Goethe (d. 1832) wrote it."]
    assert split_sentences("Molitor v. Fahsan was decided. J. R. Smith agreed.") == [
        "Molitor v. Fahsan was decided.", "J. R. Smith agreed."]
