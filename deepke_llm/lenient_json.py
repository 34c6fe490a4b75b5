"""Read the JSON a language model meant to write.

Model outputs arrive wrapped in code fences, after a sentence of prose, with trailing commas, single
quotes, Chinese punctuation, or cut off by ``max_new_tokens``. :func:`loads_lenient` never raises:
it returns the value it could recover and a list of notes on what it had to repair.

Strict ``json`` is tried first (cheap and exact); the repair of genuinely malformed text is done by
the ``json_repair`` library. Two steps stay here because no library does them the way extraction
needs: Chinese structural punctuation is only mapped *outside* strings (a mention may contain
"，"), and an output that stops inside a string drops that partial string instead of keeping a
truncated mention.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["loads_lenient"]

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|$)", re.S)
_DECODER = json.JSONDecoder()
# Chinese/full-width punctuation a model may use as JSON syntax
_STRUCTURAL = {"：": ":", "，": ",", "【": "[", "】": "]", "｛": "{", "｝": "}", "［": "[", "］": "]"}
_OPEN_QUOTES = {"“": "”", "‘": "’", "「": "」"}


def _strip_fences(text: str) -> str:
    match = _FENCE.search(text)
    return match.group(1) if match else text


def _normalise_punctuation(text: str) -> str:
    """Map Chinese structural punctuation and curly quotes to JSON syntax outside ASCII strings."""
    out: list[str] = []
    in_string = False
    closing: str | None = None  # set while inside a string opened by a curly quote
    escaped = False
    for ch in text:
        if closing is not None:
            if ch == closing:
                out.append('"')
                closing = None
            elif ch == '"':
                out.append('\\"')
            else:
                out.append(ch)
            continue
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
            out.append(ch)
        elif ch in _OPEN_QUOTES:
            closing = _OPEN_QUOTES[ch]
            out.append('"')
        else:
            out.append(_STRUCTURAL.get(ch, ch))
    return "".join(out)


def _drop_open_string(text: str) -> tuple[str, bool]:
    """Cut an output that ends inside a double-quoted string back to before that string."""
    in_string = False
    escaped = False
    start = -1
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            start = i
    if not in_string:
        return text, False
    head = text[:start].rstrip()
    # a dangling key ("key": or "key",) left by the cut is useless; drop the separator too
    return head.rstrip(",:").rstrip(), True


_OBJECT_START = re.compile(r"\{\s*[\"'“‘}]")


def _top_level_objects(text: str) -> list[int]:
    """Positions of ``{`` that open a JSON-looking object (a quote or ``}`` follows) and are not
    nested inside an earlier, still open one (an inner object of a cut-off answer is no answer)."""
    out = []
    depth = 0
    in_string = False
    escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            if depth == 0 and _OBJECT_START.match(text, i):
                out.append(i)
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
    return out


def _starts(text: str, want: str, limit: int = 16) -> list[int]:
    """Where a value may start: top-level ``{`` positions first (the tasks want an object, and
    prose before the answer may hold brackets), then ``[`` positions before the first ``{``."""
    out = _top_level_objects(text)[:limit] if "{" in want else []
    if "[" in want:
        first_brace = out[0] if out else text.find("{")
        i = text.find("[")
        # a "[" after the first "{" is inside that object, not an answer of its own
        while i >= 0 and len(out) < 2 * limit and (first_brace < 0 or i < first_brace):
            out.append(i)
            i = text.find("[", i + 1)
    return out


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
    what was lost (no JSON, an unfinished item dropped); cosmetic repairs (fences, prose around the
    JSON, trailing commas, quotes, punctuation) are silent.
    """
    notes: list[str] = []
    if not isinstance(text, str):
        return None, [f"output is {type(text).__name__}, not text"]
    body = _strip_fences(text)
    normalised = _normalise_punctuation(body)
    for variant in (body, normalised):
        for start in _starts(variant, want):
            try:
                value = _decode_objects(variant, start)
            except (json.JSONDecodeError, RecursionError):
                continue
            if isinstance(value, dict):
                return value, notes
            # a list is the answer only if it holds objects or no object follows ("see [1]: {...}")
            if isinstance(value, list) and "[" in want and (
                    (value and all(isinstance(v, dict) for v in value)) or "{" not in variant[start:]):
                return value, notes
    # repair from the first object-looking start, else from any bracket at all ({person: [...]})
    starts = _starts(normalised, want, limit=1) or [
        i for i in (normalised.find("{"), normalised.find("[")) if i >= 0][:1]
    if not starts:
        snippet = " ".join(text.split())[:60]
        return None, [f"no JSON found in output: {snippet!r}" if snippet else "empty output"]
    fixed, cut = _drop_open_string(normalised[starts[0]:])
    if cut:
        notes.append("output ends inside a string (truncated?); dropped the unfinished item")
    try:
        import json_repair

        value = json_repair.loads(fixed)
    except Exception as exc:  # noqa: BLE001 - a third-party repairer must not crash parsing
        return None, notes + [f"could not repair JSON ({type(exc).__name__})"]
    if isinstance(value, list) and want == "{" and value and isinstance(value[0], dict):
        value = value[0]
    if value in ("", None) or not isinstance(value, (dict, list)):
        return None, notes + ["could not recover a JSON object from the output"]
    return value, notes
