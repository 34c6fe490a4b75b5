"""FewRel JSON -> one Document per instance, each with one relation linked to Wikidata.

A file is ``{PID: [{"tokens", "h": [name, QID, [[token index, ...], ...]], "t": [...]}]}``.
Tokens are joined by single spaces (as for all token data; a detokenised text is
KG2Instruction's business) and ``meta["tokens"]`` holds each token's ``[start, end]``. Head and
tail span the tokens of their first listed mention (FewRel lists every mention of an entity)
and carry ``kb_id`` = QID; the entity text is the sentence's own
text (FewRel's ``name`` is lower-cased). Entities are untyped (``type`` ""): FewRel has no types.

The relation's ``type`` is the schema's name for the PID when a schema is given, else the name
from ``relations.json`` next to the file (``{PID: [name, description]}``), else the PID; its
``kb_relation`` is always the PID, which ``meta["pid"]`` repeats. Ids are ``{prefix}-{PID}-{n}``.
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
    load_json_file,
)

__all__ = ["read_fewrel", "relation_names_near"]


def read_fewrel(path: str | Path, schema: Schema | str | None = None, *,
                errors: MutableSequence[str] | Problems | None = None,
                id_prefix: str | None = None, relations: str | Path | None = None,
                language: str = "en") -> Iterator[Document]:
    """Stream Documents from a FewRel JSON file.

    ``relations`` is a ``relations.json`` path (default: the one next to ``path``, if any).
    """
    path = check_file(path)
    data = load_json_file(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object {{PID: [instances]}}, got "
                           f"{type(data).__name__}")
    loaded = as_schema(schema)
    names = {} if loaded is not None else relation_names_near(path, relations)
    return _documents(path, data, loaded, names, as_problems(errors),
                      id_prefix or default_prefix(path), language)


def relation_names_near(path: str | Path, relations: str | Path | None = None) -> dict[str, str]:
    """PID -> readable name from ``relations.json`` (given, or next to ``path``); {} if absent."""
    file = Path(relations) if relations is not None else Path(path).with_name("relations.json")
    if not file.is_file():
        if relations is not None:
            raise DatasetError(f"relations file {file} does not exist")
        return {}
    data = load_json_file(str(file))
    if not isinstance(data, dict):
        raise DatasetError(f"{file}: expected a JSON object {{PID: [name, description]}}")
    out = {}
    for pid, value in data.items():
        name = value[0] if isinstance(value, list) and value else value
        if isinstance(name, str) and name:
            out[pid] = name
    return out


def _mention(offsets: list[list[int]], item: Any) -> tuple[str | None, tuple[int, int] | None]:
    """(QID, character span of the first mention) of an ``h``/``t`` entry."""
    if not (isinstance(item, list) and len(item) >= 3 and isinstance(item[2], list) and item[2]):
        return None, None
    qid = item[1] if isinstance(item[1], str) else None
    indices = item[2][0]
    if not (isinstance(indices, list) and indices
            and all(isinstance(i, int) and 0 <= i < len(offsets) for i in indices)):
        return qid, None
    return qid, (offsets[min(indices)][0], offsets[max(indices)][1])


def _documents(path: str, data: dict[str, Any], schema: Schema | None, file_names: dict[str, str],
               problems: Problems, prefix: str, language: str) -> Iterator[Document]:
    schema_names = TypeNames(schema, "re", problems)
    ids = DocumentIds(prefix, problems)
    for pid, instances in data.items():
        if not isinstance(instances, list):
            problems.report(f"{path}: {pid}: expected a list of instances; relation skipped")
            continue
        relation_type = schema_names(pid, f"{path}: {pid}") if schema is not None \
            else file_names.get(pid, pid)
        for n, instance in enumerate(instances):
            where = f"{path}: {pid}[{n}]"
            tokens = instance.get("tokens") if isinstance(instance, dict) else None
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                problems.report(f"{where}: 'tokens' must be a list of strings; instance skipped")
                continue
            text, offsets = join_tokens(tokens)
            ends = []
            for key in ("h", "t"):
                qid, span = _mention(offsets, instance.get(key))
                if span is None:
                    problems.report(f"{where}: '{key}' must be [name, QID, [[token index, ...]]] "
                                    f"with indices below {len(tokens)}; instance skipped")
                    break
                ends.append(Entity("", text[span[0]:span[1]], span[0], span[1], kb_id=qid))
            if len(ends) != 2:
                continue
            doc_id, meta = ids.assign(f"{pid}-{n}")
            yield Document(id=doc_id, text=text, language=language,
                           relations=(Relation(relation_type, ends[0], ends[1], kb_relation=pid),),
                           meta={**meta, "pid": pid, "tokens": offsets})
