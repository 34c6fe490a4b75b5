"""Character BIO files (People's Daily, MSRA) -> Documents.

One character and its tag per line, separated by a TAB or a space (``中 B-ORG``); a blank line
ends a sentence. Tags may be BIO (IOB2), IOB1 or BIOES. Characters are joined without spaces and
the language is ``zh`` (pass ``separator=" "`` and ``language="en"`` for English token-per-line
files). As with CoNLL, ``meta["tokens"]`` holds each character's ``[start, end]``.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableSequence
from pathlib import Path

from deepke_llm.records import Document
from deepke_llm.schema import Schema

from .common import Problems, as_problems, as_schema, check_file, default_prefix
from .conll import check_unit, iter_tagged_sentences, tagged_documents

__all__ = ["read_bio"]


def _split_char_line(line: str) -> tuple[str, str] | None:
    # the tag is the last field; splitting on the last separator keeps a space "character" intact
    if "\t" in line:
        token, _, tag = line.rpartition("\t")
    else:
        token, _, tag = line.rpartition(" ")
    tag = tag.strip()
    return (token, tag) if token and tag else None


def read_bio(path: str | Path, schema: Schema | str | None = None, *,
             errors: MutableSequence[str] | Problems | None = None, id_prefix: str | None = None,
             unit: str = "sentence", separator: str = "", language: str = "zh",
             ) -> Iterator[Document]:
    """Stream one Document per sentence (ids ``{prefix}-{n}``) from a character BIO file."""
    path = check_file(path)
    check_unit(unit)
    problems = as_problems(errors)
    sentences = iter_tagged_sentences(path, problems, _split_char_line)
    return tagged_documents(path, sentences, schema=as_schema(schema), problems=problems,
                            id_prefix=id_prefix or default_prefix(path), unit=unit,
                            separator=separator, language=language)
