"""Readers for the four inputs: KB entities, KB triples, relation inventory and corpus.

Every reader streams its file (``.gz``/``.bz2`` too) and never stops on a bad record: the problem
is counted by kind and reported as ``file:line: what`` to the one error sink
(:class:`deepke_llm.problems.Problems`), and the record is skipped. JSON lines are read as every
JSON-lines input is (:mod:`deepke_llm.io`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepke_llm.io import LineError, decode_line, json_value, nonblank_lines, open_input, read_jsonl
from deepke_llm.problems import Problems


class InputError(ValueError):
    """An input that cannot be used at all (missing file, unreadable relation inventory)."""


@dataclass(frozen=True)
class EntityRecord:
    id: str
    aliases: tuple[str, ...]
    label: str = ""
    description: str = ""
    types: tuple[str, ...] = ()
    popularity: float | None = None


@dataclass(frozen=True)
class RelationInfo:
    """One relation of the inventory; ``name`` is English (or the only) name."""

    id: str
    name: str
    name_zh: str = ""
    description: str = ""
    head_types: tuple[str, ...] = ()
    tail_types: tuple[str, ...] = ()
    symmetric: bool | None = None  # None: not declared, inferred from the KB
    conflicts_with: tuple[str, ...] = ()

    def display(self, language: str) -> str:
        """The relation name shown in ``language`` (falls back to ``name``)."""
        return self.name_zh or self.name if language == "zh" else self.name


def _require(path: str | Path) -> str:
    text = str(path)
    if not Path(text).is_file():
        raise InputError(f"{text}: file not found")
    return text


def _decoded_lines(path: str) -> Iterator[tuple[int, str | LineError]]:
    """``(line_number, text)`` of non-blank lines; the error instead of the text when a line is
    not valid UTF-8."""
    for number, raw in nonblank_lines(path):
        try:
            line = decode_line(raw, f"{path}:{number}").rstrip("\r\n")
        except LineError as exc:
            yield number, exc
            continue
        if line.strip():
            yield number, line


def text_lines(path: str, issues: Problems) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of non-blank lines; undecodable lines are counted."""
    for number, line in _decoded_lines(path):
        if isinstance(line, LineError):
            issues.add("broken_line", str(line))
        else:
            yield number, line


def _json_lines(path: str, issues: Problems) -> Iterator[tuple[int, Any]]:
    return read_jsonl(path, lambda message: issues.add("broken_line", message))


def _strings(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    seen: dict[str, None] = {}
    for item in value:
        item = item.strip()
        if item:
            seen.setdefault(item, None)
    return tuple(seen)


def read_entities(path: str | Path, issues: Problems) -> Iterator[EntityRecord]:
    """Stream KB entities from JSON lines ``{"id", "aliases", "label"?, "description"?, ...}``.

    An entity without usable aliases falls back to its label; with neither it is still yielded
    (triples may name it) and counted as ``empty_aliases``. Duplicate ids are counted and the
    later line is skipped.
    """
    path = _require(path)
    seen: set[str] = set()
    for number, data in _json_lines(path, issues):
        where = f"{path}:{number}"
        if not isinstance(data, dict):
            issues.add("broken_line", f"{where}: expected a JSON object")
            continue
        entity_id = data.get("id")
        if not isinstance(entity_id, str) or not entity_id.strip():
            issues.add("missing_id", f"{where}: missing or empty field 'id'")
            continue
        if entity_id in seen:
            issues.add("duplicate_id", f"{where}: duplicate entity id '{entity_id}'; line skipped")
            continue
        seen.add(entity_id)
        aliases = _strings(data.get("aliases", []))
        if aliases is None:
            issues.add("broken_line", f"{where}.aliases: expected a list of strings")
            aliases = ()
        label = data.get("label") if isinstance(data.get("label"), str) else ""
        if label.strip() and label.strip() not in aliases:
            aliases = (label.strip(), *aliases)
        if not aliases:
            issues.add("empty_aliases", f"{where}: entity '{entity_id}' has no aliases and no "
                                        "label; it can be related but never mentioned")
        types = _strings(data.get("types", [])) or ()
        popularity = data.get("popularity")
        if popularity is not None and (isinstance(popularity, bool)
                                       or not isinstance(popularity, int | float)):
            issues.add("broken_field", f"{where}.popularity: expected a number; ignored")
            popularity = None
        description = data.get("description")
        yield EntityRecord(entity_id, aliases, label.strip(),
                           description if isinstance(description, str) else "", types,
                           None if popularity is None else float(popularity))


_TRIPLE_KEYS = (("head", "relation", "tail"), ("subject", "predicate", "object"), ("h", "r", "t"))


def read_triples(path: str | Path, issues: Problems) -> Iterator[tuple[str, str, str, str]]:
    """Stream ``(head, relation, tail, "file:line")`` from a TSV or JSON-lines triple file.

    TSV: three tab-separated columns (a ``head relation tail`` header line is skipped). JSON lines:
    ``{"head", "relation", "tail"}`` (``subject/predicate/object`` also read).
    """
    path = _require(path)
    for number, line in text_lines(path, issues):
        where = f"{path}:{number}"
        if line.lstrip().startswith("{"):
            try:
                data = json_value(line, where)
            except LineError as exc:
                issues.add("broken_line", str(exc))
                continue
            fields = next(([data.get(k) for k in keys] for keys in _TRIPLE_KEYS
                           if isinstance(data, dict) and all(k in data for k in keys)), None)
        else:
            fields = [f.strip() for f in line.split("\t")]
            if number == 1 and [f.lower() for f in fields] in ([*k] for k in _TRIPLE_KEYS):
                continue
        if fields is None or len(fields) != 3 or not all(isinstance(f, str) and f
                                                         for f in fields):
            issues.add("broken_line", f"{where}: expected head, relation and tail "
                                      "(3 tab-separated columns or a JSON object)")
            continue
        yield fields[0], fields[1], fields[2], where


def read_relations(path: str | Path, issues: Problems) -> list[RelationInfo]:
    """Read the relation inventory: a JSON object id -> ``{"name", ...}`` or ``[name, description]``.

    Also accepted: id -> name string, and a JSON list of objects carrying ``"id"``. A bad entry is
    counted and skipped; a file that is not JSON raises :class:`InputError`.
    """
    path = _require(path)
    try:
        with open(path, encoding="utf-8") as handle:
            # pairs, not a dict: a relation id given twice must be seen to be reported
            data = json.load(handle, object_pairs_hook=_Pairs)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid UTF-8 JSON ({exc}); expected an object "
                         "relation id -> {\"name\", ...} or [name, description]") from None
    if isinstance(data, list) and not isinstance(data, _Pairs):
        items = [(item.get("id") if isinstance(item, _Pairs) else None, item) for item in data]
    elif isinstance(data, _Pairs):
        items = list(data)
    else:
        raise InputError(f"{path}: expected a JSON object relation id -> definition")
    relations: list[RelationInfo] = []
    seen: set[str] = set()
    for rel_id, value in items:
        where = f"{path}: relation '{rel_id}'"
        if not isinstance(rel_id, str) or not rel_id:
            issues.add("broken_relation", f"{path}: a relation without an id; skipped")
            continue
        if rel_id in seen:
            issues.add("duplicate_id", f"{where}: duplicate relation id; skipped")
            continue
        info = _relation_info(rel_id, value)
        if info is None:
            issues.add("broken_relation", f"{where}: expected {{\"name\", ...}}, "
                                          "[name, description] or a name string; skipped")
            continue
        seen.add(rel_id)
        relations.append(info)
    return relations


class _Pairs(list):
    """A JSON object as its list of (key, value) pairs, duplicates kept; ``get`` finds the last."""

    def get(self, key: str, default: Any = None) -> Any:
        for name, value in reversed(self):
            if name == key:
                return value
        return default


def _relation_info(rel_id: str, value: Any) -> RelationInfo | None:
    if isinstance(value, str) and value.strip():
        return RelationInfo(rel_id, value.strip())
    if isinstance(value, list) and not isinstance(value, _Pairs) and value and all(isinstance(v, str) for v in value):
        return RelationInfo(rel_id, value[0].strip() or rel_id,
                            description=value[1] if len(value) > 1 else "")
    if isinstance(value, _Pairs):
        name = value.get("name") or value.get("name_en") or value.get("name_zh")
        if not isinstance(name, str) or not name.strip():
            return None
        symmetric = value.get("symmetric")
        return RelationInfo(
            rel_id, name.strip(),
            name_zh=str(value.get("name_zh") or ""),
            description=str(value.get("description") or ""),
            head_types=_strings(value.get("head_types", [])) or (),
            tail_types=_strings(value.get("tail_types", [])) or (),
            symmetric=symmetric if isinstance(symmetric, bool) else None,
            conflicts_with=_strings(value.get("conflicts_with", [])) or ())
    return None


def corpus_format(path: str) -> str:
    """``"jsonl"`` when the corpus is JSON lines ``{"id","text"}``, else ``"text"``."""
    if path.endswith((".jsonl", ".jsonl.gz", ".jsonl.bz2", ".json")):
        return "jsonl"
    if path.endswith((".txt", ".txt.gz", ".txt.bz2")):
        return "text"
    with open_input(path) as handle:
        for raw in handle:
            if raw.strip():
                return "jsonl" if raw.lstrip().startswith(b"{") else "text"
    return "text"


def read_corpus(path: str | Path, issues: Problems,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream ``(line_number, {"id", "text", ...})`` corpus records of one shard.

    Records are dealt round-robin over shards by their position among non-blank lines, so
    ``--shard i/n`` for i in 0..n-1 partitions the corpus. Plain-text lines get the id
    ``line-N``; JSON lines without an id too (counted as ``missing_id``).
    """
    path = _require(path)
    index, count = shard
    kind = corpus_format(path)
    ordinal = -1
    for number, line in _decoded_lines(path):
        ordinal += 1
        if ordinal % count != index:
            continue  # another shard's line, problems included
        if isinstance(line, LineError):
            issues.add("broken_line", str(line))
            continue
        if kind == "text":
            yield number, {"id": f"line-{number}", "text": line.strip()}
            continue
        where = f"{path}:{number}"
        try:
            data = json_value(line, where)
        except LineError as exc:
            issues.add("broken_line", str(exc))
            continue
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            issues.add("broken_line", f"{where}: expected a JSON object with a string 'text'")
            continue
        doc_id = data.get("id")
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            data["id"] = str(doc_id)
        elif not isinstance(doc_id, str) or not doc_id:
            issues.add("missing_id", f"{where}: missing 'id'; using 'line-{number}'")
            data["id"] = f"line-{number}"
        yield number, data
