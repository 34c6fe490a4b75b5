"""The KnowLM / ZhiXi legacy prompt style (``knowlm``).

An Alpaca-template prompt with a free-text instruction that lists the candidate types; the model
answers one tuple per line: ``(entity,type)`` for NER, ``(subject,relation,object)`` for RE and
``(trigger,event type,argument#role;argument#role)`` for EE. The wording is KnowLM's / DeepKE
InstructKGC's own; it is data, versioned by the style name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from deepke_llm.prompts.chat import Prompt
from deepke_llm.prompts.styles import Style, register_style, unsupported
from deepke_llm.records import Document
from deepke_llm.schema import Schema
from deepke_llm.tasks import Task
from deepke_llm.tasks.base import is_empty, snippet, type_resolver, unique

TEMPLATE = "alpaca"

# Template 0 of each task in zjunlp/DeepKE example/llm/InstructKGC/kg2instruction/*_template.py and
# zjunlp/KnowLM examples/ie_prompt.py (typos included: they are what ZhiXi was trained on).
INSTRUCTIONS: dict[tuple[str, str], str] = {
    ("ner", "zh"): "已知候选的实体类型列表：{schema}，请你根据实体类型列表，从以下输入中抽取出可能存在的实体。请按照{format}的格式回答。",
    ("ner", "en"): "Identify the entities and types in the following text and where entity type list {schema}. Please provide your answerin the form of {format}.",
    ("re", "zh"): "已知候选的关系列表：{schema}，请你根据关系列表，从以下输入中抽取出可能存在的头实体与尾实体，并给出对应的关系三元组。请按照{format}的格式回答。",
    ("re", "en"): "Identify the head entities (subjects) and tail entities (objects) in the following text and provide the corresponding relation triples from relation list {schema}. Please provide your answer as a list of relation triples in the form of {format}.",
    ("ee", "zh"): "已知候选的事件字典：{schema}，请你根据事件字典，从以下输入中抽取出可能存在的事件。请按照{format}的格式回答。",
    ("ee", "en"): "Given the candidate event dictionary: {schema}, please extract any possible events from the input below. Please answer in the format of {format}.",
}

# answer formats of DeepKE's kg2instruction README (one tuple per line)
FORMATS: dict[tuple[str, str], str] = {
    ("ner", "zh"): "(实体,实体类型)",
    ("ner", "en"): "(Entity,Entity Type)",
    ("re", "zh"): "(头实体,关系,尾实体)",
    ("re", "en"): "(Subject,Relation,Object)",
    ("ee", "zh"): "(事件触发词,事件类型,事件论元1#论元角色1;事件论元2#论元角色2)",
    ("ee", "en"): "(Event Trigger,Event Type,Argument1#Argument Role1;Argument2#Argument Role2)",
}


def instruction(task: str, schema_text: str, language: str) -> str:
    """The free-text instruction for ``task`` listing ``schema_text``."""
    try:
        template = INSTRUCTIONS[(task, language)]
    except KeyError:
        raise ValueError(f"no KnowLM instruction for task '{task}' in language '{language}'") from None
    return template.format(schema=schema_text, format=FORMATS[(task, language)])


_TUPLE = re.compile(r"[(（]([^()（）\n]*)[)）]")


def tuple_lines(output: str) -> list[str]:
    """Contents of the ``(a,b,c)`` groups a KnowLM-style answer is made of."""
    return [m.group(1) for m in _TUPLE.finditer(output or "")]


@lru_cache(maxsize=1024)
def _around(middle: str) -> re.Pattern[str]:
    # compiled once per relation name, not once per (line, name): a long answer has many lines
    return re.compile(rf"[,，]\s*{re.escape(middle)}\s*[,，]")


def split_around(content: str, middle: str) -> tuple[str, str] | None:
    """Split ``a,middle,b`` at ``middle`` between commas (either width, optional spaces)."""
    match = _around(middle).search(content)
    if match is None:
        return None
    return content[:match.start()].strip(), content[match.end():].strip()


@dataclass(frozen=True)
class _Reading:
    """What reading one answer needs: the schema's type names and a resolver for them."""

    names: list[str]  # type names shown in the prompt, longest first
    resolve: Callable[[str], Any]
    errors: list[str]


# ---- per task: schema text, one gold answer item -> line, one line -> answer item -------------
def _ner_line(shown: str, mention: str) -> str:
    return f"({mention},{shown})"


def _ner_read(content: str, reading: _Reading) -> tuple[str, Any] | None:
    cut = max(content.rfind(","), content.rfind("，"))
    mention, shown = content[:cut], content[cut + 1:].strip()
    if cut < 0 or reading.resolve(shown) is None or not mention.strip():
        reading.errors.append(f"cannot read '({snippet(content, 200)})' as (entity,entity type): "
                              "dropped")
        return None
    return shown, mention.strip()


def _re_line(shown: str, pair: dict[str, str]) -> str:
    return f"({pair['subject']},{shown},{pair['object']})"


def _re_read(content: str, reading: _Reading) -> tuple[str, Any] | None:
    for name in reading.names:  # longest first: "born in" must not take "born in city"
        parts = split_around(content, name)
        if parts and parts[0] and parts[1]:
            return name, {"subject": parts[0], "object": parts[1]}
    reading.errors.append(f"cannot read '({snippet(content, 200)})' as (subject,relation,object) "
                          "with a schema relation: dropped")
    return None


def _ee_schema_text(items: list[dict[str, Any]]) -> str:
    return str({item["event_type"]: item["arguments"] for item in items})


def _ee_line(shown: str, event: dict[str, Any]) -> str:
    arguments = ";".join(f"{a['argument']}#{a['role']}" for a in event["arguments"])
    return f"({event['trigger']},{shown},{arguments})"


def _ee_read(content: str, reading: _Reading) -> tuple[str, Any] | None:
    parts = [p.strip() for p in content.replace("，", ",").split(",", 2)]
    event_type = reading.resolve(parts[1]) if len(parts) >= 2 else None
    if event_type is None or not parts[0]:
        reading.errors.append(f"cannot read '({snippet(content, 200)})' as (trigger,event type,"
                              "arguments): dropped")
        return None
    arguments = []
    for piece in (parts[2].replace("；", ";").split(";") if len(parts) == 3 else []):
        mention, sep, role = piece.rpartition("#")
        if not sep or is_empty(mention):
            if piece.strip():
                reading.errors.append(f"event '{event_type.name}': cannot read argument "
                                      f"'{snippet(piece.strip(), 200)}': dropped")
            continue
        arguments.append({"argument": mention.strip(), "role": role})
    return parts[1], {"trigger": parts[0], "arguments": arguments}


@dataclass(frozen=True)
class TupleFormat:
    """How one task's answers are written as tuples (and read back)."""

    schema_text: Callable[[list[Any]], str]
    line: Callable[[str, Any], str]
    read: Callable[[str, _Reading], tuple[str, Any] | None]


TUPLE_FORMATS: dict[str, TupleFormat] = {
    "ner": TupleFormat(str, _ner_line, _ner_read),
    "re": TupleFormat(str, _re_line, _re_read),
    "ee": TupleFormat(_ee_schema_text, _ee_line, _ee_read),
}


@register_style("knowlm")
class KnowLMStyle(Style):
    """KnowLM / ZhiXi: Alpaca prompt with a free-text instruction, tuples out."""

    def _format(self, task: Task) -> TupleFormat:
        try:
            return TUPLE_FORMATS[task.name]
        except KeyError:
            raise unsupported(self, task) from None

    def build(self, task: Task, schema: Schema, text: str, language: str) -> Prompt:
        schema_text = self._format(task).schema_text(task.schema_items(schema, language))
        return Prompt(user=instruction(task.name, schema_text, language), input=text,
                      template=TEMPLATE)

    def target(self, task: Task, document: Document, schema: Schema, language: str) -> str:
        line = self._format(task).line
        return "\n".join(unique(line(shown, value)
                                for shown, value in task.answer(document, schema, language)))

    def read(self, task: Task, output: str, schema: Schema, language: str,
             errors: list[str]) -> Iterator[tuple[str, Any]]:
        read = self._format(task).read
        names = [item["event_type"] if isinstance(item, dict) else item
                 for item in task.schema_items(schema, language)]
        reading = _Reading(sorted(names, key=lambda name: -len(name)),
                           type_resolver(schema, task.name, language), errors)
        for content in tuple_lines(output):
            pair = read(content, reading)
            if pair is not None:
                yield pair
