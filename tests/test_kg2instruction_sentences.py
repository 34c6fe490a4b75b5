"""KG2Instruction sentence splitting: the shared rule splitter (English, Chinese) and spaCy's sentencizer."""

from __future__ import annotations

import pytest

from deepke_llm.sentences import sentence_spans
from kg2instruction.sentences import make_splitter


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
