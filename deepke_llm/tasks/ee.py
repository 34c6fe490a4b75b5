"""Event extraction: schema items, IEPile output, parsers (iepile, knowlm), gold labels.

IEPile schema item: ``{"event_type": "attack", "trigger": true, "arguments": ["attacker", ...]}``;
output: ``{"attack": [{"trigger": "fired", "arguments": {"attacker": "troops", "place": "NAN"}}]}``
(``"NAN"`` = absent; a role may hold a list). KnowLM output: one
``(trigger,event type,argument#role;argument#role)`` per line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deepke_llm.lenient_json import loads_lenient
from deepke_llm.records import Argument, Document, Event, Span
from deepke_llm.schema import EventType, Schema
from deepke_llm.tasks.base import (
    Task,
    as_list,
    as_object,
    as_strings,
    guarded,
    is_empty,
    lookup,
    register_task,
    snippet,
    tuple_lines,
    type_resolver,
    unique,
)

NAN = "NAN"


def _resolve_role(event_type: EventType, shown: str, language: str, schema_language: str):
    shown = shown.strip()
    for role in event_type.roles:
        if shown in (role.display(language, schema_language), role.name, role.label,
                     *role.names.values()):
            return role
    folded = shown.casefold()
    for role in event_type.roles:
        if folded in (role.display(language, schema_language).casefold(), role.name.casefold()):
            return role
    return None


def _role_resolver(language: str, schema_language: str) -> Callable[[EventType, str], Any]:
    """:func:`_resolve_role` remembered for one parse (a long answer repeats its roles)."""
    known: dict[tuple[str, str], Any] = {}

    def resolve(event_type: EventType, shown: str) -> Any:
        key = (event_type.name, shown)
        if key not in known:
            known[key] = _resolve_role(event_type, shown, language, schema_language)
        return known[key]

    return resolve


@register_task
class EETask(Task):
    name = "ee"
    iepile_name = "EE"
    record_field = "events"

    def schema_items(self, schema: Schema, language: str) -> list[dict[str, Any]]:
        return [{"event_type": t.display(language, schema.language), "trigger": True,
                 "arguments": [r.display(language, schema.language) for r in t.roles]}
                for t in schema.types_for("ee")]

    def to_output(self, document: Document, schema: Schema, language: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in schema.types_for("ee"):
            items = []
            for event in sorted(document.events, key=_order):
                if event.type != t.name:
                    continue
                arguments: dict[str, Any] = {}
                for role in t.roles:
                    values = unique(a.text for a in event.arguments if a.role == role.name)
                    shown = role.display(language, schema.language)
                    arguments[shown] = values[0] if len(values) == 1 else (values or NAN)
                items.append({"trigger": event.trigger.text, "arguments": arguments})
            out[t.display(language, schema.language)] = items
        return out

    def to_label(self, document: Document, schema: Schema, language: str) -> list[dict[str, Any]]:
        types = {t.name: t for t in schema.types_for("ee")}
        out = []
        for event in sorted(document.events, key=_order):
            t = types.get(event.type)
            roles = {r.name: r.display(language, schema.language) for r in t.roles} if t else {}
            out.append({"event_type": t.display(language, schema.language) if t else event.type,
                        "event_trigger": event.trigger.text,
                        "arguments": [{"argument": a.text, "role": roles.get(a.role, a.role)}
                                      for a in event.arguments]})
        return out

    @guarded
    def parse_iepile(self, output: str, schema: Schema, language: str) -> tuple[list[Event], list[str]]:
        value, errors = loads_lenient(output, "{[")
        obj = as_object(value)
        if obj is None:
            if value is not None:
                errors.append(f"expected a JSON object keyed by event type, got {type(value).__name__}")
            return [], errors
        events: list[Event] = []
        resolve, role_of = type_resolver(schema, "ee", language), _role_resolver(language, schema.language)
        for key, items in obj.items():
            event_type = resolve(str(key))
            if event_type is None:
                errors.append(f"unknown event type '{snippet(str(key), 200)}' (not in the schema): dropped")
                continue
            for item in as_list(items):
                if not isinstance(item, dict):
                    errors.append(f"event '{key}': expected an object with trigger and arguments, "
                                  f"got {snippet(item)!r}: dropped")
                    continue
                triggers = as_strings(lookup(item, "trigger", "event_trigger", "触发词"))
                if not triggers:
                    errors.append(f"event '{key}': no trigger in {snippet(item)!r}: dropped")
                    continue
                if len(triggers) > 1:
                    errors.append(f"event '{key}': several triggers {snippet(triggers, 200)}; kept "
                                  f"'{snippet(triggers[0], 200)}'")
                arguments = self._arguments(lookup(item, "arguments", "argument", "论元"),
                                            event_type, role_of, errors)
                events.append(Event(event_type.name, Span(triggers[0]), tuple(arguments)))
        return unique(events), errors

    @staticmethod
    def _arguments(value: Any, event_type: EventType, role_of: Callable[[EventType, str], Any],
                   errors: list[str]) -> list[Argument]:
        pairs: list[tuple[str, Any]] = []
        if isinstance(value, dict):
            pairs = [(str(k), v) for k, v in value.items()]
        elif isinstance(value, list):  # [{"argument": ..., "role": ...}] as in IEPile labels
            for item in value:
                if isinstance(item, dict) and lookup(item, "role") is not None:
                    pairs.append((str(lookup(item, "role")), lookup(item, "argument", "text")))
        out: list[Argument] = []
        for shown, mentions in pairs:
            if is_empty(mentions) or mentions == []:
                continue
            role = role_of(event_type, shown)
            if role is None:
                errors.append(f"event '{event_type.name}': unknown role '{snippet(shown, 200)}': dropped")
                continue
            out.extend(Argument(role.name, m) for m in unique(as_strings(mentions)))
        return unique(out)

    def knowlm_schema_text(self, schema: Schema, language: str) -> str:
        return str({t.display(language, schema.language):
                    [r.display(language, schema.language) for r in t.roles]
                    for t in schema.types_for("ee")})

    @guarded
    def parse_knowlm(self, output: str, schema: Schema, language: str) -> tuple[list[Event], list[str]]:
        events: list[Event] = []
        errors: list[str] = []
        resolve, role_of = type_resolver(schema, "ee", language), _role_resolver(language, schema.language)
        for content in tuple_lines(output):
            parts = [p.strip() for p in content.replace("，", ",").split(",", 2)]
            event_type = resolve(parts[1]) if len(parts) >= 2 else None
            if event_type is None or not parts[0]:
                errors.append(f"cannot read '({snippet(content, 200)})' as (trigger,event type,"
                              "arguments): dropped")
                continue
            arguments = []
            for piece in (parts[2].replace("；", ";").split(";") if len(parts) == 3 else []):
                mention, sep, shown = piece.rpartition("#")
                role = role_of(event_type, shown) if sep else None
                if role is None or is_empty(mention):
                    if piece.strip():
                        errors.append(f"event '{event_type.name}': cannot read argument "
                                      f"'{snippet(piece.strip(), 200)}': dropped")
                    continue
                arguments.append(Argument(role.name, mention.strip()))
            events.append(Event(event_type.name, Span(parts[0]), tuple(unique(arguments))))
        return unique(events), errors

    def to_knowlm_output(self, document: Document, schema: Schema, language: str) -> str:
        types = {t.name: t for t in schema.types_for("ee")}
        lines = []
        for event in sorted(document.events, key=_order):
            if event.type not in types:
                continue
            t = types[event.type]
            roles = {r.name: r.display(language, schema.language) for r in t.roles}
            args = ";".join(f"{a.text}#{roles.get(a.role, a.role)}" for a in event.arguments)
            lines.append(f"({event.trigger.text},{t.display(language, schema.language)},{args})")
        return "\n".join(unique(lines))


def _order(event: Event) -> int:
    return event.trigger.start if event.trigger.start is not None else 1 << 60
