"""Pieces every dataset reader shares: problem reporting, label -> schema name mapping, ids,
token joining and mention location.

Readers never stop on a bad record: they report a one-line message naming ``file:line`` (or
``file: record N`` for single-JSON files) through :class:`~deepke_llm.problems.Problems` (the one
error sink) and go on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, MutableSequence, Sequence
from pathlib import Path
from typing import Any

from deepke_llm.io import read_jsonl
from deepke_llm.problems import Problems
from deepke_llm.schema import Schema, SchemaError
from deepke_llm.tasks import get_task

__all__ = ["DatasetError", "DocumentIds", "EventNames", "Problems", "TypeNames", "as_problems",
           "as_schema", "check_file", "default_prefix", "join_tokens", "list_field",
           "load_json_file", "locate_mention", "place_mention", "text_lines", "token_span"]

logger = logging.getLogger("deepke_llm.datasets")


class DatasetError(ValueError):
    """The dataset cannot be read at all (missing file, unknown format or option)."""


def check_file(path: str | Path) -> str:
    """Return ``path`` as a string, or raise DatasetError when it is not a readable file."""
    text = str(path)
    file = Path(text)
    if file.is_dir():
        raise DatasetError(f"{text} is a directory: pass one dataset file (e.g. {text}/test.json)")
    if not file.is_file():
        raise DatasetError(f"{text} does not exist: check the --input path")
    return text


_DATA_SUFFIXES = {".json", ".jsonl", ".txt", ".conll", ".bio", ".tsv"}


def default_prefix(path: str | Path, split: str | None = None, dataset: str | None = None) -> str:
    """Id prefix: ``{dataset}-{split}`` when a split is named, else the file name.

    Only well-known data suffixes are dropped, so ``eng.testa`` and ``eng.testb`` keep distinct
    prefixes.
    """
    if split:
        return f"{dataset}-{split}" if dataset else split
    name = Path(path).name
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix in _DATA_SUFFIXES else name


class DocumentIds:
    """Stable document ids: the dataset's own string id when present and unique, else
    ``{prefix}-{index}`` (the original, if any, goes to ``meta['orig_id']``)."""

    def __init__(self, prefix: str, problems: Problems) -> None:
        self.prefix = prefix
        self.problems = problems
        self.seen: set[str] = set()

    def assign(self, index: int | str, original: Any = None, where: str = "") -> tuple[str, dict]:
        meta: dict[str, Any] = {}
        if isinstance(original, str) and original and original not in self.seen:
            doc_id = original
        else:
            if isinstance(original, str) and original:
                self.problems.report(f"{where}: id '{original}' repeats an earlier record; "
                                     f"using '{self.prefix}-{index}' (kept in orig_id)")
            if original is not None and original != "":
                # bare integers are only unique within one file, so they stay in meta
                meta["orig_id"] = original
            doc_id = f"{self.prefix}-{index}"
        self.seen.add(doc_id)
        return doc_id, meta


class TypeNames:
    """Maps dataset labels of one task to the schema's canonical names.

    Without a schema, or when the schema defines no types for the task, labels pass through.
    An unknown label is reported once (at its first occurrence) and kept as it is.
    """

    def __init__(self, schema: Schema | None, task: str, problems: Problems) -> None:
        self.problems = problems
        self.schema_name = schema.name if schema is not None else ""
        self.kind = get_task(task).type_kind
        self.table: dict[str, str] | None = None
        if schema is not None:
            try:
                self.table = {label: item.name for label, item in schema.by_label(task).items()}
            except SchemaError:
                self.table = None
        self.unknown: set[str] = set()

    def __call__(self, label: str, where: str) -> str:
        if self.table is None:
            return label
        name = self.table.get(label)
        if name is not None:
            return name
        if label not in self.unknown:
            self.unknown.add(label)
            self.problems.report(f"{where}: {self.kind} label '{label}' is not in schema "
                                 f"'{self.schema_name}'; kept as is (add it to the schema or "
                                 f"pass another --schema)")
        return label


class EventNames(TypeNames):
    """Event type labels plus, per event type, role labels -> canonical role names."""

    def __init__(self, schema: Schema | None, problems: Problems) -> None:
        super().__init__(schema, "ee", problems)
        self.roles: dict[str, dict[str, str]] = {}
        if self.table is not None and schema is not None:
            self.roles = {e.label: {r.label: r.name for r in e.roles} for e in schema.event_types}
        self.unknown_roles: set[tuple[str, str]] = set()

    def role(self, event_label: str, role_label: str, where: str) -> str:
        roles = self.roles.get(event_label)
        if roles is None:  # no schema, or the event type itself is unknown (already reported)
            return role_label
        name = roles.get(role_label)
        if name is not None:
            return name
        if (event_label, role_label) not in self.unknown_roles:
            self.unknown_roles.add((event_label, role_label))
            self.problems.report(f"{where}: role label '{role_label}' is not a role of event "
                                 f"type '{event_label}' in schema '{self.schema_name}'; kept as is")
        return role_label


def join_tokens(tokens: Iterable[str], separator: str = " ") -> tuple[str, list[list[int]]]:
    """Join tokens with ``separator``; return the text and each token's ``[start, end]``."""
    pieces: list[str] = []
    offsets: list[list[int]] = []
    position = 0
    for i, token in enumerate(tokens):
        if i:
            pieces.append(separator)
            position += len(separator)
        pieces.append(token)
        offsets.append([position, position + len(token)])
        position += len(token)
    return "".join(pieces), offsets


def token_span(offsets: Sequence[Sequence[int]], start: Any, end: Any) -> tuple[int, int] | None:
    """Character span of tokens ``[start, end)``, or None when the indices are not a valid span."""
    valid = (isinstance(start, int) and isinstance(end, int) and not isinstance(start, bool)
             and not isinstance(end, bool) and 0 <= start < end <= len(offsets))
    if not valid:
        return None
    return offsets[start][0], offsets[end - 1][1]


def locate_mention(text: str, mention: str, hint: int | None) -> tuple[int, int] | None:
    """Where ``mention`` occurs in ``text``: at ``hint`` if it matches there, else the occurrence
    nearest to ``hint`` (the first one without a hint), else None."""
    if not mention:
        return None
    if hint is not None and text[hint:hint + len(mention)] == mention:
        return hint, hint + len(mention)
    best: int | None = None
    position = text.find(mention)
    while position != -1:
        if hint is None:
            best = position
            break
        if best is None or abs(position - hint) < abs(best - hint):
            best = position
        position = text.find(mention, position + 1)
    return None if best is None else (best, best + len(mention))


def place_mention(text: str, mention: str, start: Any, field: str,
                  problems: Problems) -> tuple[int | None, int | None]:
    """Offsets of ``mention`` given at index ``start``, checked against ``text``.

    A mismatch is reported and the occurrence nearest to ``start`` is used; a mention absent from
    the text keeps null offsets (reported): nothing is dropped silently.
    """
    hint = start if isinstance(start, int) and not isinstance(start, bool) else None
    span = locate_mention(text, mention, hint)
    if span is None:
        problems.report(f"{field}: {mention!r} does not occur in the text; offsets left null")
        return None, None
    if span[0] != hint:
        given = "no index" if hint is None else \
            f"index {hint} points at {text[hint:hint + len(mention)]!r}"
        problems.report(f"{field}: {given}, not {mention!r}; used its occurrence at {span[0]}")
    return span


def as_problems(errors: MutableSequence[str] | Problems | None) -> Problems:
    """The sink a reader reports to: a caller's :class:`Problems` as it is; a caller's list (or
    any object with ``append``) gets every message; without either, messages are logged as
    warnings, so a library caller is never interrupted by a bad record."""
    if isinstance(errors, Problems):
        return errors
    return Problems(logger.warning if errors is None else errors.append)


def as_schema(schema: Schema | str | Path | None) -> Schema | None:
    """Load a schema given by name or path; None stays None (raw dataset labels)."""
    if schema is None or isinstance(schema, Schema):
        return schema
    from deepke_llm.schema import load_schema

    return load_schema(schema)


def load_json_file(path: str) -> Any:
    """Parse a whole-file JSON dataset; a file that is not JSON cannot be read at all."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not valid UTF-8; re-encode the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column "
                           f"{exc.colno})") from None


def text_lines(path: str, field: str,
               problems: Problems) -> Iterator[tuple[int, str, dict[str, Any], str]]:
    """``(line number, "path:line", the line's object, its text)`` for each JSON line of
    ``path`` whose ``field`` is a string; any other line is reported and skipped."""
    for number, data in read_jsonl(path, problems):
        where = f"{path}:{number}"
        text = data.get(field) if isinstance(data, dict) else None
        if not isinstance(text, str):
            problems.report(f"{where}: missing string field {field!r}; line skipped")
            continue
        yield number, where, data, text


def list_field(data: dict[str, Any], key: str, where: str, problems: Problems) -> list[Any]:
    """``data[key]`` as a list (absent or null: empty); anything else is reported, ignored."""
    value = data.get(key) or []
    if isinstance(value, list):
        return value
    problems.report(f"{where}: {key!r} must be a list; ignored")
    return []
