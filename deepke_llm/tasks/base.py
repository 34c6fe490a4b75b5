"""What every task shares: the Task interface, the registry, and value-normalising helpers.

A task (``ner``, ``re``, ``ee``) owns what does not depend on the prompt style: its schema items,
its gold answer as a plain Python object, records from such an object (leniently: the object may
come from a model), and what the shared stages ask of it (grounding, scoring tuples, the IEPile
evaluator's tuples). Prompt styles (``deepke_llm/prompts/``) turn answers into text and back.

An answer is a sequence of ``(type name as shown, value)`` pairs in document order: NER values
are mention strings, RE values ``{"subject", "object"}``, EE values ``{"trigger", "arguments":
[{"argument", "role"}]}``. Reading one also accepts what models write instead (lists of
mentions, ``head``/``tail``, argument objects keyed by role, ...).
"""

from __future__ import annotations

import contextlib
import math
import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from deepke_llm.grounding import GroundingOptions
from deepke_llm.records import Document
from deepke_llm.schema import Schema
from deepke_llm.schema import _fold as fold_name  # the folding Schema.resolve uses

# what models write for "nothing here"
EMPTY_VALUES = frozenset({"", "nan", "none", "null", "n/a", "无", "空", "没有", "不存在"})

_TASKS: dict[str, Task] = {}

Answer = Sequence[tuple[str, Any]]
"""``(type name as shown, value)`` pairs (see the module doc)."""
ItemReader = Callable[[Any, str, Any], list]
"""``(schema type, key as written, value) -> records`` for one parse (it may cache lookups)."""
SpanOf = Callable[[Any], Any]
"""A mention part -> what scoring compares for its place (offsets, or its text when ungrounded)."""
Note = Callable[[str, str], None]
"""``(kind, message)``: a problem the IEPile evaluator counts (see evaluation/diagnostics.py)."""


def register_task(cls: type[Task]) -> type[Task]:
    """Register a task class under ``cls.name`` (duplicates are rejected)."""
    if cls.name in _TASKS:
        raise ValueError(f"task '{cls.name}' is already registered")
    _TASKS[cls.name] = cls()
    return cls


def get_task(name: str) -> Task:
    """The task object for ``ner``, ``re`` or ``ee`` (case-insensitive)."""
    import deepke_llm.tasks  # noqa: F401 - registers the built-in tasks

    try:
        return _TASKS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown task '{name}': use one of {', '.join(sorted(_TASKS))}") from None


class Task:
    """Interface of a task; see ``tasks/ner.py`` for a complete one."""

    name: ClassVar[str]
    iepile_name: ClassVar[str]  # "NER" / "RE" / "EE" in IEPile files
    record_field: ClassVar[str]  # Document field holding this task's records
    schema_field: ClassVar[str]  # Schema field holding this task's types
    type_noun: ClassVar[str]  # what a type name names, in error lines ("entity type")
    type_kind: ClassVar[str]  # what kind of schema type it is, in dataset/scoring lines
    chunk_size: ClassVar[int]  # schema items per prompt by default (IEPile's split_num)
    levels: ClassVar[tuple[str | None, ...]] = (None,)  # sub-scores (EE: trigger/argument levels)
    # scoring tuples: (mode, level) -> index of the per-type key, None when type-free
    type_index: ClassVar[Mapping[tuple[str, str | None], int | None]]
    # report header of the per-type key: level -> header, None for the levels not named
    type_columns: ClassVar[Mapping[str | None, str]] = {None: "type"}
    # the scores a summary shows: metric name infix -> level, the main one first
    headline_levels: ClassVar[Mapping[str, str | None]] = {"": None}
    # IEPile evaluator report: key prefix -> level (IEPile's rounded P/R/F1 per prefix)
    iepile_report: ClassVar[Mapping[str, str | None]] = {"": None}

    @property
    def has_levels(self) -> bool:
        """Whether scores come per named level (EE) rather than as one unnamed level."""
        return self.levels != (None,)

    # ---- answers (style-neutral) --------------------------------------------------------------
    def schema_items(self, schema: Schema, language: str) -> list[Any]:
        """What a prompt lists of ``schema`` (already one chunk), names in ``language``."""
        raise NotImplementedError

    def answer(self, document: Document, schema: Schema, language: str) -> list[tuple[str, Any]]:
        """Gold records of ``document`` whose type is in ``schema`` as an answer, in text order."""
        return [(shown, value) for shown, value, known in self.gold_items(document, schema, language)
                if known]

    def gold_items(self, document: Document, schema: Schema, language: str
                   ) -> list[tuple[str, Any, bool]]:
        """Every gold record in text order as (type name shown, answer value, type in schema)."""
        raise NotImplementedError

    def to_label(self, document: Document, schema: Schema, language: str) -> list[dict[str, Any]]:
        """Gold records in IEPile's test-file ``label`` list form, type names as shown in
        ``language``."""
        raise NotImplementedError

    def item_reader(self, schema: Schema, language: str, errors: list[str]) -> ItemReader:
        """Records from one answer value of one (resolved) schema type; problems go to ``errors``."""
        raise NotImplementedError

    def records_from(self, answer: Iterable[tuple[Any, Any]], schema: Schema, language: str,
                     errors: list[str]) -> list:
        """Records (offsets unset) from an answer; unknown type names are reported and dropped."""
        resolve = type_resolver(schema, self.name, language)
        read = self.item_reader(schema, language, errors)
        records: list = []
        for key, value in answer:
            kind = resolve(str(key))
            if kind is None:
                errors.append(f"unknown {self.type_noun} '{snippet(str(key), 200)}' "
                              "(not in the schema): dropped")
                continue
            records.extend(read(kind, key, value))
        return unique(records)

    # ---- what the shared stages ask of a task ---------------------------------------------------
    def records(self, document: Document) -> tuple:
        return getattr(document, self.record_field)

    def with_records(self, document: Document, records: Iterable[Any]) -> Document:
        """``document`` holding ``records`` as its only records (other tasks' fields emptied)."""
        empty = {task.record_field: () for task in _TASKS.values()}
        return replace(document, **{**empty, self.record_field: tuple(records)})

    def ground(self, text: str, records: Sequence[Any], options: GroundingOptions
               ) -> tuple[list, list[str]]:
        """Records placed in ``text`` (see deepke_llm/grounding.py); never drops one."""
        raise NotImplementedError

    def score_tuples(self, document: Document, mode: str, span: SpanOf
                     ) -> dict[str | None, list[tuple]]:
        """Per level, the tuples scoring ``mode`` compares (see evaluation/spans.py)."""
        raise NotImplementedError

    def iepile_tuples(self, key: str, item: Any, where: str, note: Note) -> list[tuple]:
        """IEPile's evaluator tuples of one output item under ``key`` (evaluation/iepile_eval.py)."""
        raise NotImplementedError

    def iepile_label_tuple(self, item: Mapping[str, Any]) -> tuple:
        """IEPile's evaluator tuple of one ``label`` item."""
        raise NotImplementedError

    def iepile_levels(self, tuples: list[tuple]) -> dict[str | None, list[tuple]]:
        """IEPile tuples per scoring level."""
        return {None: list(tuples)}

    def iepile_label_item(self, key: str, item: Any) -> dict[str, Any] | None:
        """One item of an IEPile output object (under type ``key``) in the test files' ``label``
        form; None when the item has the wrong shape."""
        raise NotImplementedError

    # ---- what the scoring checks ask of a task ---------------------------------------------------
    def named_mentions(self, record: Any) -> Iterable[tuple[str, Any]]:
        """(field path suffix, mention) of every span-bearing part of ``record``."""
        return (("", mention) for mention in record.mentions())

    def used_types(self, record: Any) -> Iterable[tuple[str, str, str]]:
        """(field path suffix, kind, name) of every schema type ``record`` uses (see
        :meth:`known_types` for the names)."""
        yield ".type", self.type_kind, record.type

    def known_types(self, schema: Schema) -> set[str]:
        """The names :meth:`used_types` may give that ``schema`` defines."""
        return {t.name for t in schema.types_for(self.name)}

    @staticmethod
    def shown_names(schema: Schema, task: str, language: str) -> dict[str, str]:
        """Canonical type name -> the name shown in ``language``."""
        return {t.name: t.display(language, schema.language) for t in schema.types_for(task)}


_SNIPPET = reprlib.Repr()
_SNIPPET.maxlevel, _SNIPPET.maxstring, _SNIPPET.maxother = 3, 60, 60


def snippet(value: Any, limit: int = 60) -> str:
    """A short text of ``value`` for an error line, bounded however large or deep it is (str()
    of a value nested 900 deep raises RecursionError; of a 1 MB one, it is a 1 MB error)."""
    try:
        text = value if isinstance(value, str) else _SNIPPET.repr(value)
    except ValueError:  # repr() of an int past Python's 4,300-digit limit
        text = f"<{type(value).__name__}>"
    return text[:limit]


def type_resolver(schema: Schema, task: str, language: str) -> Callable[[str], Any]:
    """:meth:`Schema.resolve` for one parse with its tables built once (on first use): a long
    answer names types thousands of times, and each ``resolve`` rebuilt them and folded every
    name on a miss (1 MB of KnowLM lines took 9 s)."""
    tables: list[dict[str, Any]] = []

    def resolve(shown: str) -> Any:
        if not tables:
            table = schema.by_display(task, language)
            folded: dict[str, Any] = {}
            for key, item in table.items():
                folded.setdefault(fold_name(key), item)  # the first type wins, as in resolve
            tables.extend((table, folded))
        found = tables[0].get(shown)
        return found if found is not None else tables[1].get(fold_name(shown))

    return resolve


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in EMPTY_VALUES)


_END = object()
_TEXT_KEYS = ("entity", "text", "name", "mention", "value", "argument", "@value")


def as_strings(value: Any) -> list[str]:
    """Mentions in a value that may be a string, a number, a list, or a dict with a text field.

    Lists are read depth first without recursion (a hostile answer may nest hundreds deep);
    NaN and infinite numbers name nothing.
    """
    out: list[str] = []
    stack = [iter((value,))]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif is_empty(item):
            continue
        elif isinstance(item, str):
            out.append(item.strip())
        elif isinstance(item, float):
            if math.isfinite(item):
                out.append(str(item))
        elif isinstance(item, int) and not isinstance(item, bool):
            with contextlib.suppress(ValueError):  # an int past Python's 4,300-digit str limit
                out.append(str(item))
        elif isinstance(item, Mapping):
            key = next((k for k in _TEXT_KEYS if k in item), None)
            if key is not None:
                stack.append(iter((item[key],)))
        elif isinstance(item, (list, tuple)):
            stack.append(iter(item))
    return out


def as_list(value: Any) -> list[Any]:
    if is_empty(value):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def lookup(mapping: Mapping[str, Any], *keys: str) -> Any:
    """First present key, compared case-insensitively."""
    folded = {str(k).strip().lower(): v for k, v in mapping.items()}
    for key in keys:
        if key in folded:
            return folded[key]
    return None


def unique(items: Iterable[Any]) -> list[Any]:
    """Items in first-seen order without repeats."""
    seen: set[Any] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
