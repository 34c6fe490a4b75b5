"""Scripts written without spaces between words (Chinese, Japanese kana, Korean syllables).

The one definition for word-boundary tests (grounding, the KG2Instruction gazetteer: a CJK mention
may start anywhere), language detection, token estimates and the context scorer's tokens (CJK runs
become character unigrams and bigrams instead of words).

A CJK character is one of the Han, Hiragana, Katakana or Hangul scripts (Unicode properties through
the ``regex`` module, so new ideograph extensions come with its Unicode data), plus the rest of the
Hiragana and Katakana blocks: the prolonged sound mark ー, the middle dot ・ and the voiced sound
marks belong to no one script (Common/Inherited) but sit inside kana words.
"""

from __future__ import annotations

from functools import lru_cache

import regex

_CJK_CLASS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Block=Hiragana}\p{Block=Katakana}"
CJK_RUN = regex.compile(f"[{_CJK_CLASS}]+")
_CJK = regex.compile(f"[{_CJK_CLASS}]")
# CJK punctuation (、。「」) and full-width forms take a token each too, roughly
_WIDE_CLASS = (_CJK_CLASS + r"\p{Block=CJK_Symbols_And_Punctuation}"
               r"\p{Block=Halfwidth_And_Fullwidth_Forms}")
_WIDE = regex.compile(f"[{_WIDE_CLASS}]")
_WIDE_RUN = regex.compile(f"[{_WIDE_CLASS}]+")


@lru_cache(maxsize=8192)  # runs per gazetteer match and per letter: a dict hit beats a regex call
def is_cjk(char: str) -> bool:
    """True for a character of a CJK script (see the module doc)."""
    return _CJK.match(char) is not None


def is_wide(char: str) -> bool:
    """CJK characters plus CJK punctuation and full-width forms (a token each, roughly)."""
    return _WIDE.match(char) is not None


def count_wide(text: str) -> int:
    """How many characters of ``text`` are :func:`is_wide` (one regex pass, not a Python loop)."""
    # whole runs, not single characters: a third of the per-match work on Chinese text
    return sum(map(len, _WIDE_RUN.findall(text)))


# enough text to tell the script apart; a 50 MB document is not read letter by letter
_DETECTION_SAMPLE = 20_000


def detect_language(text: str) -> str | None:
    """``zh`` when CJK characters make up a fifth of the letters (of the first 20,000
    characters), ``en`` when there are letters, None when there are none."""
    letters = [ch for ch in text[:_DETECTION_SAMPLE] if ch.isalpha()]
    if not letters:
        return None
    return "zh" if sum(map(is_cjk, letters)) / len(letters) >= 0.2 else "en"


def document_language(text: str, option: str | None = None, declared: str | None = None,
                      schema_language: str = "en") -> str:
    """The language a document is read in (``extract`` and ``parse`` alike): the explicit
    option, else the document's own ``language`` field, else detected from its text, else the
    schema's language."""
    return option or declared or detect_language(text) or schema_language
