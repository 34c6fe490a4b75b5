"""OneIE / TextEE JSON lines (ACE05, ERE, ...) -> Documents.

One sentence (window) per line: ``tokens``, ``entity_mentions`` (``id``, ``entity_type``,
``text``, token ``start``/``end``), ``relation_mentions`` (``relation_type``, two ``arguments``
with ``entity_id`` and role ``Arg-1``/``Arg-2`` = head/tail) and ``event_mentions``
(``event_type``, ``trigger`` with token offsets, ``arguments`` with ``entity_id`` and ``role``).
Arguments are resolved through ``entity_id`` to the entity's offsets and type (TextEE's own
argument ``start``/``end`` are the fallback).

Tokens are joined by single spaces (no spaces when the line says ``"lang": "zh"``), so offsets
are exact whatever the original spacing; ``meta["tokens"]`` holds each token's ``[start, end]``.
The id is ``wnd_id`` (TextEE) or ``sent_id`` (OneIE) when present and unique; ``doc_id`` goes to
``meta``. A mention whose ``text`` disagrees with its tokens is reported; the token span wins.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableSequence
from pathlib import Path
from typing import Any

from deepke_llm.io import read_jsonl
from deepke_llm.records import Argument, Document, Entity, Event, Relation, Span
from deepke_llm.schema import Schema

from .common import (
    DocumentIds,
    EventNames,
    Problems,
    TypeNames,
    as_problems,
    as_schema,
    check_file,
    default_prefix,
    join_tokens,
    list_field,
    token_span,
)

__all__ = ["read_oneie"]


def read_oneie(path: str | Path, schema: Schema | str | None = None, *,
               errors: MutableSequence[str] | Problems | None = None,
               id_prefix: str | None = None, language: str = "en") -> Iterator[Document]:
    """Stream Documents (entities, relations, events) from a OneIE/TextEE JSON-lines file."""
    path = check_file(path)
    return _documents(path, as_schema(schema), as_problems(errors),
                      id_prefix or default_prefix(path), language)


class _Record:
    """One line being converted: its text, token offsets and where to report problems."""

    def __init__(self, where: str, tokens: list[str], language: str, problems: Problems) -> None:
        self.where = where
        self.problems = problems
        self.text, self.offsets = join_tokens(tokens, "" if language == "zh" else " ")

    def span(self, item: Any, field: str) -> tuple[int, int] | None:
        if not isinstance(item, dict):
            self.problems.report(f"{self.where}: {field} must be an object; skipped")
            return None
        span = token_span(self.offsets, item.get("start"), item.get("end"))
        if span is None:
            self.problems.report(f"{self.where}: {field} needs token offsets 0 <= start < end <= "
                                 f"{len(self.offsets)}; skipped")
            return None
        mention = item.get("text")
        found = self.text[span[0]:span[1]]
        if isinstance(mention, str) and "".join(mention.split()) != "".join(found.split()):
            self.problems.report(f"{self.where}: {field}.text {mention!r} differs from its tokens "
                                 f"{found!r}; the tokens are used")
        return span


def _documents(path: str, schema: Schema | None, problems: Problems, prefix: str,
               default_language: str) -> Iterator[Document]:
    entity_names = TypeNames(schema, "ner", problems)
    relation_names = TypeNames(schema, "re", problems)
    event_names = EventNames(schema, problems)
    ids = DocumentIds(prefix, problems)
    for number, data in read_jsonl(path, problems):
        index = number - 1  # the line, so ids survive fixing or dropping other lines
        where = f"{path}:{number}"
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            problems.report(f"{where}: 'tokens' must be a list of strings; line skipped")
            continue
        language = data.get("lang") or data.get("language") or default_language
        record = _Record(where, tokens, language, problems)
        entities: dict[str, Entity] = {}
        ordered: list[Entity] = []
        for j, item in enumerate(_items(data, "entity_mentions", record)):
            span = record.span(item, f"entity_mentions[{j}]")
            label = item.get("entity_type") if span else None
            if span is None or not isinstance(label, str):
                if span is not None:
                    problems.report(f"{where}: entity_mentions[{j}] has no 'entity_type'; skipped")
                continue
            entity = Entity(entity_names(label, where), record.text[span[0]:span[1]], *span)
            ordered.append(entity)
            if isinstance(item.get("id"), str):
                entities[item["id"]] = entity
        relations = [r for j, item in enumerate(_items(data, "relation_mentions", record))
                     if (r := _relation(item, j, entities, record, relation_names)) is not None]
        events = [e for j, item in enumerate(_items(data, "event_mentions", record))
                  if (e := _event(item, j, entities, record, event_names)) is not None]
        original = data.get("wnd_id") or data.get("sent_id")
        doc_id, meta = ids.assign(index, original, where)
        if data.get("doc_id") is not None:
            meta["doc_id"] = data["doc_id"]
        yield Document(id=doc_id, text=record.text, language=language, entities=tuple(ordered),
                       relations=tuple(relations), events=tuple(events),
                       meta={**meta, "tokens": record.offsets})


def _items(data: dict[str, Any], key: str, record: _Record) -> list[Any]:
    return list_field(data, key, record.where, record.problems)


def _relation(item: Any, j: int, entities: dict[str, Entity], record: _Record,
              names: TypeNames) -> Relation | None:
    field = f"relation_mentions[{j}]"
    arguments = item.get("arguments") if isinstance(item, dict) else None
    label = item.get("relation_type") if isinstance(item, dict) else None
    if not isinstance(label, str) or not isinstance(arguments, list) or len(arguments) != 2:
        record.problems.report(f"{record.where}: {field} needs 'relation_type' and two "
                               f"'arguments'; skipped")
        return None
    # Arg-1 is the head; without those roles the listed order decides
    ordered = sorted(arguments, key=lambda a: 0 if isinstance(a, dict) and a.get("role") == "Arg-1"
                     else 1)
    ends = [entities.get(a.get("entity_id")) if isinstance(a, dict) else None for a in ordered]
    if ends[0] is None or ends[1] is None:
        record.problems.report(f"{record.where}: {field}: an argument's 'entity_id' names no "
                               f"entity mention; skipped")
        return None
    return Relation(names(label, record.where), ends[0], ends[1])


def _event(item: Any, j: int, entities: dict[str, Entity], record: _Record,
           names: EventNames) -> Event | None:
    field = f"event_mentions[{j}]"
    label = item.get("event_type") if isinstance(item, dict) else None
    if not isinstance(label, str):
        record.problems.report(f"{record.where}: {field} has no 'event_type'; skipped")
        return None
    span = record.span(item.get("trigger"), f"{field}.trigger")
    if span is None:
        return None
    arguments = []
    for k, arg in enumerate(_items(item, "arguments", record)):
        role = arg.get("role") if isinstance(arg, dict) else None
        if not isinstance(role, str):
            record.problems.report(f"{record.where}: {field}.arguments[{k}] has no 'role'; "
                                   f"skipped")
            continue
        role_name = names.role(label, role, record.where)
        entity = entities.get(arg.get("entity_id"))
        if entity is not None:
            arguments.append(Argument(role_name, entity.text, entity.start, entity.end,
                                      entity.type))
            continue
        arg_span = record.span(arg, f"{field}.arguments[{k}]") if "start" in arg else None
        if arg_span is None:
            text = arg.get("text")
            kept = isinstance(text, str) and bool(text)
            record.problems.report(f"{record.where}: {field}.arguments[{k}]: 'entity_id' names no "
                                   f"entity mention and no offsets are given; "
                                   f"{'kept ungrounded' if kept else 'skipped'}")
            if kept:
                arguments.append(Argument(role_name, text))
            continue
        arguments.append(Argument(role_name, record.text[arg_span[0]:arg_span[1]], *arg_span))
    trigger = Span(record.text[span[0]:span[1]], *span)
    return Event(names(label, record.where), trigger, tuple(arguments))
