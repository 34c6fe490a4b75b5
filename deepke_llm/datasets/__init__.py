"""Dataset readers: benchmark files -> :class:`~deepke_llm.records.Document` streams.

Every reader is a function ``reader(path, schema=None, *, errors=None, id_prefix=None, **opts)``
that checks its input eagerly and returns a generator of Documents with exact character offsets
(``text[start:end] == mention``). Types carry the schema's canonical names when a schema is given
(an unknown label is reported once and kept), the dataset's raw labels otherwise. A bad record is
reported as one line naming ``file:line`` — appended to ``errors`` when a list is given, logged
as a warning otherwise — and skipped; it never stops the run.

Ids are stable: the dataset's own string id when present and unique (DuEE ``id``, OneIE
``sent_id``, TextEE ``wnd_id``), else ``{prefix}-{n}`` with ``n`` the sentence (CoNLL, BIO),
record (SpERT) or 0-based line (JSON lines) index, ``{prefix}-{PID}-{n}`` for FewRel, the
sentence index for FinRE (one Document per sentence, its pairs on consecutive lines); any other
original id is kept in ``meta["orig_id"]``. Token formats keep each token's ``[start, end]`` in
``meta["tokens"]``.

    >>> from deepke_llm.datasets import read_dataset
    >>> docs = read_dataset("conll03", "eng.testb", schema="conll03", split="test")
    >>> next(docs).id
    'conll03-test-0'
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, MutableSequence
from pathlib import Path
from typing import Any

from deepke_llm.records import Document
from deepke_llm.schema import Schema

from .bio import read_bio
from .bmes import read_bmes
from .common import DatasetError, Problems, as_schema, default_prefix
from .conll import read_conll
from .duee import read_duee
from .duie import read_duie
from .fewfc import read_fewfc
from .fewrel import read_fewrel
from .finre import read_finre
from .hf import from_hf_dataset, to_hf_dataset
from .oneie import read_oneie
from .phee import read_phee
from .spert import read_spert

__all__ = ["READERS", "DatasetError", "Problems", "from_hf_dataset", "read_dataset",
           "register_reader", "to_hf_dataset"]

Reader = Callable[..., Iterator[Document]]

#: format name -> reader function (what ``deepke-llm convert --format`` accepts)
READERS: dict[str, Reader] = {}


def register_reader(name: str, reader: Reader) -> Reader:
    """Add a reader under a new format name; a name already taken is an error."""
    if name in READERS:
        raise ValueError(f"a dataset reader named '{name}' is already registered")
    READERS[name] = reader
    return reader


for _name, _reader in (("conll03", read_conll), ("spert", read_spert), ("oneie", read_oneie),
                       ("duee", read_duee), ("duie", read_duie), ("bio", read_bio),
                       ("fewrel", read_fewrel), ("bmes", read_bmes), ("fewfc", read_fewfc),
                       ("phee", read_phee), ("finre", read_finre)):
    register_reader(_name, _reader)


def reader_options(format: str) -> list[str]:
    """The extra keyword options a format's reader accepts (e.g. ``unit`` for conll03)."""
    common = {"path", "schema", "errors", "id_prefix"}
    return [name for name in inspect.signature(_reader_for(format)).parameters
            if name not in common]


def _reader_for(format: str) -> Reader:
    try:
        return READERS[format]
    except KeyError:
        raise DatasetError(f"unknown dataset format '{format}': use one of "
                           f"{', '.join(sorted(READERS))}") from None


def read_dataset(format: str, path: str | Path, schema: Schema | str | None = None,
                 split: str | None = None, *, errors: MutableSequence[str] | Problems | None = None,
                 **opts: Any) -> Iterator[Document]:
    """Stream Documents from a dataset file of ``format`` (a key of :data:`READERS`).

    ``schema`` (name, path or Schema) maps dataset labels to canonical type names. Ids are
    ``{prefix}-{n}``: ``prefix`` is ``opts["id_prefix"]``, else ``{schema name or format}-{split}``
    when ``split`` is given, else the file name. Raises :class:`DatasetError` for an unknown
    format or option, or an unreadable file.
    """
    reader = _reader_for(format)
    unknown = sorted(set(opts) - set(reader_options(format)) - {"id_prefix"})
    if unknown:
        accepted = ", ".join(reader_options(format)) or "none"
        raise DatasetError(f"format '{format}' has no option {', '.join(map(repr, unknown))} "
                           f"(its options: {accepted})")
    loaded = as_schema(schema)
    if not opts.get("id_prefix"):
        # a schema name like "conll03" makes ids read "conll03-test-17"; free-form names do not
        dataset = loaded.name if loaded and re.fullmatch(r"[\w.-]+", loaded.name) else format
        opts["id_prefix"] = default_prefix(path, split, dataset)
    return reader(path, loaded, errors=errors, **opts)
