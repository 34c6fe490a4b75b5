"""DuIE 2.0 JSON lines -> Documents with relations.

Each line: ``{"text", "spo_list": [{"subject", "subject_type", "predicate", "object":
{"@value": ...}, "object_type": {"@value": ...}}]}`` (DuIE 1.0's plain-string ``object`` /
``object_type`` are read too). DuIE gives no offsets: subject and object strings are grounded with
:func:`deepke_llm.grounding.ground_relations` (the nearest pair of occurrences); a string that
cannot be found keeps null offsets and is reported.

Complex objects (``饰演`` with ``inWork``, ``获奖`` with ``onDate``/``period``/``inArea``, ...):
the ``@value`` slot gives the main relation ``(subject, predicate, object@value)``; each
qualifier slot gives one more relation ``(subject, "<predicate>_<qualifier>", value)`` typed with
``object_type[<qualifier>]`` — e.g. ``(周星驰, 饰演_inWork, 喜剧之王)`` — so every annotated
string is kept as a flat triple that RE prompts and scorers handle. (DuIE's official scorer
matches a complex object as a whole; the flat form is stricter per slot and loses nothing.)
``qualifiers``: ``"auto"`` (default) emits a qualifier relation unless a schema is given whose
relation types lack its ``<predicate>_<qualifier>`` label — gold the schema never asks for would
only count as misses (the bundled ``duie`` schema has the 48 plain predicates); ``"relations"``
always emits them (labels missing from the schema are reported); ``"drop"`` never does.

DuIE annotates only the arguments of its triples, so ``entities`` stays empty (using them as NER
gold would count every unannotated mention as a false positive).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableSequence
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
    list_field,
    text_lines,
)

__all__ = ["read_duie"]

MAIN_SLOT = "@value"
QUALIFIER_MODES = ("auto", "relations", "drop")


def read_duie(path: str | Path, schema: Schema | str | None = None, *,
              errors: MutableSequence[str] | Problems | None = None,
              id_prefix: str | None = None, qualifiers: str = "auto",
              language: str = "zh") -> Iterator[Document]:
    """Stream Documents with grounded relations from a DuIE 2.0 JSON-lines file."""
    path = check_file(path)
    if qualifiers not in QUALIFIER_MODES:
        raise DatasetError(f"qualifiers must be one of {', '.join(QUALIFIER_MODES)}, "
                           f"not '{qualifiers}'")
    loaded = as_schema(schema)
    return _documents(path, loaded, as_problems(errors), id_prefix or default_prefix(path),
                      _qualifier_filter(loaded, qualifiers), language)


def _qualifier_filter(schema: Schema | None, mode: str) -> Callable[[str], bool]:
    """Which ``<predicate>_<qualifier>`` labels become relations."""
    if mode == "drop":
        return lambda label: False
    if mode == "relations" or schema is None or not schema.relation_types:
        return lambda label: True
    known = {r.label for r in schema.relation_types}
    return lambda label: label in known


def _slots(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {MAIN_SLOT: value}


def _documents(path: str, schema: Schema | None, problems: Problems, prefix: str,
               keep_qualifier: Callable[[str], bool], language: str) -> Iterator[Document]:
    from deepke_llm.grounding import GroundingOptions, ground_relations

    entity_names = TypeNames(schema, "ner", problems)
    relation_names = TypeNames(schema, "re", problems)
    ids = DocumentIds(prefix, problems)
    for number, where, data, text in text_lines(path, "text", problems):
        index = number - 1  # the line, so ids survive fixing or dropping other lines
        spo_list = list_field(data, "spo_list", where, problems)
        relations: list[Relation] = []
        for j, spo in enumerate(spo_list):
            field = f"{where}: spo_list[{j}]"
            subject = spo.get("subject") if isinstance(spo, dict) else None
            predicate = spo.get("predicate") if isinstance(spo, dict) else None
            objects = _slots(spo.get("object")) if isinstance(spo, dict) else {}
            if not (isinstance(subject, str) and subject and isinstance(predicate, str)
                    and isinstance(objects.get(MAIN_SLOT), str) and objects[MAIN_SLOT]):
                problems.report(f"{field}: needs string 'subject', 'predicate' and "
                                f"'object' (or object '@value'); triple skipped")
                continue
            object_types = _slots(spo.get("object_type"))
            head = Entity(_type(spo.get("subject_type"), entity_names, where), subject)
            for slot, value in objects.items():
                label = predicate if slot == MAIN_SLOT else f"{predicate}_{slot}"
                if slot != MAIN_SLOT and not keep_qualifier(label):
                    continue
                if not isinstance(value, str) or not value:
                    problems.report(f"{field}: object slot '{slot}' is not a string; slot skipped")
                    continue
                tail = Entity(_type(object_types.get(slot), entity_names, where), value)
                grounded, messages = ground_relations(text, [Relation(label, head, tail)],
                                                      GroundingOptions(trim_punctuation=False))
                for message in messages:
                    problems.report(f"{field}: {message}; offsets left null")
                relations.append(_exact_text(grounded[0], relation_names(label, where), text,
                                             field, problems))
        doc_id, meta = ids.assign(index, data.get("id"), where)
        yield Document(id=doc_id, text=text, language=language, relations=tuple(relations),
                       meta=meta)


def _type(label: Any, names: TypeNames, where: str) -> str:
    return names(label, where) if isinstance(label, str) else ""


def _exact_text(relation: Relation, name: str, text: str, field: str,
                problems: Problems) -> Relation:
    """Rename the relation and make each grounded mention's text the text it points at (the
    grounder also matches case/width/space variants)."""
    ends = []
    for side, entity in (("subject", relation.head), ("object", relation.tail)):
        if entity.start is not None and text[entity.start:entity.end] != entity.text:
            found = text[entity.start:entity.end]
            problems.report(f"{field}: {side} {entity.text!r} occurs only as {found!r}; used that")
            entity = Entity(entity.type, found, entity.start, entity.end, entity.kb_id)
        ends.append(entity)
    return Relation(name, ends[0], ends[1], relation.kb_relation)
