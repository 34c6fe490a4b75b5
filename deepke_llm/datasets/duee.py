"""DuEE 1.0 JSON lines -> Documents with events.

Each line: ``{"id", "text", "event_list": [{"event_type", "trigger", "trigger_start_index",
"arguments": [{"role", "argument", "argument_start_index"}]}]}`` with character offsets (test
files have no ``event_list``). Every offset is checked: when ``text[start:start+len(mention)]``
is not the mention, the mismatch is reported and the occurrence nearest to the given index is
used; a mention absent from the text keeps null offsets (reported, never dropped).
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

__all__ = ["read_duee"]


def read_duee(path: str | Path, schema: Schema | str | None = None, *,
              errors: MutableSequence[str] | Problems | None = None,
              id_prefix: str | None = None, language: str = "zh") -> Iterator[Document]:
    """Stream Documents with events from a DuEE 1.0 JSON-lines file."""
    path = check_file(path)
    return _documents(path, as_schema(schema), as_problems(errors),
                      id_prefix or default_prefix(path), language)


def _documents(path: str, schema: Schema | None, problems: Problems, prefix: str,
               language: str) -> Iterator[Document]:
    names = EventNames(schema, problems)
    ids = DocumentIds(prefix, problems)
    for number, where, data, text in text_lines(path, "text", problems):
        index = number - 1  # the line, so ids survive fixing or dropping other lines
        event_list = list_field(data, "event_list", where, problems)
        events = [e for j, item in enumerate(event_list)
                  if (e := _event(text, item, f"{where}: event_list[{j}]", names, problems))
                  is not None]
        doc_id, meta = ids.assign(index, data.get("id"), where)
        yield Document(id=doc_id, text=text, language=language, events=tuple(events), meta=meta)


def _event(text: str, item: Any, where: str, names: EventNames,
           problems: Problems) -> Event | None:
    label = item.get("event_type") if isinstance(item, dict) else None
    trigger = item.get("trigger") if isinstance(item, dict) else None
    if not isinstance(label, str) or not isinstance(trigger, str) or not trigger:
        problems.report(f"{where}: needs string 'event_type' and 'trigger'; event skipped")
        return None
    start, end = place_mention(text, trigger, item.get("trigger_start_index"), f"{where}.trigger",
                           problems)
    arguments = []
    raw_arguments = item.get("arguments") or []
    for k, arg in enumerate(raw_arguments if isinstance(raw_arguments, list) else []):
        field = f"{where}.arguments[{k}]"
        role = arg.get("role") if isinstance(arg, dict) else None
        mention = arg.get("argument") if isinstance(arg, dict) else None
        if not isinstance(role, str) or not isinstance(mention, str) or not mention:
            problems.report(f"{field}: needs string 'role' and 'argument'; argument skipped")
            continue
        a_start, a_end = place_mention(text, mention, arg.get("argument_start_index"), field, problems)
        arguments.append(Argument(names.role(label, role, where), mention, a_start, a_end))
    return Event(names(label, where), Span(trigger, start, end), tuple(arguments))
