"""Event extraction: schema items, gold answers, records from answers, and the glue the shared
stages need (grounding, scoring tuples at four levels, the IEPile evaluator's tuples).

Schema item: ``{"event_type": "attack", "trigger": true, "arguments": ["attacker", ...]}``;
answer: ``[("attack", {"trigger": "fired", "arguments": [{"argument": "troops", "role":
"attacker"}]})]`` (arguments may also be an object keyed by role, a role may hold a list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from deepke_llm.grounding import GroundingOptions, ground_events
from deepke_llm.records import Argument, Document, Event, Span
from deepke_llm.schema import EventType, Schema
from deepke_llm.tasks.base import (
    ItemReader,
    Note,
    SpanOf,
    Task,
    as_list,
    as_strings,
    is_empty,
    lookup,
    register_task,
    snippet,
    unique,
)

NAN = "NAN"
LEVELS = ("trigger_identification", "trigger_classification", "argument_identification",
          "argument_classification")


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
    schema_field = "event_types"
    record_field = "events"
    type_noun = "event type"
    type_kind = "event type"
    chunk_size = 4
    levels = LEVELS
    type_index = {**{(mode, level): index for mode in ("strict", "boundary")
                     for level, index in zip(LEVELS, (None, 1, 0, 1), strict=True)},
                  **{("string", level): index
                     for level, index in zip(LEVELS, (None, 0, 0, 2), strict=True)}}
    type_columns = {None: "event type", "argument_classification": "role"}
    headline_levels = {"trigger_": "trigger_classification",
                       "argument_": "argument_classification"}
    iepile_report = {"event_": "trigger_classification", "argument_": "argument_classification"}

    def schema_items(self, schema: Schema, language: str) -> list[dict[str, Any]]:
        return [{"event_type": t.display(language, schema.language), "trigger": True,
                 "arguments": [r.display(language, schema.language) for r in t.roles]}
                for t in schema.types_for("ee")]

    def gold_items(self, document: Document, schema: Schema, language: str
                   ) -> list[tuple[str, Any, bool]]:
        types = {t.name: t for t in schema.types_for("ee")}
        out = []
        for event in sorted(document.events, key=_order):
            t = types.get(event.type)
            roles = {r.name: r.display(language, schema.language) for r in t.roles} if t else {}
            arguments = [{"argument": a.text, "role": roles.get(a.role, a.role)}
                         for a in event.arguments]
            out.append((t.display(language, schema.language) if t else event.type,
                        {"trigger": event.trigger.text, "arguments": arguments}, t is not None))
        return out

    def to_label(self, document: Document, schema: Schema, language: str) -> list[dict[str, Any]]:
        return [{"event_type": shown, "event_trigger": item["trigger"],
                 "arguments": item["arguments"]}
                for shown, item, _ in self.gold_items(document, schema, language)]

    def item_reader(self, schema: Schema, language: str, errors: list[str]) -> ItemReader:
        role_of = _role_resolver(language, schema.language)

        def read(event_type: EventType, key: str, value: Any) -> list[Event]:
            events: list[Event] = []
            for item in as_list(value):
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
                arguments = _arguments(lookup(item, "arguments", "argument", "论元"),
                                       event_type, role_of, errors)
                events.append(Event(event_type.name, Span(triggers[0]), tuple(arguments)))
            return events

        return read

    def ground(self, text: str, records: Any, options: GroundingOptions) -> tuple[list, list[str]]:
        return ground_events(text, records, options)

    def score_tuples(self, document: Document, mode: str, span: SpanOf
                     ) -> dict[str | None, list[tuple]]:
        out: dict[str | None, list[tuple]] = {level: [] for level in LEVELS}
        text = mode == "string"
        for event in document.events:
            trigger = event.trigger.text if text else span(event.trigger)
            out["trigger_identification"].append((trigger,))
            out["trigger_classification"].append((event.type, trigger) if text
                                                  else (trigger, event.type))
            for argument in event.arguments:
                if text:
                    out["argument_identification"].append((event.type, argument.text))
                    out["argument_classification"].append((event.type, argument.text,
                                                            argument.role))
                else:
                    place = span(argument)
                    out["argument_identification"].append((event.type, place))
                    out["argument_classification"].append((event.type, argument.role, place))
        return out

    def iepile_tuples(self, key: str, item: Any, where: str, note: Note) -> list[tuple]:
        if not isinstance(item, dict):
            note("skipped_item", f"{where}: '{key}' item {str(item)[:40]!r} is not an object")
            return []
        if "trigger" not in item:
            note("incomplete_item", f"{where}: '{key}' item has no trigger")
        trigger = item.get("trigger", "")
        if not isinstance(trigger, str):
            note("skipped_item", f"{where}: '{key}' trigger is not a string")
            return []
        if trigger == NAN:
            note("nan_dropped", f"{where}: '{key}': trigger \"NAN\" read as no trigger")
            trigger = ""
        arguments = item.get("arguments", {})
        if not isinstance(arguments, dict):
            note("skipped_item", f"{where}: '{key}' arguments are "
                 f"{type(arguments).__name__}, not an object (event kept without them)")
            arguments = {}
        args: list[tuple[str, str]] = []
        for role, values in arguments.items():
            for value in values if isinstance(values, list) else [values]:
                if value == NAN:
                    continue  # IEPile drops absent arguments too
                if not isinstance(value, str):
                    note("skipped_item", f"{where}: '{key}' role '{role}' value "
                         f"{str(value)[:40]!r} is not a string")
                    continue
                args.append((value, role))
        return [(key, trigger, tuple(args))]

    def iepile_label_tuple(self, item: Any) -> tuple:
        args = tuple((a.get("argument", ""), a.get("role", ""))
                     for a in item.get("arguments", []) if isinstance(a, dict))
        return (item.get("event_type", ""), item.get("event_trigger", ""), args)

    def iepile_levels(self, tuples: list[tuple]) -> dict[str | None, list[tuple]]:
        return {
            "trigger_identification": [(trigger,) for _, trigger, _ in tuples],
            "trigger_classification": [(etype, trigger) for etype, trigger, _ in tuples],
            "argument_identification": [(etype, arg) for etype, _, args in tuples
                                        for arg, _ in args],
            "argument_classification": [(etype, arg, role) for etype, _, args in tuples
                                        for arg, role in args],
        }

    def iepile_label_item(self, key: str, item: Any) -> dict[str, Any] | None:
        if not isinstance(item, dict):
            return None
        arguments = item.get("arguments") or {}
        pairs = [{"argument": v, "role": role} for role, values in arguments.items()
                 for v in (values if isinstance(values, list) else [values]) if v != NAN]
        return {"event_type": key, "event_trigger": item.get("trigger", ""), "arguments": pairs}

    def named_mentions(self, record: Event) -> Iterable[tuple[str, Any]]:
        yield ".trigger", record.trigger
        for j, argument in enumerate(record.arguments):
            yield f".arguments[{j}]", argument

    def used_types(self, record: Event) -> Iterable[tuple[str, str, str]]:
        yield ".type", self.type_kind, record.type
        for j, argument in enumerate(record.arguments):
            yield f".arguments[{j}].role", f"role of '{record.type}'", \
                f"{record.type}\x00{argument.role}"

    def known_types(self, schema: Schema) -> set[str]:
        types = schema.types_for(self.name)
        return ({t.name for t in types}
                | {f"{t.name}\x00{r.name}" for t in types for r in t.roles})


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


def _order(event: Event) -> int:
    return event.trigger.start if event.trigger.start is not None else 1 << 60
