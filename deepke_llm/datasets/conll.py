"""CoNLL-2003 column files (``token POS chunk NER``, one token per line) -> Documents.

Tags may be IOB1 (``I-`` opens a span, ``B-`` only separates adjacent spans of one type, as in
the original CoNLL-2003 release), IOB2 or BIOES; spans are decoded with seqeval's chunker, the
conlleval rules the field scores with. ``-DOCSTART-`` lines start a new document.

Tokens are joined by single spaces; with ``unit="document"`` the sentences of one document are
joined by ``"\\n"``. Every document carries ``meta["tokens"]``, the ``[start, end]`` of each
token, so token-level tools (seqeval) can map spans back to tokens; sentence documents carry
``meta["document"]`` (index of their ``-DOCSTART-`` document, in files that have them),
document-level ones ``meta["sentences"]`` (``[start, end]`` of each sentence).

The column machinery here is shared with the character BIO reader (:mod:`.bio`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, MutableSequence
from dataclasses import dataclass, field
from pathlib import Path

from deepke_llm.records import Document, Entity
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
)

__all__ = ["TaggedSentence", "decode_tags", "iter_tagged_sentences", "read_conll",
           "tagged_documents"]

_TAG = re.compile(r"^(?:O|[BIES]-\S+)$")
DOCSTART = "-DOCSTART-"


@dataclass
class TaggedSentence:
    """Tokens with their tags, the file line of each token and the document they belong to."""

    document: int | None  # index of the -DOCSTART- document; None before any -DOCSTART-
    tokens: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)


def decode_tags(tags: list[str]) -> list[tuple[str, int, int]]:
    """Spans ``(label, start_token, end_token_exclusive)`` of an IOB1/IOB2/BIOES tag sequence."""
    # seqeval's chunker implements the conlleval rules (I- after O or another type opens a span)
    from seqeval.metrics.sequence_labeling import get_entities

    return [(label, start, end + 1) for label, start, end in get_entities(list(tags))]


def _conll_columns(line: str, token_column: int, tag_column: int) -> tuple[str, str] | None:
    columns = line.split()
    if len(columns) < 2:
        return None
    try:
        return columns[token_column], columns[tag_column]
    except IndexError:
        return None


def iter_tagged_sentences(path: str, problems: Problems,
                          split_line: Callable[[str], tuple[str, str] | None],
                          ) -> Iterator[TaggedSentence]:
    """Stream sentences (blank-line separated) of a token-per-line tagged file.

    ``split_line`` turns a line into ``(token, tag)`` or None when malformed (reported, skipped).
    A tag that is not ``O``/``B-X``/``I-X``/``E-X``/``S-X`` is reported and read as ``O``.
    """
    document: int | None = None
    document_has_content = False
    sentence = TaggedSentence(document)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                problems.report(f"{path}:{number}: not valid UTF-8; line skipped "
                                f"(re-encode the file as UTF-8)")
                continue
            if not line.strip() or line.split()[0] == DOCSTART:
                if sentence.tokens:
                    yield sentence
                if line.strip():  # -DOCSTART-
                    if document is None:
                        document = 0
                    elif document_has_content:
                        document += 1
                    document_has_content = False
                sentence = TaggedSentence(document)
                continue
            parts = split_line(line)
            if parts is None or not parts[0]:
                problems.report(f"{path}:{number}: expected a token and a tag, got {line!r}; "
                                f"line skipped")
                continue
            token, tag = parts
            if not _TAG.match(tag):
                problems.report(f"{path}:{number}: tag '{tag}' is not O or B-/I-/E-/S-TYPE; "
                                f"read as O")
                tag = "O"
            sentence.tokens.append(token)
            sentence.tags.append(tag)
            sentence.lines.append(number)
            document_has_content = True
    if sentence.tokens:
        yield sentence


def _sentence_entities(path: str, sentence: TaggedSentence, text: str,
                       offsets: list[list[int]], names: TypeNames) -> list[Entity]:
    entities = []
    for label, first, last in decode_tags(sentence.tags):
        start, end = offsets[first][0], offsets[last - 1][1]
        name = names(label, f"{path}:{sentence.lines[first]}")
        entities.append(Entity(type=name, text=text[start:end], start=start, end=end))
    return entities


def tagged_documents(path: str, sentences: Iterator[TaggedSentence], *, schema: Schema | None,
                     problems: Problems, id_prefix: str, unit: str, separator: str,
                     language: str) -> Iterator[Document]:
    """Turn tagged sentences into sentence- or document-level Documents (see module doc)."""
    names = TypeNames(schema, "ner", problems)
    ids = DocumentIds(id_prefix, problems)
    if unit == "sentence":
        for index, sentence in enumerate(sentences):
            text, offsets = join_tokens(sentence.tokens, separator)
            doc_id, meta = ids.assign(index)
            if sentence.document is not None:
                meta["document"] = sentence.document
            yield Document(id=doc_id, text=text, language=language,
                           entities=tuple(_sentence_entities(path, sentence, text, offsets, names)),
                           meta={**meta, "tokens": offsets})
        return

    def build(index: int, group: list[TaggedSentence]) -> Document:
        texts: list[str] = []
        entities: list[Entity] = []
        all_offsets: list[list[int]] = []
        bounds: list[list[int]] = []
        base = 0
        for sentence in group:
            text, offsets = join_tokens(sentence.tokens, separator)
            entities += [Entity(e.type, e.text, e.start + base, e.end + base)
                         for e in _sentence_entities(path, sentence, text, offsets, names)]
            all_offsets += [[s + base, e + base] for s, e in offsets]
            bounds.append([base, base + len(text)])
            texts.append(text)
            base += len(text) + 1  # the "\n" between sentences
        doc_id, meta = ids.assign(f"doc{index}")
        return Document(id=doc_id, text="\n".join(texts), language=language,
                        entities=tuple(entities),
                        meta={**meta, "sentences": bounds, "tokens": all_offsets})

    group: list[TaggedSentence] = []
    count = 0
    for sentence in sentences:
        if group and sentence.document != group[0].document:
            yield build(count, group)
            count += 1
            group = []
        group.append(sentence)
    if group:
        yield build(count, group)


def read_conll(path: str | Path, schema: Schema | str | None = None, *,
               errors: MutableSequence[str] | Problems | None = None, id_prefix: str | None = None,
               unit: str = "sentence", token_column: int = 0, tag_column: int = -1,
               language: str = "en") -> Iterator[Document]:
    """Stream Documents from a CoNLL-2003 style column file.

    ``unit`` is ``"sentence"`` (one Document per sentence, ids ``{prefix}-{n}``) or
    ``"document"`` (one per ``-DOCSTART-`` document, ids ``{prefix}-doc{n}``).
    """
    path = check_file(path)
    check_unit(unit)
    problems = as_problems(errors)
    sentences = iter_tagged_sentences(
        path, problems, lambda line: _conll_columns(line, token_column, tag_column))
    return tagged_documents(path, sentences, schema=as_schema(schema), problems=problems,
                            id_prefix=id_prefix or default_prefix(path), unit=unit,
                            separator=" ", language=language)


def check_unit(unit: str) -> None:
    """Raise DatasetError unless ``unit`` is ``sentence`` or ``document``."""
    if unit not in ("sentence", "document"):
        raise DatasetError(f"unit must be 'sentence' or 'document', not '{unit}'")
