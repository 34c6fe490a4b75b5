"""Prompt styles: how a task + schema chunk + text becomes a Prompt, a gold answer becomes the
target text, and a model's text becomes the task's answer (then records).

A style is one module registering a :class:`Style` subclass with :func:`register_style`: it
implements ``build``, ``target`` and ``read`` for the tasks it supports; :meth:`Style.parse`
(read, then the task's :meth:`~deepke_llm.tasks.base.Task.records_from`) is written once here and
never raises. Built in: ``iepile`` (default; prompts/iepile.py) and ``knowlm`` (prompts/knowlm.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from deepke_llm.prompts.chat import Prompt
from deepke_llm.records import Document
from deepke_llm.schema import Schema
from deepke_llm.tasks import Task
from deepke_llm.tasks.base import snippet

__all__ = ["MAX_OUTPUT_CHARS", "Style", "chunk_schema", "get_style",
           "register_style", "split_schema", "style_names"]

# no model answers with more (1M characters is ~250k tokens): past it, parsing and grounding a
# hostile answer would only cost time
MAX_OUTPUT_CHARS = 1_000_000


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
    """Sub-schemas of at most ~``split_num`` types each (the task's default size by default).

    ``shuffle_seed`` shuffles the type order first (to measure prompt-order variance).
    """
    names = [t.name for t in schema.types_for(task.name)]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(names)
    size = task.chunk_size if split_num is None else split_num
    return [schema.subset(task.name, chunk, ordered=True) for chunk in split_schema(names, size)]


class Style:
    """A prompt style: subclasses implement ``build``, ``target`` and ``read``."""

    name: ClassVar[str] = ""

    def build(self, task: Task, schema: Schema, text: str, language: str) -> Prompt:
        """The prompt asking ``schema`` (one chunk) of ``text``."""
        raise NotImplementedError

    def target(self, task: Task, document: Document, schema: Schema, language: str) -> str:
        """The gold answer of ``document`` for ``schema`` as the model should write it."""
        raise NotImplementedError

    def read(self, task: Task, output: str, schema: Schema, language: str,
             errors: list[str]) -> Iterable[tuple[str, Any]]:
        """The answer in ``output`` as ``(type name as written, value)`` pairs (may be lazy);
        what cannot be read is reported to ``errors``."""
        raise NotImplementedError

    def parse(self, task: Task, output: str, schema: Schema, language: str
              ) -> tuple[list, list[str]]:
        """Records (offsets unset) from a model output; never raises.

        An unexpected exception becomes an error line, and an output longer than
        :data:`MAX_OUTPUT_CHARS` is read only that far (with an error saying so).
        """
        notes = []
        if isinstance(output, str) and len(output) > MAX_OUTPUT_CHARS:
            notes.append(f"output is {len(output):,} characters; read only the first "
                         f"{MAX_OUTPUT_CHARS:,}")
            output = output[:MAX_OUTPUT_CHARS]
        errors: list[str] = []
        try:
            answer = self.read(task, output, schema, language, errors)
            records = task.records_from(answer, schema, language, errors)
        except Exception as exc:  # noqa: BLE001 - parsers must never raise (DESIGN.md)
            return [], notes + [f"{task.name} parser failed on this output "
                                f"({type(exc).__name__}: {snippet(str(exc))})"]
        return records, notes + errors


_STYLES: dict[str, Style] = {}


def register_style(name: str) -> Callable[[type[Style]], type[Style]]:
    """Register a prompt style class under ``name`` (duplicates are rejected)."""

    def decorate(cls: type[Style]) -> type[Style]:
        if name in _STYLES:
            raise ValueError(f"prompt style '{name}' is already registered")
        cls.name = name
        _STYLES[name] = cls()
        return cls

    return decorate


def style_names() -> list[str]:
    """Names of the registered prompt styles (CLI choices come from here)."""
    return sorted(_STYLES)


def get_style(name: str) -> Style:
    """The registered style called ``name``."""
    try:
        return _STYLES[name]
    except KeyError:
        raise ValueError(f"unknown prompt style '{name}': use one of {', '.join(sorted(_STYLES))}") from None


def unsupported(style: Style, task: Task) -> ValueError:
    """The error for a style asked about a task it has no format for."""
    return ValueError(f"prompt style '{style.name}' has no format for task '{task.name}'")


# the built-in styles register themselves (after the registry above exists)
from deepke_llm.prompts import iepile, knowlm  # noqa: E402, F401, I001
