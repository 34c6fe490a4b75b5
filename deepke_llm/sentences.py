"""Sentence splitting for English, Chinese and mixed text: one rule set shared by the package.

Used by corpus preparation (packing cut points) and KG2Instruction (distant supervision per
sentence). ``sentence_spans`` returns character offsets, so callers can map sentences back onto the
original text (and onto tokenizer offsets) without copying or normalising it.

Rules (each covered by tests/test_sentences.py):

- Chinese: 。！？； end a sentence at once (ASCII !?; too when they follow a CJK character);
  repeated marks and closing quotes/brackets (”’」』）…) stay with the sentence they close.
- English: . ! ? (+ closing quotes) end a sentence when followed by whitespace and an upper-case
  letter, digit or opening quote/bracket, by a Chinese character, or by the end of the text; not
  after a known abbreviation (Mr., e.g., Inc., ...) or a single capital (initials, "U.S.").
- A line break always ends a sentence.

Rule based on purpose: pysbd handles more English edge cases but is pure Python and about two
orders of magnitude slower than one compiled regex, which would make the splitter, not the
tokenizer, the bottleneck of corpus preparation; blingfire is fast but has no notion of Chinese
punctuation and its model is opaque; spaCy's sentencizer needs a ``Doc`` per text (an order of
magnitude slower) and is language-specific, whereas these rules handle mixed Chinese/English text.
"""

from __future__ import annotations

import re

Span = tuple[int, int]

LANGUAGES = (None, "en", "zh")

# Closing quotes/brackets that stay with the sentence they close.
_CLOSERS = "\"'”’」』）)》】]»"
_CJK = "\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"
# A period after one of these does not end an English sentence. Single letters (initials,
# "U.S.", "p. 49", "(d. 1832)", "v."; not "a", which ends sentences) have their own rule.
ABBREVIATIONS = (
    "Mr", "Mrs", "Ms", "Dr", "Prof", "Sr", "Jr", "St", "Mt", "Ft", "vs", "etc", "e.g", "i.e", "cf",
    "al", "ca", "Inc", "Ltd", "Co", "Corp", "Bros", "Dept", "Univ", "Assn", "Est", "No", "Nos",
    "Fig", "Figs", "Eq", "Vol", "pp", "Gen", "Gov", "Sen", "Rep", "Rev", "Hon", "Capt", "Cmdr",
    "Adm", "Col", "Lt", "Sgt", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept",
    "Oct", "Nov", "Dec", "approx", "Ph.D", "a.m", "p.m",
)
# checked right after the punctuation mark, so each lookbehind includes it
_NOT_AFTER_ABBREVIATION = "".join(f"(?<!\\b{re.escape(a)}[.!?])" for a in ABBREVIATIONS)
_CLOSE = f"[{re.escape(_CLOSERS)}]*"

_ENGLISH_END = (
    rf"(?<=[.!?]){_NOT_AFTER_ABBREVIATION}(?<!\b[A-Zb-z][.!?])[.!?]*{_CLOSE}"
    r"(?=\s+[\"'“‘(\[]*[A-Z0-9]|\s*[\u3400-\u9fff]|\s*$)"
)


def _compile(ascii_after_cjk_only: bool) -> re.Pattern[str]:
    # In Chinese text ASCII !?; are full stops wherever they occur; in mixed/English text only
    # right after a CJK character (elsewhere "Really?! yes" or "a; b" are English punctuation).
    ascii_stop = rf"(?<=[{_CJK}][!?;])" if ascii_after_cjk_only else r"(?<=[!?;])"
    return re.compile(
        # Every boundary starts with one of these characters; starting the pattern with a
        # character class lets the regex engine skip ahead to candidates.
        r"[。！？；!?;.\r\n]"
        r"(?:"
        rf"(?<=[。！？；])[。！？；!?;]*{_CLOSE}"
        rf"|{ascii_stop}[。！？；!?;]*{_CLOSE}"
        rf"|{_ENGLISH_END}"
        r"|(?<=\r)\n?|(?<=\n)"
        r")"
    )


_SENTENCE_END = {None: _compile(True), "en": _compile(True), "zh": _compile(False)}


def sentence_spans(text: str, language: str | None = None) -> list[Span]:
    """Character spans ``(start, end)`` of the sentences of ``text``, in order.

    Delimiters and closing quotes belong to their sentence; whitespace around a sentence is left
    out, so the spans cover every non-space character exactly once. ``language`` is None (mixed
    Chinese/English, the default), "en" (same rules) or "zh" (ASCII !?; also end a sentence after
    non-CJK characters).
    """
    pattern = _pattern(language)
    spans: list[Span] = []
    start = 0
    for match in pattern.finditer(text):
        _append_trimmed(text, start, match.end(), spans)
        start = match.end()
    _append_trimmed(text, start, len(text), spans)
    return spans


def split_sentences(text: str, language: str | None = None) -> list[str]:
    """The sentences of ``text`` as strings (see :func:`sentence_spans`)."""
    return [text[start:end] for start, end in sentence_spans(text, language)]


def _pattern(language: str | None) -> re.Pattern[str]:
    try:
        return _SENTENCE_END[language]
    except KeyError:
        raise ValueError(f"unknown sentence language {language!r}: use None, 'en' or 'zh'") from None


def _append_trimmed(text: str, start: int, end: int, out: list[Span]) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        offset = start + len(piece) - len(piece.lstrip())
        out.append((offset, offset + len(stripped)))
