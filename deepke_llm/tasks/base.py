"""What every task shares: the Task interface, the registry, and value-normalising helpers.

A task (``ner``, ``re``, ``ee``) knows its schema items, how gold records become the IEPile output
object (training data), how a model output becomes records (parsing, per prompt style), and which
records of a Document it owns. Parsers are pure and total: ``str -> (records, errors)``.
"""

from __future__ import annotations

import contextlib
import math
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any, ClassVar

from deepke_llm.records import Document
from deepke_llm.schema import Schema
from deepke_llm.schema import _fold as fold_name  # the folding Schema.resolve uses

# what models write for "nothing here"
EMPTY_VALUES = frozenset({"", "nan", "none", "null", "n/a", "无", "空", "没有", "不存在"})

_TASKS: dict[str, Task] = {}


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

    def schema_items(self, schema: Schema, language: str) -> list[Any]:
        """The IEPile ``schema`` list for ``schema`` (already one chunk), names in ``language``."""
        raise NotImplementedError

    def to_output(self, document: Document, schema: Schema, language: str) -> dict[str, Any]:
        """Gold records of ``document`` as the IEPile output object for one schema chunk."""
        raise NotImplementedError

    def to_label(self, document: Document, schema: Schema, language: str) -> list[dict[str, Any]]:
        """Gold records in IEPile's test-file ``label`` list form, type names as shown in
        ``language``."""
        raise NotImplementedError

    def parse_iepile(self, output: str, schema: Schema, language: str) -> tuple[list, list[str]]:
        """Records (offsets unset) from an IEPile-style JSON output; never raises."""
        raise NotImplementedError

    def knowlm_instruction(self, schema: Schema, language: str) -> str:
        """The free-text ZhiXi / KnowLM instruction for this task."""
        raise NotImplementedError

    def parse_knowlm(self, output: str, schema: Schema, language: str) -> tuple[list, list[str]]:
        """Records (offsets unset) from ``(a,b,c)`` lines; never raises."""
        raise NotImplementedError

    @staticmethod
    def shown_names(schema: Schema, task: str, language: str) -> dict[str, str]:
        """Canonical type name -> the name shown in ``language``."""
        return {t.name: t.display(language, schema.language) for t in schema.types_for(task)}

    def records(self, document: Document) -> tuple:
        return getattr(document, self.record_field)


# no model answers with more (1M characters is ~250k tokens): past it, parsing and grounding a
# hostile answer would only cost time
MAX_OUTPUT_CHARS = 1_000_000


def guarded(parse: Callable[..., tuple[list, list[str]]]) -> Callable[..., tuple[list, list[str]]]:
    """Make a parser total: an unexpected exception becomes an error string, never a crash, and an
    output longer than :data:`MAX_OUTPUT_CHARS` is read only that far (with an error saying so)."""

    def wrapper(self: Task, output: str, schema: Schema, language: str) -> tuple[list, list[str]]:
        notes = []
        if isinstance(output, str) and len(output) > MAX_OUTPUT_CHARS:
            notes.append(f"output is {len(output):,} characters; read only the first "
                         f"{MAX_OUTPUT_CHARS:,}")
            output = output[:MAX_OUTPUT_CHARS]
        try:
            records, errors = parse(self, output, schema, language)
        except Exception as exc:  # noqa: BLE001 - parsers must never raise (DESIGN.md)
            return [], notes + [f"{self.name} parser failed on this output ({type(exc).__name__}: "
                                f"{snippet(str(exc))})"]
        return records, notes + errors

    wrapper.__name__ = parse.__name__
    wrapper.__doc__ = parse.__doc__
    return wrapper


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
