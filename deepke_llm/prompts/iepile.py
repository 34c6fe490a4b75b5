"""The IEPile / OneKE instruction format (prompt style ``iepile``, the default).

The user turn is the JSON string of ``{"instruction": TASK_SENTENCE, "schema": [...], "input": TEXT}``
(``ensure_ascii=False``, keys in that order); the model answers with a JSON object keyed by every
queried schema item. Wording is data: the sentences below are IEPile's own (zjunlp/IEPile
``ie2instruction``), so models trained on IEPile see exactly what they were trained on.
"""

from __future__ import annotations

import json
from typing import Any

from deepke_llm.prompts.chat import Prompt

STYLE = "iepile"

INSTRUCTIONS: dict[tuple[str, str], str] = {
    ("ner", "zh"): "你是专门进行实体抽取的专家。请从input中抽取出符合schema定义的实体，不存在的实体类型返回空列表。请按照JSON字符串的格式回答。",
    ("re", "zh"): "你是专门进行关系抽取的专家。请从input中抽取出符合schema定义的关系三元组，不存在的关系返回空列表。请按照JSON字符串的格式回答。",
    ("ee", "zh"): "你是专门进行事件提取的专家。请从input中抽取出符合schema定义的事件，不存在的事件返回空列表，不存在的论元返回NAN，如果论元存在多值请返回列表。请按照JSON字符串的格式回答。",
    ("ner", "en"): "You are an expert in named entity recognition. Please extract entities that match the schema definition from the input. Return an empty list if the entity type does not exist. Please respond in the format of a JSON string.",
    ("re", "en"): "You are an expert in relationship extraction. Please extract relationship triples that match the schema definition from the input. Return an empty list for relationships that do not exist. Please respond in the format of a JSON string.",
    ("ee", "en"): "You are an expert in event extraction. Please extract events from the input that conform to the schema definition. Return an empty list for events that do not exist, and return NAN for arguments that do not exist. If an argument has multiple values, please return a list. Respond in the format of a JSON string.",
}

# schema items per prompt (IEPile's split_num defaults)
CHUNK_SIZES = {"ner": 6, "re": 4, "ee": 4}


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
