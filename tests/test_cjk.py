"""CJK script classification (regex Unicode properties): the characters the old block list held,
kana marks inside kana words, and what the properties add (々, jamo, half-width kana, new
ideograph extensions); punctuation is wide but never part of a CJK run."""

from __future__ import annotations

import random
import unicodedata

from deepke_llm.cjk import CJK_RUN, count_wide, is_cjk, is_wide

# the hand-listed blocks the properties replaced: kana, ext. A, unified, Hangul syllables,
# compatibility and supplementary ideographs
OLD_BLOCKS = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF),
              (0xF900, 0xFAFF), (0x20000, 0x2FA1F))


def test_every_assigned_character_of_the_old_blocks_is_still_cjk():
    # only unassigned code points of those blocks left the class
    for first, last in OLD_BLOCKS:
        for code in range(first, last + 1):
            if unicodedata.category(chr(code)) != "Cn":
                assert is_cjk(chr(code)), f"U+{code:04X}"


def test_scripts_and_kana_marks_are_cjk():
    for char in ("中", "國", "ひ", "カ", "ー", "・", "\u3099", "한", "\U00020000",
                 # added by the script properties: iteration mark, ideographic zero, Hangul
                 # jamo (conjoining and compatibility), half-width katakana, ext. G
                 "々", "〇", "\u1100", "ㄱ", "ｱ", "\U00030000"):
        assert is_cjk(char) and is_wide(char), repr(char)
    for char in ("a", "1", "é", "Ω", "٣", " ", "。", "「", "Ａ", "\u3000", "_"):
        assert not is_cjk(char), repr(char)


def test_cjk_punctuation_and_full_width_forms_are_wide_only():
    for char in ("。", "、", "「", "」", "\u3000", "Ａ", "１", "！"):
        assert is_wide(char) and not is_cjk(char), repr(char)
    assert not is_wide("a") and not is_wide("!")


def test_runs_keep_kana_words_whole_and_stop_at_punctuation_and_latin():
    assert CJK_RUN.findall("コーヒー・カップ") == ["コーヒー・カップ"]
    assert CJK_RUN.findall("カ\u3099ラス") == ["カ\u3099ラス"]  # decomposed ガ
    assert CJK_RUN.findall("中文English日本語 한국어") == ["中文", "日本語", "한국어"]
    assert CJK_RUN.findall("你好。世界，佐々木") == ["你好", "世界", "佐々木"]
    assert CJK_RUN.fullmatch("abc") is None


def test_count_wide_counts_what_is_wide_over_all_planes():
    rng = random.Random(0)
    text = "".join(chr(rng.randrange(0x110000)) for _ in range(20_000))
    text += "北京大学，東京タワー、서울 ＩＢＭ ok"
    assert count_wide(text) == sum(map(is_wide, text))
    assert count_wide("") == 0 and count_wide("plain ascii") == 0


def test_language_is_detected_from_letters_and_undecided_without_any():
    from deepke_llm.cjk import detect_language, document_language

    assert detect_language("张三在北京工作。") == "zh"
    assert detect_language("Zhang San works in Beijing 北京.") == "en"  # 2 of 24 letters
    assert detect_language("1999 - 2024") is None and detect_language("") is None
    assert document_language("张三", schema_language="en") == "zh"
    assert document_language("张三", declared="en") == "en"
    assert document_language("张三", option="en", declared="zh") == "en"
    assert document_language("42", schema_language="zh") == "zh"
