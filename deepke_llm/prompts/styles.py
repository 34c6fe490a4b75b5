"""Prompt styles: how a task + schema chunk + text becomes a Prompt, and an output becomes records.

``iepile`` (default) is the OneKE / IEPile JSON format; ``knowlm`` is the ZhiXi free-text format.
A style is a registry entry; add one with :func:`register_style`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from deepke_llm.prompts import iepile, knowlm
from deepke_llm.prompts.chat import Prompt
from deepke_llm.records import Document
from deepke_llm.schema import Schema
from deepke_llm.tasks import Task

__all__ = ["PromptStyle", "get_style", "register_style", "split_schema", "chunk_schema"]


def split_schema(items: Sequence[Any], split_num: int) -> list[list[Any]]:
    """Chunk schema items as IEPile does at test time.

    Chunks of ``split_num``; a remainder shorter than ``max(1, split_num // 2)`` joins the last
    chunk instead of forming a tiny prompt of its own (``multischema_split_by_num_test``).
    ``split_num`` -1 means one chunk.
    """
    items = list(items)
    if split_num < 1 and split_num != -1:
        raise ValueError(f"split_num must be >= 1 (or -1 for one chunk), got {split_num}")
    if split_num == -1 or len(items) < split_num:
        return [items] if items else []
    full = max(len(items) // split_num, 1) * split_num
    chunks = [items[i:i + split_num] for i in range(0, full, split_num)]
    rest = items[full:]
    if len(rest) >= max(1, split_num // 2):
        chunks.append(rest)
    else:
        chunks[-1].extend(rest)
    return chunks


def chunk_schema(task: Task, schema: Schema, split_num: int | None = None,
                 shuffle_seed: int | None = None) -> list[Schema]:
    """Sub-schemas of at most ~``split_num`` types each (IEPile sizes by default).

    ``shuffle_seed`` shuffles the type order first (to measure prompt-order variance).
    """
    names = [t.name for t in schema.types_for(task.name)]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(names)
    size = iepile.CHUNK_SIZES[task.name] if split_num is None else split_num
    return [schema.subset(task.name, chunk, ordered=True) for chunk in split_schema(names, size)]


class PromptStyle(Protocol):
    name: str

    def build(self, task: Task, schema: Schema, text: str, language: str) -> Prompt: ...

    def parse(self, task: Task, output: str, schema: Schema, language: str) -> tuple[list, list[str]]: ...

    def target(self, task: Task, document: Document, schema: Schema, language: str) -> str: ...


_STYLES: dict[str, PromptStyle] = {}


def register_style(name: str) -> Callable[[type], type]:
    """Register a prompt style class under ``name`` (duplicates are rejected)."""

    def decorate(cls: type) -> type:
        if name in _STYLES:
            raise ValueError(f"prompt style '{name}' is already registered")
        instance = cls()
        instance.name = name
        _STYLES[name] = instance
        return cls

    return decorate


def style_names() -> list[str]:
    """Names of the registered prompt styles (CLI choices come from here)."""
    return sorted(_STYLES)


def get_style(name: str) -> PromptStyle:
    try:
        return _STYLES[name]
    except KeyError:
        raise ValueError(f"unknown prompt style '{name}': use one of {', '.join(sorted(_STYLES))}") from None


@register_style("iepile")
class IEPileStyle:
    """OneKE / IEPile: JSON instruction in, JSON object out."""

    name = "iepile"

    def build(self, task: Task, schema: Schema, text: str, language: str) -> Prompt:
        return iepile.build_prompt(task.name, task.schema_items(schema, language), text, language)

    def parse(self, task: Task, output: str, schema: Schema, language: str) -> tuple[list, list[str]]:
        return task.parse_iepile(output, schema, language)

    def target(self, task: Task, document: Document, schema: Schema, language: str) -> str:
        return iepile.output_json(task.to_output(document, schema, language))


@register_style("knowlm")
class KnowLMStyle:
    """KnowLM / ZhiXi: Alpaca prompt with a free-text instruction, tuples out."""

    name = "knowlm"

    def build(self, task: Task, schema: Schema, text: str, language: str) -> Prompt:
        return knowlm.build_prompt(task.name, task.knowlm_schema_text(schema, language), text, language)

    def parse(self, task: Task, output: str, schema: Schema, language: str) -> tuple[list, list[str]]:
        return task.parse_knowlm(output, schema, language)

    def target(self, task: Task, document: Document, schema: Schema, language: str) -> str:
        return task.to_knowlm_output(document, schema, language)
