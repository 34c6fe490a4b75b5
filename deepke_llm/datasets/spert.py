"""SpERT JSON (CoNLL04, SciERC, ADE in SpERT's layout) -> Documents.

A file is one JSON list of ``{"tokens", "entities": [{"type", "start", "end"}], "relations":
[{"type", "head", "tail"}], "orig_id"}``: entity offsets are token indices (end exclusive),
relation ``head``/``tail`` index into ``entities``. Tokens are joined by single spaces;
``meta["tokens"]`` holds each token's ``[start, end]``. Ids are ``{prefix}-{n}`` (position in the
file); SpERT's integer ``orig_id`` is only unique within one file, so it stays in ``meta``.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableSequence
from pathlib import Path
from typing import Any

from deepke_llm.records import Document, Entity, Relation
from deepke_llm.schema import Schema

from .common import (
    DatasetError,
    DocumentIds,
    Problems,
    TypeNames,
    as_problems,
    as_schema,
    check_file,
    default_prefix,
    join_tokens,
    list_field,
    load_json_file,
    token_span,
)

__all__ = ["read_spert"]


def read_spert(path: str | Path, schema: Schema | str | None = None, *,
               errors: MutableSequence[str] | Problems | None = None,
               id_prefix: str | None = None, language: str = "en") -> Iterator[Document]:
    """Stream Documents (entities and relations) from a SpERT JSON file."""
    path = check_file(path)
    data = load_json_file(path)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of SpERT records, got "
                           f"{type(data).__name__}")
    return _documents(path, data, as_schema(schema), as_problems(errors),
                      id_prefix or default_prefix(path), language)


def _documents(path: str, data: list[Any], schema: Schema | None, problems: Problems,
               prefix: str, language: str) -> Iterator[Document]:
    entity_names = TypeNames(schema, "ner", problems)
    relation_names = TypeNames(schema, "re", problems)
    ids = DocumentIds(prefix, problems)
    for index, record in enumerate(data):
        where = f"{path}: record {index}"
        tokens = record.get("tokens") if isinstance(record, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            problems.report(f"{where}: 'tokens' must be a list of strings; record skipped")
            continue
        text, offsets = join_tokens(tokens)
        entities: list[Entity | None] = []
        for j, item in enumerate(list_field(record, "entities", where, problems)):
            span = token_span(offsets, item.get("start"), item.get("end")) \
                if isinstance(item, dict) else None
            label = item.get("type") if isinstance(item, dict) else None
            if span is None or not isinstance(label, str):
                problems.report(f"{where}: entities[{j}] needs a string 'type' and token offsets "
                                f"0 <= start < end <= {len(tokens)}; entity skipped")
                entities.append(None)
                continue
            start, end = span
            entities.append(Entity(entity_names(label, f"{where} entities[{j}]"),
                                   text[start:end], start, end))
        relations = []
        for j, item in enumerate(list_field(record, "relations", where, problems)):
            head = _entity_at(entities, item.get("head")) if isinstance(item, dict) else None
            tail = _entity_at(entities, item.get("tail")) if isinstance(item, dict) else None
            label = item.get("type") if isinstance(item, dict) else None
            if head is None or tail is None or not isinstance(label, str):
                problems.report(f"{where}: relations[{j}] needs a string 'type' and 'head'/'tail' "
                                f"indices of valid entities; relation skipped")
                continue
            relations.append(Relation(relation_names(label, f"{where} relations[{j}]"),
                                      head, tail))
        doc_id, meta = ids.assign(index, record.get("orig_id"), where)
        yield Document(id=doc_id, text=text, language=language,
                       entities=tuple(e for e in entities if e is not None),
                       relations=tuple(relations), meta={**meta, "tokens": offsets})


def _entity_at(entities: list[Entity | None], index: Any) -> Entity | None:
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(entities):
        return entities[index]
    return None
