"""The IEPile / OneKE instruction format (prompt style ``iepile``, the default).

The user turn is the JSON string of ``{"instruction": TASK_SENTENCE, "schema": [...], "input": TEXT}``
(``ensure_ascii=False``, keys in that order); the model answers with a JSON object keyed by every
queried schema item, ``[]`` where absent:

- NER ``{"person": ["Robert Allenby"], "location": []}``
- RE ``{"place of death": [{"subject": "Thomas Edison", "object": "West Orange"}]}``
- EE ``{"attack": [{"trigger": "fired", "arguments": {"attacker": "troops", "place": "NAN"}}]}``
  (``"NAN"`` = absent; a role with several values holds a list)

Wording is data: the sentences below are IEPile's own (zjunlp/IEPile ``ie2instruction``), so
models trained on IEPile see exactly what they were trained on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from deepke_llm.lenient_json import loads_lenient
from deepke_llm.prompts.chat import Prompt
from deepke_llm.prompts.styles import Style, register_style, unsupported
from deepke_llm.records import Document
from deepke_llm.schema import Schema
from deepke_llm.tasks import Task
from deepke_llm.tasks.base import unique

INSTRUCTIONS: dict[tuple[str, str], str] = {
    ("ner", "zh"): "你是专门进行实体抽取的专家。请从input中抽取出符合schema定义的实体，不存在的实体类型返回空列表。请按照JSON字符串的格式回答。",
    ("re", "zh"): "你是专门进行关系抽取的专家。请从input中抽取出符合schema定义的关系三元组，不存在的关系返回空列表。请按照JSON字符串的格式回答。",
    ("ee", "zh"): "你是专门进行事件提取的专家。请从input中抽取出符合schema定义的事件，不存在的事件返回空列表，不存在的论元返回NAN，如果论元存在多值请返回列表。请按照JSON字符串的格式回答。",
    ("ner", "en"): "You are an expert in named entity recognition. Please extract entities that match the schema definition from the input. Return an empty list if the entity type does not exist. Please respond in the format of a JSON string.",
    ("re", "en"): "You are an expert in relationship extraction. Please extract relationship triples that match the schema definition from the input. Return an empty list for relationships that do not exist. Please respond in the format of a JSON string.",
    ("ee", "en"): "You are an expert in event extraction. Please extract events from the input that conform to the schema definition. Return an empty list for events that do not exist, and return NAN for arguments that do not exist. If an argument has multiple values, please return a list. Respond in the format of a JSON string.",
}
NAN = "NAN"


def instruction_json(task: str, schema_items: list[Any], text: str, language: str) -> str:
    """The user-turn string: IEPile's instruction JSON for one schema chunk."""
    try:
        sentence = INSTRUCTIONS[(task, language)]
    except KeyError:
        raise ValueError(f"no IEPile instruction for task '{task}' in language '{language}'") from None
    return json.dumps({"instruction": sentence, "schema": schema_items, "input": text},
                      ensure_ascii=False)


def build_prompt(task: str, schema_items: list[Any], text: str, language: str) -> Prompt:
    """A chat prompt whose user turn is the IEPile instruction JSON."""
    return Prompt(user=instruction_json(task, schema_items, text, language))


def output_json(output: dict[str, Any]) -> str:
    """Serialise a task output object the way IEPile training files do."""
    return json.dumps(output, ensure_ascii=False)


def as_object(value: Any) -> dict[str, Any] | None:
    """The top-level output object; a list of objects is merged key by key."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        merged: dict[str, Any] = {}
        for item in (v for v in value if isinstance(v, dict)):
            for key, val in item.items():
                if key in merged and isinstance(merged[key], list) and isinstance(val, list):
                    merged[key] = merged[key] + val
                else:
                    merged.setdefault(key, val)
        return merged
    return None


# ---- the output object's values per task: the gold answer values of one type -> JSON ----------
def _mentions(values: list[Any], roles: list[str]) -> list[Any]:
    return unique(values)


def _pairs(values: list[Any], roles: list[str]) -> list[Any]:
    pairs = unique((v["subject"], v["object"]) for v in values)
    return [{"subject": s, "object": o} for s, o in pairs]


def _events(values: list[Any], roles: list[str]) -> list[Any]:
    out = []
    for event in values:
        arguments: dict[str, Any] = {}
        for role in roles:  # every role of the type, in schema order; NAN where absent
            found = unique(a["argument"] for a in event["arguments"] if a["role"] == role)
            arguments[role] = found[0] if len(found) == 1 else (found or NAN)
        out.append({"trigger": event["trigger"], "arguments": arguments})
    return out


VALUES: dict[str, Callable[[list[Any], list[str]], list[Any]]] = {
    "ner": _mentions, "re": _pairs, "ee": _events}


def _item_name(item: Any) -> str:
    return item["event_type"] if isinstance(item, dict) else item


@register_style("iepile")
class IEPileStyle(Style):
    """OneKE / IEPile: JSON instruction in, JSON object out."""

    def build(self, task: Task, schema: Schema, text: str, language: str) -> Prompt:
        return build_prompt(task.name, task.schema_items(schema, language), text, language)

    def target(self, task: Task, document: Document, schema: Schema, language: str) -> str:
        if task.name not in VALUES:
            raise unsupported(self, task)
        items = task.schema_items(schema, language)
        grouped: dict[str, list[Any]] = {_item_name(item): [] for item in items}
        for shown, value in task.answer(document, schema, language):
            grouped[shown].append(value)
        roles = {_item_name(item): item.get("arguments", []) for item in items
                 if isinstance(item, dict)}
        return output_json({name: VALUES[task.name](values, roles.get(name, []))
                            for name, values in grouped.items()})

    def read(self, task: Task, output: str, schema: Schema, language: str,
             errors: list[str]) -> Iterable[tuple[str, Any]]:
        value, load_errors = loads_lenient(output, "{[")
        errors.extend(load_errors)
        obj = as_object(value)
        if obj is None:
            if value is not None:
                errors.append(f"expected a JSON object keyed by {task.type_noun}, "
                              f"got {type(value).__name__}")
            return []
        return obj.items()
