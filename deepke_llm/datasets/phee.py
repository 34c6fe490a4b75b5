"""PHEE JSON lines (English pharmacovigilance events) -> Documents with flat event roles.

Each line: ``{"id", "context", "is_mult_event", "annotations": [{"events": [{"event_type",
"Trigger": M, "Subject": M, "Treatment": M, "Effect": M, "Speculated": M, ...}]}]}`` where a
mention group ``M`` is ``{"text": [[piece, ...], ...], "start": [[offset, ...], ...]}`` (one inner
list per mention; several pieces make one discontinuous mention) and a main argument holds its
sub-arguments as nested groups (``Treatment: {..., "Drug": M, "Dosage": M}``).

How the nesting becomes flat roles (schema ``phee``):

* main arguments keep their role: ``Subject`` -> ``subject``, ``Treatment`` -> ``treatment``,
  ``Effect`` -> ``effect``;
* sub-arguments become roles of their own, labelled ``Main.Sub`` (``Treatment.Drug`` -> ``drug``,
  ``Subject.Age`` -> ``age``, ``Treatment.Disorder`` -> ``treatment disorder``, ``Subject.Disorder``
  -> ``subject disorder``); they are what pharmacovigilance wants (drug, dosage, patient age) and
  are text spans like the main arguments;
* ``Treatment.Combination`` (a nested event whose trigger is a word such as "concomitant" and
  whose arguments repeat the treatment's drugs) is dropped: its drugs are already ``drug``
  arguments and the remaining cue word is not a span role of the outer event;
* the attributes ``Speculated``, ``Negated`` and ``Severity`` (an event-level value with a cue
  word: ``{"text": [["probable"]], "value": true}``) are not roles either: the benchmark scores
  spans, and a cue word is not an argument. They are kept in ``meta["attributes"]``, one entry per
  event: ``{"Severity": {"value": "High", "text": "Severe", "start": 0}}`` (``{}`` if none).

A discontinuous mention becomes one argument per piece (same role); every offset is checked
against the text (a mismatch is reported and the nearest occurrence used, as for DuEE). Ids are
the dataset's ``id`` (``PMID_n``).
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
    place_mention,
    text_lines,
)

__all__ = ["ATTRIBUTES", "read_phee"]

#: event-level attributes: kept in ``meta["attributes"]``, not as roles
ATTRIBUTES = ("Speculated", "Negated", "Severity")
_NOT_ARGUMENTS = {"event_id", "event_type", "Trigger", *ATTRIBUTES}
_GROUP_KEYS = {"text", "start", "entity_id", "value"}
_DROPPED = {"Combination"}  # nested events (see the module doc)


def read_phee(path: str | Path, schema: Schema | str | None = None, *,
              errors: MutableSequence[str] | Problems | None = None,
              id_prefix: str | None = None, language: str = "en") -> Iterator[Document]:
    """Stream Documents with flat-role events from a PHEE JSON-lines file."""
    path = check_file(path)
    return _documents(path, as_schema(schema), as_problems(errors),
                      id_prefix or default_prefix(path), language)


def _documents(path: str, schema: Schema | None, problems: Problems, prefix: str,
               language: str) -> Iterator[Document]:
    names = EventNames(schema, problems)
    ids = DocumentIds(prefix, problems)
    for number, where, data, text in text_lines(path, "context", problems):
        raw_events = _first_annotation(data.get("annotations"), where, problems)
        events: list[Event] = []
        attributes: list[dict[str, Any]] = []
        for j, item in enumerate(raw_events):
            event = _event(text, item, f"{where}: events[{j}]", names, problems)
            if event is not None:
                events.append(event)
                attributes.append(_attributes(item))
        doc_id, meta = ids.assign(number - 1, data.get("id"), where)
        if any(attributes):
            meta["attributes"] = attributes
        yield Document(id=doc_id, text=text, language=language, events=tuple(events), meta=meta)


def _first_annotation(annotations: Any, where: str, problems: Problems) -> list[Any]:
    if not annotations:
        return []
    if not isinstance(annotations, list) or not isinstance(annotations[0], dict) \
            or not isinstance(annotations[0].get("events", []), list):
        problems.report(f"{where}: 'annotations' must be [{{\"events\": [...]}}]; ignored")
        return []
    if len(annotations) > 1:
        problems.report(f"{where}: {len(annotations)} annotation sets; read the first")
    return annotations[0].get("events", [])


def _pieces(text: str, group: Any, field: str, problems: Problems) -> list[Span]:
    """Every piece of every mention of a group, placed in ``text``."""
    texts = group.get("text") if isinstance(group, dict) else None
    starts = group.get("start") if isinstance(group, dict) else None
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        problems.report(f"{field}: needs 'text' and 'start' lists of one length; skipped")
        return []
    out = []
    for k, (pieces, offsets) in enumerate(zip(texts, starts, strict=True)):
        pieces = pieces if isinstance(pieces, list) else [pieces]
        offsets = offsets if isinstance(offsets, list) else [offsets]
        for n, piece in enumerate(pieces):
            if not isinstance(piece, str) or not piece:
                problems.report(f"{field}.text[{k}][{n}]: not a string; piece skipped")
                continue
            hint = offsets[n] if n < len(offsets) else None
            out.append(Span(piece, *place_mention(text, piece, hint, f"{field}.text[{k}]",
                                                  problems)))
    return out


def _event(text: str, item: Any, where: str, names: EventNames,
           problems: Problems) -> Event | None:
    label = item.get("event_type") if isinstance(item, dict) else None
    if not isinstance(label, str):
        problems.report(f"{where}: needs a string 'event_type'; event skipped")
        return None
    triggers = _pieces(text, item.get("Trigger"), f"{where}.Trigger", problems)
    if not triggers:
        problems.report(f"{where}: no trigger; event skipped")
        return None
    if len(triggers) > 1:
        problems.report(f"{where}.Trigger: {len(triggers)} pieces; kept the first, "
                        f"{triggers[0].text!r}")
    arguments: list[Argument] = []

    def add(role_label: str, group: Any) -> None:
        role = names.role(label, role_label, where)
        for span in _pieces(text, group, f"{where}.{role_label}", problems):
            arguments.append(Argument(role, span.text, span.start, span.end))

    for key, group in item.items():
        if key in _NOT_ARGUMENTS:
            continue
        add(key, group)
        for sub, nested in (group.items() if isinstance(group, dict) else ()):
            if sub not in _GROUP_KEYS and sub not in _DROPPED:
                add(f"{key}.{sub}", nested)
    return Event(names(label, where), triggers[0], tuple(arguments))


def _attributes(item: dict[str, Any]) -> dict[str, Any]:
    """``{attribute: {"value", "text", "start"}}`` of one event (first cue word only)."""
    out = {}
    for key in ATTRIBUTES:
        group = item.get(key)
        if not isinstance(group, dict):
            continue
        texts, starts = group.get("text") or [[None]], group.get("start") or [[None]]
        first = texts[0][0] if isinstance(texts[0], list) and texts[0] else None
        start = starts[0][0] if isinstance(starts[0], list) and starts[0] else None
        out[key] = {"value": group.get("value"), "text": first, "start": start}
    return out
