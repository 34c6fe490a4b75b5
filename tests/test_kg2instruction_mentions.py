"""KG2Instruction mention detection: alias gazetteer matching with word boundaries, longest match first, CJK without word boundaries."""

from __future__ import annotations

from kg2instruction_helpers import tiny_kb

from kg2instruction.mentions import detect_mentions


def test_mentions_respect_word_boundaries_and_prefer_longest():
    kb = tiny_kb({"A": ["Art"], "Y": ["New York"], "T": ["New York Times"], "C": ["苹果"],
              "I": ["iPhone"]})
    text = "Martin read the New York Times; Art liked it. 他买了iPhone和苹果汁。"
    mentions = detect_mentions(text, [(0, len(text))], kb)
    assert [text[m.start:m.end] for m in mentions] == ["New York Times", "Art", "iPhone", "苹果"]
    kb = tiny_kb({"S": ["서울"], "K": ["カメラ"]})  # Korean and kana: no word boundaries either
    text = "서울에서 カメラを買った"
    assert [text[m.start:m.end] for m in detect_mentions(text, [(0, len(text))], kb)] == [
        "서울", "カメラ"]
    kb = tiny_kb({"A": ["art"]}, ignore_case=True)
    assert len(detect_mentions("ART fair", [(0, 8)], kb)) == 1
