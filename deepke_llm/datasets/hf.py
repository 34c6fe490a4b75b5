"""Bridge between Documents and Hugging Face ``datasets``.

:func:`to_hf_dataset` builds a ``datasets.Dataset`` with :meth:`Dataset.from_generator` (streamed
to Arrow, so it scales past memory) using fixed :func:`document_features`; ``meta`` (free-form
per dataset) travels as one JSON string column. :func:`from_hf_dataset` turns the rows of such a
dataset — or of any dataset whose rows look like records (``id``, ``text``, ``entities``, ...) —
back into Documents, reporting bad rows instead of stopping.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, MutableSequence
from typing import TYPE_CHECKING, Any

from deepke_llm.records import Document, RecordError

from .common import Problems, as_problems

if TYPE_CHECKING:  # datasets is heavy; imported only when a function needs it
    import datasets

__all__ = ["document_features", "from_hf_dataset", "to_hf_dataset"]

# Dataset.from_generator fingerprints its generator by pickling it; a one-shot iterator cannot
# be pickled, so the generator gets a unique key and looks its documents up here.
_PENDING: dict[str, Iterable[Document]] = {}


def document_features() -> datasets.Features:
    """Arrow features of a Document row (offsets int64, absent values null)."""
    from datasets import Features, Value

    string, integer = Value("string"), Value("int64")
    entity = {"type": string, "text": string, "start": integer, "end": integer, "kb_id": string}
    span = {"text": string, "start": integer, "end": integer}
    argument = {"role": string, "text": string, "start": integer, "end": integer, "type": string}
    return Features({
        "id": string,
        "text": string,
        "language": string,
        "entities": [entity],
        "relations": [{"type": string, "head": entity, "tail": entity, "kb_relation": string}],
        "events": [{"type": string, "trigger": span, "arguments": [argument]}],
        "raw_output": [string],
        "errors": [string],
        "meta": string,
    })


def _entity_row(entity: Any) -> dict[str, Any]:
    return {"type": entity.type, "text": entity.text, "start": entity.start, "end": entity.end,
            "kb_id": entity.kb_id}


def document_row(document: Document) -> dict[str, Any]:
    """A Document as a row matching :func:`document_features`."""
    return {
        "id": document.id,
        "text": document.text,
        "language": document.language,
        "entities": [_entity_row(e) for e in document.entities],
        "relations": [{"type": r.type, "head": _entity_row(r.head), "tail": _entity_row(r.tail),
                       "kb_relation": r.kb_relation} for r in document.relations],
        "events": [{"type": e.type, "trigger": e.trigger.to_dict(),
                    "arguments": [{**a.to_dict(), "type": a.type} for a in e.arguments]}
                   for e in document.events],
        "raw_output": list(document.raw_output) if document.raw_output is not None else None,
        "errors": list(document.errors),
        "meta": json.dumps(dict(document.meta), ensure_ascii=False) if document.meta else None,
    }


def _rows(key: str) -> Iterator[dict[str, Any]]:
    for document in _PENDING.pop(key):
        yield document_row(document)


def to_hf_dataset(documents: Iterable[Document], cache_dir: str | None = None,
                  keep_in_memory: bool = False) -> datasets.Dataset:
    """Build a ``datasets.Dataset`` from Documents (one row per Document)."""
    from datasets import Dataset

    key = uuid.uuid4().hex
    _PENDING[key] = documents
    try:
        return Dataset.from_generator(_rows, features=document_features(), cache_dir=cache_dir,
                                      keep_in_memory=keep_in_memory, gen_kwargs={"key": key})
    finally:
        _PENDING.pop(key, None)


def _drop_nulls(value: Any) -> Any:
    # Arrow fills absent struct fields with None; records treat a missing key and None alike,
    # except that Document.from_dict would keep unknown None keys in meta
    if isinstance(value, Mapping):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def from_hf_dataset(dataset: Iterable[Mapping[str, Any]], *,
                    errors: MutableSequence[str] | Problems | None = None,
                    name: str = "dataset") -> Iterator[Document]:
    """Stream Documents from the rows of a Hugging Face dataset (or any iterable of records).

    A ``meta`` column holding a JSON object string is unpacked into ``Document.meta``; a row
    that is not a valid record is reported as ``{name}: row N: ...`` and skipped.
    """
    problems = as_problems(errors)
    for index, row in enumerate(dataset):
        where = f"{name}: row {index}"
        data = _drop_nulls(dict(row))
        meta = data.pop("meta", None)
        if isinstance(meta, str):
            try:
                meta = json.loads(meta)
            except json.JSONDecodeError:
                problems.report(f"{where}: 'meta' is not a JSON object string; kept as text")
                meta = {"meta": meta}
        if isinstance(meta, Mapping):
            data = {**meta, **data}
        elif meta is not None:
            data["meta"] = meta
        try:
            yield Document.from_dict(data, where)
        except RecordError as exc:
            problems.report(f"{exc}; row skipped")
