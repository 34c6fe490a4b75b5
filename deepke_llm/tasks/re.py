"""Relation extraction: schema items, gold answers, records from answers, and the glue the shared
stages need (grounding, scoring tuples, the IEPile evaluator's tuples).

Answer: ``[("place of death", {"subject": "Thomas Edison", "object": "West Orange"})]``
(``head``/``tail`` read as synonyms, a side may be a list; we always write subject/object).

An answer carries no entity types; a head or tail gets the relation's head/tail type when the
schema allows exactly one, and an empty type otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice, product
from typing import Any

from deepke_llm.grounding import GroundingOptions, ground_relations
from deepke_llm.records import Document, Entity, Relation
from deepke_llm.schema import RelationType, Schema
from deepke_llm.tasks.base import (
    ItemReader,
    Note,
    SpanOf,
    Task,
    as_list,
    as_strings,
    lookup,
    register_task,
    snippet,
    unique,
)

# pairs one item may expand to (a list-valued subject times a list-valued object)
MAX_PAIRS = 1_000
SUBJECT_KEYS = ("subject", "head", "head entity", "subject entity", "头实体", "主体")
OBJECT_KEYS = ("object", "tail", "tail entity", "object entity", "尾实体", "客体")
NAN = "NAN"


def relation_record(relation_type: RelationType, subject: str, obj: str) -> Relation:
    """An ungrounded relation with entity types inferred from the schema where unambiguous."""
    head_type = relation_type.head_types[0] if len(relation_type.head_types) == 1 else ""
    tail_type = relation_type.tail_types[0] if len(relation_type.tail_types) == 1 else ""
    return Relation(relation_type.name, Entity(head_type, subject), Entity(tail_type, obj))


@register_task
class RETask(Task):
    name = "re"
    iepile_name = "RE"
    schema_field = "relation_types"
    record_field = "relations"
    type_noun = "relation"
    type_kind = "relation type"
    chunk_size = 4
    type_index = {("strict", None): 2, ("boundary", None): 1, ("string", None): 1}
    type_columns = {None: "relation"}

    def schema_items(self, schema: Schema, language: str) -> list[str]:
        return [t.display(language, schema.language) for t in schema.types_for("re")]

    def gold_items(self, document: Document, schema: Schema, language: str
                   ) -> list[tuple[str, Any, bool]]:
        shown = self.shown_names(schema, "re", language)
        return [(shown.get(r.type, r.type), {"subject": r.head.text, "object": r.tail.text},
                 r.type in shown) for r in sorted(document.relations, key=_order)]

    def to_label(self, document: Document, schema: Schema, language: str) -> list[dict[str, Any]]:
        return [{"head": pair["subject"], "relation": shown, "tail": pair["object"]}
                for shown, pair, _ in self.gold_items(document, schema, language)]

    def item_reader(self, schema: Schema, language: str, errors: list[str]) -> ItemReader:
        def read(relation_type: RelationType, key: str, value: Any) -> list[Relation]:
            relations: list[Relation] = []
            for item in as_list(value):
                sides = _sides(item)
                if sides is None:
                    errors.append(f"relation '{key}': cannot read {snippet(item)!r} as "
                                  "subject/object: dropped")
                    continue
                pairs = len(sides[0]) * len(sides[1])
                if pairs > MAX_PAIRS:  # lazily: two lists of 10,000 names are 100 million pairs
                    errors.append(f"relation '{key}': {pairs:,} subject/object pairs in one "
                                  f"item; kept the first {MAX_PAIRS:,}")
                relations.extend(relation_record(relation_type, s, o)
                                 for s, o in islice(product(*sides), MAX_PAIRS))
            return relations

        return read

    def ground(self, text: str, records: Any, options: GroundingOptions) -> tuple[list, list[str]]:
        return ground_relations(text, records, options)

    def score_tuples(self, document: Document, mode: str, span: SpanOf
                     ) -> dict[str | None, list[tuple]]:
        relations = document.relations
        if mode == "string":
            return {None: [(r.head.text, r.type, r.tail.text) for r in relations]}
        if mode == "boundary":
            return {None: [(span(r.head), r.type, span(r.tail)) for r in relations]}
        return {None: [(span(r.head), r.head.type, r.type, span(r.tail), r.tail.type)
                       for r in relations]}

    def iepile_tuples(self, key: str, item: Any, where: str, note: Note) -> list[tuple]:
        if not isinstance(item, dict):
            note("skipped_item", f"{where}: '{key}' item {str(item)[:40]!r} is not an object")
            return []
        head = item["subject"] if "subject" in item else item.get("head", "")
        tail = item["object"] if "object" in item else item.get("tail", "")
        if not ({"subject", "head"} & item.keys() and {"object", "tail"} & item.keys()):
            note("incomplete_item", f"{where}: '{key}' item {str(item)[:40]!r} lacks "
                 "a subject or object")
        if not isinstance(head, str) or not isinstance(tail, str):
            note("skipped_item", f"{where}: '{key}' subject/object are not strings")
            return []
        if NAN in (head, tail):
            note("nan_dropped", f"{where}: '{key}': {head!r} -> {tail!r}")
            return []
        return [(head, key, tail)]

    def iepile_label_tuple(self, item: Any) -> tuple:
        return (item.get("head", item.get("subject", "")), item.get("relation", ""),
                item.get("tail", item.get("object", "")))

    def iepile_label_item(self, key: str, item: Any) -> dict[str, Any] | None:
        if not isinstance(item, dict):
            return None
        return {"head": item.get("subject", item.get("head", "")), "relation": key,
                "tail": item.get("object", item.get("tail", ""))}

    def named_mentions(self, record: Relation) -> Iterable[tuple[str, Any]]:
        return ((".head", record.head), (".tail", record.tail))


def _sides(item: Any) -> tuple[list[str], list[str]] | None:
    """The subjects and objects of one output item (a list-valued side expands to several
    pairs), each without repeats."""
    if isinstance(item, dict):
        subjects = as_strings(lookup(item, *SUBJECT_KEYS))
        objects = as_strings(lookup(item, *OBJECT_KEYS))
    elif isinstance(item, (list, tuple)) and len(item) == 2:
        subjects, objects = as_strings(item[0]), as_strings(item[1])
    else:
        return None
    if not subjects or not objects:
        return None
    return unique(subjects), unique(objects)


def _order(relation: Relation) -> tuple[int, int]:
    head = relation.head.start if relation.head.start is not None else 1 << 60
    tail = relation.tail.start if relation.tail.start is not None else 1 << 60
    return (head, tail)
