"""Record types shared by every stage: Entity, Relation, Event, Argument, Span, Document.

Offsets are Python ``str`` indices (code points) into ``Document.text``, end exclusive. A mention
that could not be grounded keeps ``start``/``end`` = None. Records are frozen; use
``dataclasses.replace`` to derive new ones. ``from_dict`` validates untrusted JSON once, at the edge,
and raises :class:`RecordError` naming the offending field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from deepke_llm.io import LineError, read_jsonl
from deepke_llm.problems import Problems

__all__ = [
    "Argument",
    "Document",
    "Entity",
    "Event",
    "RecordError",
    "Relation",
    "Span",
    "read_documents",
]


class RecordError(ValueError):
    """A JSON record does not have the shape of a deepke-llm record."""


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
         required: bool = True, default: Any = None) -> Any:
    if not isinstance(data, Mapping):
        raise RecordError(f"{where}: expected an object, got {type(data).__name__}")
    if key not in data or data[key] is None:
        if required:
            raise RecordError(f"{where}: missing field '{key}'")
        return default
    value = data[key]
    # bool is an int subclass; offsets must be real ints
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RecordError(f"{where}.{key}: expected {names}, got {type(value).__name__}")
    return value


def _offsets(data: Mapping[str, Any], where: str) -> tuple[int | None, int | None]:
    start = _get(data, "start", int, where, required=False)
    end = _get(data, "end", int, where, required=False)
    if (start is None) != (end is None):
        raise RecordError(f"{where}: 'start' and 'end' must both be set or both be null")
    if start is not None and not 0 <= start <= end:
        raise RecordError(f"{where}: bad offsets start={start} end={end}")
    return start, end


def _shifted(item: Any, delta: int) -> Any:
    """A span-like record with its offsets moved by ``delta`` (unchanged when ungrounded)."""
    if delta == 0 or item.start is None:
        return item
    return replace(item, start=item.start + delta, end=item.end + delta)


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of text with optional character offsets (event triggers use this)."""

    text: str
    start: int | None = None
    end: int | None = None

    @property
    def grounded(self) -> bool:
        return self.start is not None

    def shifted(self, delta: int) -> Span:
        return _shifted(self, delta)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "span") -> Span:
        start, end = _offsets(data, where)
        return cls(_get(data, "text", str, where), start, end)


@dataclass(frozen=True, slots=True)
class Entity:
    """A typed mention; ``kb_id`` is set when linked to a knowledge base."""

    type: str
    text: str
    start: int | None = None
    end: int | None = None
    kb_id: str | None = None

    @property
    def grounded(self) -> bool:
        return self.start is not None

    def mentions(self) -> tuple[Entity]:
        """The pieces of text this record names (see :meth:`Relation.mentions`)."""
        return (self,)

    def content_key(self) -> tuple[str, ...]:
        """What the record says, without offsets and case (to match copies from two windows)."""
        return (self.type, self.text.casefold())

    def shifted(self, delta: int) -> Entity:
        """This record with every offset moved by ``delta`` (window -> document offsets)."""
        return _shifted(self, delta)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "text": self.text,
                               "start": self.start, "end": self.end}
        if self.kb_id is not None:
            out["kb_id"] = self.kb_id
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "entity") -> Entity:
        start, end = _offsets(data, where)
        return cls(
            type=_get(data, "type", str, where, required=False, default=""),
            text=_get(data, "text", str, where),
            start=start,
            end=end,
            kb_id=_get(data, "kb_id", str, where, required=False),
        )


@dataclass(frozen=True, slots=True)
class Relation:
    """A typed (head, relation, tail) triple; ``kb_relation`` names the KB property it came from."""

    type: str
    head: Entity
    tail: Entity
    kb_relation: str | None = None

    def mentions(self) -> tuple[Entity, Entity]:
        return (self.head, self.tail)

    def content_key(self) -> tuple[str, ...]:
        return (self.type, self.head.text.casefold(), self.tail.text.casefold())

    def shifted(self, delta: int) -> Relation:
        if delta == 0:
            return self
        return replace(self, head=_shifted(self.head, delta), tail=_shifted(self.tail, delta))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "head": self.head.to_dict(),
                               "tail": self.tail.to_dict()}
        if self.kb_relation is not None:
            out["kb_relation"] = self.kb_relation
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "relation") -> Relation:
        return cls(
            type=_get(data, "type", str, where),
            head=Entity.from_dict(_get(data, "head", Mapping, where), f"{where}.head"),
            tail=Entity.from_dict(_get(data, "tail", Mapping, where), f"{where}.tail"),
            kb_relation=_get(data, "kb_relation", str, where, required=False),
        )


@dataclass(frozen=True, slots=True)
class Argument:
    """An event argument: a mention filling ``role``; ``type`` is its entity type when known."""

    role: str
    text: str
    start: int | None = None
    end: int | None = None
    type: str | None = None

    @property
    def grounded(self) -> bool:
        return self.start is not None

    def shifted(self, delta: int) -> Argument:
        return _shifted(self, delta)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "text": self.text,
                               "start": self.start, "end": self.end}
        if self.type is not None:
            out["type"] = self.type
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "argument") -> Argument:
        start, end = _offsets(data, where)
        return cls(
            role=_get(data, "role", str, where),
            text=_get(data, "text", str, where),
            start=start,
            end=end,
            type=_get(data, "type", str, where, required=False),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """An event of ``type`` anchored by ``trigger`` with role-filling ``arguments``."""

    type: str
    trigger: Span
    arguments: tuple[Argument, ...] = ()

    def mentions(self) -> tuple[Span | Argument, ...]:
        return (self.trigger, *self.arguments)

    def content_key(self) -> tuple[str, ...]:
        return (self.type, self.trigger.text.casefold())

    def shifted(self, delta: int) -> Event:
        if delta == 0:
            return self
        return Event(self.type, _shifted(self.trigger, delta),
                     tuple(_shifted(a, delta) for a in self.arguments))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "trigger": self.trigger.to_dict(),
                "arguments": [a.to_dict() for a in self.arguments]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "event") -> Event:
        args = _get(data, "arguments", list, where, required=False, default=[])
        return cls(
            type=_get(data, "type", str, where),
            trigger=Span.from_dict(_get(data, "trigger", Mapping, where), f"{where}.trigger"),
            arguments=tuple(Argument.from_dict(a, f"{where}.arguments[{i}]")
                            for i, a in enumerate(args)),
        )


@dataclass(frozen=True, slots=True)
class Document:
    """One text and everything extracted from (or annotated on) it.

    ``raw_output`` holds model outputs and ``errors`` human-readable problems (parse failures,
    ungrounded mentions, truncation) for prediction files; ``meta`` carries extra keys of the
    input line untouched so that ids and provenance survive a round trip.
    """

    id: str
    text: str
    language: str | None = None
    entities: tuple[Entity, ...] = ()
    relations: tuple[Relation, ...] = ()
    events: tuple[Event, ...] = ()
    raw_output: tuple[str, ...] | None = None
    errors: tuple[str, ...] = ()
    failure: str | None = None
    """Set when the backend could not answer: the document is not finished (writers leave it
    out so that ``--resume`` redoes it)."""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def record_count(self) -> int:
        return len(self.entities) + len(self.relations) + len(self.events)

    def with_errors(self, *errors: str) -> Document:
        return replace(self, errors=self.errors + tuple(errors))

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, Iterator) else value
                for key, value in self.items()}

    def items(self) -> Iterator[tuple[str, Any]]:
        """The record's JSON fields in order; the record lists come as iterators of dicts, so a
        writer can stream a document with millions of mentions (see deepke_llm.io.json_line)."""
        yield "id", self.id
        yield "text", self.text
        if self.language is not None:
            yield "language", self.language
        yield "entities", (e.to_dict() for e in self.entities)
        yield "relations", (r.to_dict() for r in self.relations)
        yield "events", (e.to_dict() for e in self.events)
        if self.raw_output is not None:
            yield "raw_output", list(self.raw_output)
        if self.errors:
            yield "errors", list(self.errors)
        if self.failure is not None:
            yield "failure", self.failure
        # extra keys of the input line last, so the record fields lead each line
        yield from ((k, v) for k, v in self.meta.items() if k not in _DOCUMENT_FIELDS)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "document") -> Document:
        if not isinstance(data, Mapping):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        doc_id = data.get("id")
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str) or not doc_id:
            raise RecordError(f"{where}: missing or empty field 'id'")
        text = _get(data, "text", str, where)
        raw = data.get("raw_output")
        if isinstance(raw, str):
            raw = [raw]
        return cls(
            id=doc_id,
            text=text,
            language=_get(data, "language", str, where, required=False),
            entities=tuple(Entity.from_dict(e, f"{where}.entities[{i}]")
                           for i, e in enumerate(_get(data, "entities", list, where, False, []))),
            relations=tuple(Relation.from_dict(r, f"{where}.relations[{i}]")
                            for i, r in enumerate(_get(data, "relations", list, where, False, []))),
            events=tuple(Event.from_dict(e, f"{where}.events[{i}]")
                         for i, e in enumerate(_get(data, "events", list, where, False, []))),
            raw_output=tuple(str(r) for r in raw) if isinstance(raw, list) else None,
            errors=tuple(str(e) for e in _get(data, "errors", list, where, False, [])),
            failure=_get(data, "failure", str, where, required=False),
            meta={k: v for k, v in data.items() if k not in _DOCUMENT_FIELDS},
        )


_DOCUMENT_FIELDS = frozenset({"id", "text", "language", "entities", "relations", "events",
                              "raw_output", "errors", "failure"})
def read_documents(path: str, errors: list[str] | Problems | None = None) -> Iterator[Document]:
    """Stream Documents from a JSON-lines file.

    A line that cannot be read (:func:`deepke_llm.io.read_jsonl`) or is no valid document raises
    an error naming ``file:line`` unless ``errors`` (a list or an error sink) is given, in which
    case the message is appended and the line skipped.
    """
    lines = read_jsonl(path, None if errors is None else errors.append)
    while True:
        try:
            number, data = next(lines)
        except StopIteration:
            return
        except LineError as exc:  # only without ``errors``: one exception type for callers
            raise RecordError(str(exc)) from None
        try:
            yield Document.from_dict(data, where=f"{path}:{number}")
        except RecordError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
