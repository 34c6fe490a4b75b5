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


def _json_start(text: str, want: str) -> int:
    """Index of the first ``{``/``[`` (``want`` chooses which may start the value)."""
    positions = [i for i in (text.find(c) for c in want) if i >= 0]
    return min(positions) if positions else -1


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


def _raw_decode(text: str, start: int) -> Any:
    value, _ = _DECODER.raw_decode(text, start)
    return value


def loads_lenient(text: str, want: str = "{[") -> tuple[Any, list[str]]:
    """Parse the first JSON object (or array) in ``text``; never raises.

    Returns ``(value, errors)``. ``value`` is None when nothing usable was found; ``errors`` names
    what was lost (no JSON, an unfinished item dropped); cosmetic repairs (fences, prose around the
    JSON, trailing commas, quotes, punctuation) are silent.
    """
    notes: list[str] = []
    if not isinstance(text, str):
        return None, [f"output is {type(text).__name__}, not text"]
    body = _strip_fences(text)
    start = _json_start(body, want)
    if start < 0:
        body = _normalise_punctuation(body)
        start = _json_start(body, want)
        if start < 0:
            snippet = " ".join(text.split())[:60]
            return None, [f"no JSON found in output: {snippet!r}" if snippet else "empty output"]
    try:
        return _raw_decode(body, start), notes
    except (json.JSONDecodeError, RecursionError):
        pass
    fixed = _normalise_punctuation(body[start:])
    try:
        return _raw_decode(fixed, 0), notes
    except (json.JSONDecodeError, RecursionError):
        pass
    fixed, cut = _drop_open_string(fixed)
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
