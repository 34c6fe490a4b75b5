"""FinRE (Chinese financial relation classification) -> one Document per sentence with relations.

Each line is ``head<TAB>tail<TAB>relation<TAB>sentence`` (blank lines between records are
skipped). FinRE lists one line per ordered entity pair, so a sentence spans several consecutive
lines; they become one Document (a sentence repeated later, not next to its lines, starts a new
one). Ids are ``{prefix}-{n}``, ``n`` the 0-based sentence index.

Relations, as the file states them, in one normal form:

* ``unknown`` means no relation: never a record; the pair goes to ``meta["no_relation"]``
  (``[head, tail]`` lists, each unordered pair once), which training can use as negatives;
* a reverse label ``被X`` for (B, A) is folded into ``X`` for (A, B) (FinRE states most facts
  both ways: ``收购`` and ``被收购``), so each fact is one record of one of the 26 forward types;
* the symmetric labels (:data:`SYMMETRIC`: ``合作``, ``竞争``, ``自己`` = two names of one
  company, ...) come in both orders; one record is kept, its head the mention that comes first in
  the sentence;
* a labelled line whose head and tail are the same string (5 in train, 1 in valid) is reported
  and skipped: a relation of a name with itself is noise, not a fact.

FinRE gives no offsets. The mentions of a sentence are grounded with the project's grounder
(:func:`deepke_llm.grounding.ground_entities`, exact text, punctuation kept): every occurrence of
a name that is not inside an occurrence of a longer name of the same sentence (``东汐`` inside
``上海东汐`` is not an occurrence of ``东汐`` while a standalone one exists). When a name occurs
several times, head and tail are the pair of occurrences nearest to each other (ties: the earliest
head, then the earliest tail), the rule :func:`deepke_llm.grounding.ground_relations` applies to
predictions. A name not found keeps null offsets and is reported. Entities are untyped (``""``):
FinRE has no entity types; ``entities`` stays empty, as for DuIE.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableSequence
from pathlib import Path

from deepke_llm.records import Document, Entity, Relation
from deepke_llm.schema import Schema

from .common import (
    DocumentIds,
    Problems,
    TypeNames,
    as_problems,
    as_schema,
    check_file,
    default_prefix,
)

__all__ = ["NO_RELATION", "SYMMETRIC", "read_finre"]

NO_RELATION = "unknown"
REVERSE_PREFIX = "被"
#: FinRE labels stated in both orders with the same name (checked against the data in tests)
SYMMETRIC = frozenset({"自己", "合作", "竞争", "签约", "纠纷", "交易", "重组", "订单", "合并",
                       "合资", "商讨"})

Pair = tuple[str, str, str]  # (label, head, tail) in normal form


def read_finre(path: str | Path, schema: Schema | str | None = None, *,
               errors: MutableSequence[str] | Problems | None = None,
               id_prefix: str | None = None, language: str = "zh") -> Iterator[Document]:
    """Stream one Document per sentence, with grounded relations, from a FinRE file."""
    path = check_file(path)
    return _documents(path, as_schema(schema), as_problems(errors),
                      id_prefix or default_prefix(path), language)


def _sentences(path: str, problems: Problems) -> Iterator[tuple[str, list[tuple[int, list[str]]]]]:
    """(sentence, [(line number, [head, tail, label])]) for each run of lines of one sentence."""
    sentence: str | None = None
    rows: list[tuple[int, list[str]]] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                problems.report(f"{path}:{number}: not valid UTF-8; line skipped "
                                f"(re-encode the file as UTF-8)")
                continue
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 4 or not all(fields[:3]) or not fields[3]:
                problems.report(f"{path}:{number}: expected head, tail, relation and sentence "
                                f"separated by TABs; line skipped")
                continue
            if fields[3] != sentence:
                if rows:
                    yield sentence, rows  # type: ignore[misc]
                sentence, rows = fields[3], []
            rows.append((number, fields[:3]))
    if rows:
        yield sentence, rows  # type: ignore[misc]


def _normal(label: str, head: str, tail: str) -> Pair:
    """One statement of a fact: reverse labels folded, symmetric ones in a fixed order (the
    order is settled by position after grounding; here only so both orders compare equal)."""
    if label.startswith(REVERSE_PREFIX) and len(label) > len(REVERSE_PREFIX):
        return label[len(REVERSE_PREFIX):], tail, head
    if label in SYMMETRIC and tail < head:
        return label, tail, head
    return label, head, tail


def _documents(path: str, schema: Schema | None, problems: Problems, prefix: str,
               language: str) -> Iterator[Document]:
    names = TypeNames(schema, "re", problems)
    ids = DocumentIds(prefix, problems)
    for index, (text, rows) in enumerate(_sentences(path, problems)):
        facts: dict[Pair, int] = {}  # normal form -> first line
        unrelated: dict[frozenset[str], list[str]] = {}
        mentions: list[str] = []
        for number, (head, tail, label) in rows:
            mentions += [m for m in (head, tail) if m not in mentions]
            if label == NO_RELATION:
                if head != tail:
                    unrelated.setdefault(frozenset((head, tail)), [head, tail])
            elif head == tail:
                problems.report(f"{path}:{number}: head and tail are both {head!r}; "
                                f"relation '{label}' skipped")
            else:
                facts.setdefault(_normal(label, head, tail), number)
        places = _occurrences(text, mentions, f"{path}:{rows[0][0]}", problems)
        relations = [_relation(text, fact, places, names(fact[0], f"{path}:{number}"))
                     for fact, number in facts.items()]
        doc_id, meta = ids.assign(index)
        if unrelated:
            meta["no_relation"] = list(unrelated.values())
        yield Document(id=doc_id, text=text, language=language, relations=tuple(relations),
                       meta=meta)


def _occurrences(text: str, mentions: list[str], where: str,
                 problems: Problems) -> dict[str, list[tuple[int, int]]]:
    """Each name's occurrences outside longer names of the sentence (see the module doc)."""
    from deepke_llm.grounding import GroundingOptions, ground_entities

    # the entity type carries the name's index, so each grounded span maps back to its name
    grounded, _ = ground_entities(text, [Entity(str(i), m) for i, m in enumerate(mentions)],
                                  GroundingOptions(trim_punctuation=False))
    places: dict[str, list[tuple[int, int]]] = {m: [] for m in mentions}
    for entity in grounded:
        if entity.start is not None:
            places[mentions[int(entity.type)]].append((entity.start, entity.end))
    for mention, found in places.items():
        if not found:
            problems.report(f"{where}: {mention!r} does not occur in the sentence; "
                            f"offsets left null")
    return places


def _relation(text: str, fact: Pair, places: dict[str, list[tuple[int, int]]],
              name: str) -> Relation:
    # the grounder's own pair rule, applied to the candidates chosen above
    from deepke_llm.grounding import nearest_pair

    label, head, tail = fact
    head_span, tail_span = nearest_pair(places[head], places[tail])
    if label in SYMMETRIC and head_span and tail_span and tail_span < head_span:
        head_span, tail_span = tail_span, head_span
        head, tail = tail, head
    # a grounded name's text is the text at its span (the grounder also matches width variants)
    ends = [Entity("", text[span[0]:span[1]], *span) if span else Entity("", mention)
            for mention, span in ((head, head_span), (tail, tail_span))]
    return Relation(name, ends[0], ends[1])
