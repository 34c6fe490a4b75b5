"""FewFC JSON lines (Chinese financial events, CCKS 2020 task 3) -> Documents with events.

Each line: ``{"id", "content", "events": [{"type", "mentions": [{"word", "span": [start, end],
"role"}]}]}`` with character offsets (end exclusive). The mention whose role is ``trigger`` is
the event's trigger; every other mention is an argument with its role label (``sub-org``,
``collateral``...), which a schema maps to its Chinese role name. The offsets given in the file
are checked against the text: when ``content[start:end]`` is not the mention, the mismatch is
reported and the occurrence nearest to ``start`` is used; a mention absent from the text keeps
null offsets (reported, never dropped). An event without a trigger is reported and skipped (an
event record needs one); a second trigger is reported and the first kept. Lines without events are kept (sentences with no event are part of the test sets).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableSequence
from pathlib import Path
from typing import Any

from deepke_llm.records import Argument, Document, Event, Span
from deepke_llm.schema import Schema

from .common import (
    DocumentIds,
    EventNames,
    Problems,
    as_problems,
    as_schema,
    check_file,
    default_prefix,
    list_field,
    place_mention,
    text_lines,
)

__all__ = ["read_fewfc"]

TRIGGER = "trigger"


def read_fewfc(path: str | Path, schema: Schema | str | None = None, *,
               errors: MutableSequence[str] | Problems | None = None,
               id_prefix: str | None = None, language: str = "zh") -> Iterator[Document]:
    """Stream Documents with events from a FewFC JSON-lines file."""
    path = check_file(path)
    return _documents(path, as_schema(schema), as_problems(errors),
                      id_prefix or default_prefix(path), language)


def _documents(path: str, schema: Schema | None, problems: Problems, prefix: str,
               language: str) -> Iterator[Document]:
    names = EventNames(schema, problems)
    ids = DocumentIds(prefix, problems)
    for number, where, data, text in text_lines(path, "content", problems):
        raw_events = list_field(data, "events", where, problems)
        events = [e for j, item in enumerate(raw_events)
                  if (e := _event(text, item, f"{where}: events[{j}]", names, problems))
                  is not None]
        doc_id, meta = ids.assign(number - 1, data.get("id"), where)
        yield Document(id=doc_id, text=text, language=language, events=tuple(events), meta=meta)


def _placed(text: str, mention: dict[str, Any], field: str,
            problems: Problems) -> tuple[int | None, int | None]:
    """The given span when it holds the word, else the nearest occurrence (reported)."""
    word, span = mention["word"], mention.get("span")
    valid = (isinstance(span, list) and len(span) == 2
             and all(isinstance(i, int) and not isinstance(i, bool) for i in span))
    if valid and text[span[0]:span[1]] == word:
        return span[0], span[1]
    return place_mention(text, word, span[0] if valid else None, field, problems)


def _event(text: str, item: Any, where: str, names: EventNames,
           problems: Problems) -> Event | None:
    label = item.get("type") if isinstance(item, dict) else None
    mentions = item.get("mentions") if isinstance(item, dict) else None
    if not isinstance(label, str) or not isinstance(mentions, list):
        problems.report(f"{where}: needs string 'type' and list 'mentions'; event skipped")
        return None
    trigger: Span | None = None
    arguments = []
    for k, mention in enumerate(mentions):
        field = f"{where}.mentions[{k}]"
        role = mention.get("role") if isinstance(mention, dict) else None
        word = mention.get("word") if isinstance(mention, dict) else None
        if not isinstance(role, str) or not isinstance(word, str) or not word:
            problems.report(f"{field}: needs string 'word' and 'role'; mention skipped")
            continue
        start, end = _placed(text, mention, field, problems)
        if role != TRIGGER:
            arguments.append(Argument(names.role(label, role, where), word, start, end))
        elif trigger is None:
            trigger = Span(word, start, end)
        else:
            problems.report(f"{field}: a second trigger {word!r}; kept the first, "
                            f"{trigger.text!r}")
    if trigger is None:
        problems.report(f"{where}: no mention with role 'trigger'; event skipped")
        return None
    return Event(names(label, where), trigger, tuple(arguments))
