"""Read the JSON a language model meant to write.

Model outputs arrive wrapped in code fences, after a sentence of prose, with trailing commas, single
quotes, Chinese punctuation, or cut off by ``max_new_tokens``. :func:`loads_lenient` never raises:
it returns the value it could recover and a list of notes on what it had to repair.

Strict ``json`` is tried first (cheap and exact); the repair of genuinely malformed text is done by
the ``json_repair`` library. Steps stay here where no library does them the way extraction needs:
Chinese structural punctuation is only mapped *outside* strings (a mention may contain "，"); an
output that stops inside a string drops that partial string instead of keeping a truncated
mention; a long answer cut off by ``max_new_tokens`` is closed here in one linear pass.

Hostile outputs cannot stall or break a run: numbers beyond Python's int-string limit stay the
digits the model wrote, ``NaN``/``Infinity`` are "no value" (never the mentions "nan"/"inf"),
nesting too deep for the decoder is an error note, and ``json_repair`` (quadratic on some malformed
inputs: 4,000 characters of ``[{ 1}{ 1}...`` take 11 s) reads at most :data:`REPAIR_LIMIT`
characters, with a note saying so.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Iterator
from typing import Any

from deepke_llm.io import replace_surrogates

__all__ = ["REPAIR_LIMIT", "loads_lenient"]

# json_repair's worst inputs grow with the square of their length (measured with 0.64: "[{ 1}"
# repeated to 1,000 characters takes 0.5 s, to 2,000 2.2 s, to 4,000 11 s); answers that need
# more than closing a cut-off (done here at any length) are rarely longer: past the limit, the
# items in its first 1,000 characters are kept
REPAIR_LIMIT = 1_000
# deeper than any answer of the tasks (4 levels) and safely below the decoder's recursion limit
_MAX_DEPTH = 100

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.S)
# a double-quoted string, to its closing quote or, cut off, to the end of the text
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*(?:(?P<closed>")|\\?\Z)'
_STRINGS = re.compile(_STRING, re.S)
_BRACES = re.compile(_STRING + r"|[{}]", re.S)
_BRACKETS = re.compile(_STRING + r"|[{}\[\]]", re.S)
# Chinese/full-width punctuation a model may use as JSON syntax
_STRUCTURAL = {"：": ":", "，": ",", "【": "[", "】": "]", "｛": "{", "｝": "}", "［": "[", "］": "]"}
_OPEN_QUOTES = {"“": "”", "‘": "’", "「": "」"}
_PUNCTUATION = re.compile(
    _STRING + "|" + "|".join(f"{o}[^{c}]*(?:{c}|\\Z)" for o, c in _OPEN_QUOTES.items())
    + "|[" + "".join(_STRUCTURAL) + "]", re.S)
_ANY_PUNCTUATION = re.compile("[" + "".join(_STRUCTURAL) + "".join(_OPEN_QUOTES) + "]")
# NaN / Infinity as values (after "[", "," or ":"), outside strings
_BARE_CONSTANT = re.compile(_STRING + r"|(?<=[\[,:])(?P<space>\s*)-?(?:NaN|Infinity)(?=\s*(?:[,\]}]|\Z))",
                            re.S)
_CLOSERS = {"{": "}", "[": "]"}
# "\ud800" in a JSON string decodes to a lone surrogate, which no UTF-8 writer can write
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _int_or_digits(digits: str) -> int | str:
    """Python refuses int() of more than 4,300 digits (and where that limit is lifted, int() is
    quadratic in them): such a number stays the text written."""
    return int(digits) if len(digits) <= 4300 else digits


def _float_or_text(number: str) -> float | str:
    value = float(number)
    return number if math.isinf(value) else value  # 1e999 stays "1e999", never the mention "inf"


# NaN, Infinity and -Infinity say "no number here": None, never the mentions "nan" or "inf"
_DECODER = json.JSONDecoder(parse_int=_int_or_digits, parse_float=_float_or_text,
                            parse_constant=lambda name: None)


def _strip_fences(text: str) -> str:
    match = _FENCE.search(text)
    return match.group(1) if match else text


def _normalise_punctuation(text: str) -> str:
    """Map Chinese structural punctuation and curly quotes to JSON syntax outside ASCII strings."""
    if not _ANY_PUNCTUATION.search(text):
        return text
    return _PUNCTUATION.sub(_normalised_token, text)


def _normalised_token(match: re.Match[str]) -> str:
    token = match.group()
    first = token[0]
    if first == '"':
        return token
    if first in _OPEN_QUOTES:
        closed = len(token) > 1 and token[-1] == _OPEN_QUOTES[first]
        inner = token[1:-1] if closed else token[1:]
        return '"' + inner.replace('"', '\\"') + ('"' if closed else "")
    return _STRUCTURAL[first]


def _drop_open_string(text: str) -> tuple[str, bool]:
    """Cut an output that ends inside a double-quoted string back to before that string."""
    strings = deque(_STRINGS.finditer(text), maxlen=1)  # only the last string matters
    if not strings or strings[0].group("closed"):
        return text, False
    last = strings[0]
    head = text[:last.start()].rstrip()
    # a dangling key ("key": or "key",) left by the cut is useless; drop the separator too
    return head.rstrip(",:").rstrip(), True


_OBJECT_START = re.compile(r"\{\s*[\"'“‘}]")


def _top_level_objects(text: str) -> Iterator[int]:
    """Positions of ``{`` that open a JSON-looking object (a quote or ``}`` follows) and are not
    nested inside an earlier, still open one (an inner object of a cut-off answer is no answer)."""
    depth = 0
    for match in _BRACES.finditer(text):
        token = match.group()
        if token == "{":
            if depth == 0 and _OBJECT_START.match(text, match.start()):
                yield match.start()
            depth += 1
        elif token == "}":
            depth = max(depth - 1, 0)


def _starts(text: str, want: str, limit: int = 16) -> Iterator[int]:
    """Where a value may start: top-level ``{`` positions first (the tasks want an object, and
    prose before the answer may hold brackets), then ``[`` positions before the first ``{``."""
    count = 0
    first_brace = -1
    if "{" in want:
        for start in _top_level_objects(text):  # lazily: the first start is usually the answer
            if count == limit:
                break
            first_brace = start if count == 0 else first_brace
            count += 1
            yield start
    if "[" in want:
        first_brace = first_brace if first_brace >= 0 else text.find("{")
        i = text.find("[")
        # a "[" after the first "{" is inside that object, not an answer of its own
        while i >= 0 and count < 2 * limit and (first_brace < 0 or i < first_brace):
            count += 1
            yield i
            i = text.find("[", i + 1)


def _decode_objects(text: str, start: int) -> Any:
    """The value at ``start``; when objects follow it (``{...} {...}`` or ``{...}, {...}``), all of
    them as a list, so a model that answered in pieces loses nothing."""
    value, end = _DECODER.raw_decode(text, start)
    if not isinstance(value, dict):
        return value
    values = [value]
    while True:
        i = end
        while i < len(text) and (text[i].isspace() or text[i] == ","):
            i += 1
        if i >= len(text) or text[i] != "{":
            break
        try:
            more, end = _DECODER.raw_decode(text, i)
        except (json.JSONDecodeError, RecursionError):
            break
        if not isinstance(more, dict):
            break
        values.append(more)
    return values[0] if len(values) == 1 else values


def loads_lenient(text: str, want: str = "{[") -> tuple[Any, list[str]]:
    """Parse the JSON object (or array) a model answered with; never raises.

    Returns ``(value, errors)``. ``value`` is None when nothing usable was found; ``errors`` names
    what was lost (no JSON, an unfinished item dropped, a repair cut short); cosmetic repairs
    (fences, prose around the JSON, trailing commas, quotes, punctuation) are silent.
    """
    if not isinstance(text, str):
        return None, [f"output is {type(text).__name__}, not text"]
    value, notes = _loads(text, want)
    if value is not None and _SURROGATE_ESCAPE.search(text):
        value = _without_surrogates(value)
    return value, notes


def _loads(text: str, want: str) -> tuple[Any, list[str]]:
    body = _strip_fences(text)
    normalised = _normalise_punctuation(body)
    normalised = body if normalised == body else normalised
    repair_start = None
    for variant in (body, normalised) if normalised is not body else (body,):
        for start in _starts(variant, want):
            repair_start = start if repair_start is None and variant is normalised else repair_start
            try:
                value = _decode_objects(variant, start)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict):
                return value, []
            # a list is the answer only if it holds objects or no object follows ("see [1]: {...}")
            if isinstance(value, list) and "[" in want and (
                    (value and all(isinstance(v, dict) for v in value)) or "{" not in variant[start:]):
                return value, []
    # repair from the first object-looking start, else from any bracket at all ({person: [...]})
    if repair_start is None:
        found = [i for i in (normalised.find("{"), normalised.find("[")) if i >= 0]
        repair_start = found[0] if found else None
    if repair_start is None:
        snippet = " ".join(text.split(maxsplit=60))[:60]
        return None, [f"no JSON found in output: {snippet!r}" if snippet else "empty output"]
    value, notes = _repair(normalised[repair_start:])
    if isinstance(value, list) and want == "{" and value and isinstance(value[0], dict):
        value = value[0]
    if value in ("", None) or not isinstance(value, (dict, list)):
        return None, notes + ["could not recover a JSON object from the output"]
    return value, notes


def _without_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings and keys replaced by U+FFFD (in place,
    without recursion: the value may nest hundreds deep)."""
    if isinstance(value, str):
        return replace_surrogates(value)
    stack = [value]
    while stack:
        item = stack.pop()
        entries = list(item.items()) if isinstance(item, dict) else list(enumerate(item))
        if isinstance(item, dict):
            item.clear()
        for key, child in entries:
            if isinstance(child, str):
                child = replace_surrogates(child)
            elif isinstance(child, (dict, list)):
                stack.append(child)
            item[replace_surrogates(key) if isinstance(key, str) else key] = child
    return value


def _repair(text: str) -> tuple[Any, list[str]]:
    """The value of malformed JSON ``text`` (which starts at its first bracket), and notes."""
    notes: list[str] = []
    if len(text) > REPAIR_LIMIT:  # too long for json_repair: most likely a cut-off answer
        closed, cut = _close_cut_off(text)
        if cut:
            notes.append("output ends inside a string (truncated?); dropped the unfinished item")
        if closed is not None:
            return closed, notes
        notes.append(f"output is {len(text):,} characters from its first bracket; repaired only "
                     f"the first {REPAIR_LIMIT:,} (the JSON repair is slow on long malformed text)")
        text = text[:REPAIR_LIMIT]
    fixed, cut = _drop_open_string(text)
    if cut and not notes:
        notes.append("output ends inside a string (truncated?); dropped the unfinished item")
    fixed = _BARE_CONSTANT.sub(lambda m: m.group() if m.group()[0] == '"' else m.group("space") + "null",
                               fixed)
    try:
        import json_repair

        return json_repair.loads(fixed), notes
    except Exception as exc:  # noqa: BLE001 - a third-party repairer must not crash parsing
        return None, notes + [f"could not repair JSON ({type(exc).__name__})"]


def _close_cut_off(text: str) -> tuple[Any, bool]:
    """The value of ``text`` read as an answer cut off by the token limit: the unfinished string
    and a dangling key dropped, the open brackets closed (one linear pass, for any length).
    Returns (value or None when that is not what ``text`` is, whether a string was cut)."""
    stack: list[str] = []
    last_string: tuple[int, int] | None = None
    end = len(text)
    cut = False
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token[0] == '"':
            if match.group("closed") is None:
                end, cut = match.start(), True
                break
            last_string = match.span()
        elif token in _CLOSERS:
            stack.append(token)
            if len(stack) > _MAX_DEPTH:
                return None, _ends_in_string(text, match.end())
        elif not stack or _CLOSERS[stack.pop()] != token:
            return None, _ends_in_string(text, match.end())
    head = text[:end].rstrip()
    dangling = head.endswith(":")
    head = head.rstrip(",:").rstrip()
    if stack and stack[-1] == "{" and last_string and last_string[1] == len(head):
        before = head[:last_string[0]].rstrip()
        if dangling or before.endswith(("{", ",")):  # a key without its value
            head = before.rstrip(",").rstrip()
    closed = head + "".join(_CLOSERS[bracket] for bracket in reversed(stack))
    try:
        value, stop = _DECODER.raw_decode(closed)
    except (ValueError, RecursionError):
        return None, cut
    return (value if not closed[stop:].strip() else None), cut


def _ends_in_string(text: str, start: int) -> bool:
    """Does ``text`` end inside a string (scanning from ``start``, outside any string)?"""
    return _drop_open_string(text[start:])[1]
