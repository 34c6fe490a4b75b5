"""Relation extraction: schema items, IEPile output, parsers (iepile, knowlm), gold labels.

IEPile output: ``{"place of death": [{"subject": "Thomas Edison", "object": "West Orange"}]}``
(``head``/``tail`` read as synonyms; we always write subject/object).
KnowLM output: one ``(subject,relation,object)`` per line.

The IEPile output carries no entity types; a head or tail gets the relation's head/tail type
when the schema allows exactly one, and an empty type otherwise.
"""

from __future__ import annotations

from itertools import islice, product
from typing import Any

from deepke_llm.lenient_json import loads_lenient
from deepke_llm.records import Document, Entity, Relation
from deepke_llm.schema import RelationType, Schema
from deepke_llm.tasks.base import (
    Task,
    as_list,
    as_object,
    as_strings,
    guarded,
    lookup,
    register_task,
    snippet,
    split_around,
    tuple_lines,
    type_resolver,
    unique,
)

# pairs one item may expand to (a list-valued subject times a list-valued object)
MAX_PAIRS = 1_000
SUBJECT_KEYS = ("subject", "head", "head entity", "subject entity", "头实体", "主体")
OBJECT_KEYS = ("object", "tail", "tail entity", "object entity", "尾实体", "客体")


def relation_record(relation_type: RelationType, subject: str, obj: str) -> Relation:
    """An ungrounded relation with entity types inferred from the schema where unambiguous."""
    head_type = relation_type.head_types[0] if len(relation_type.head_types) == 1 else ""
    tail_type = relation_type.tail_types[0] if len(relation_type.tail_types) == 1 else ""
    return Relation(relation_type.name, Entity(head_type, subject), Entity(tail_type, obj))


@register_task
class RETask(Task):
    name = "re"
    iepile_name = "RE"
    record_field = "relations"

    def schema_items(self, schema: Schema, language: str) -> list[str]:
        return [t.display(language, schema.language) for t in schema.types_for("re")]

    def to_output(self, document: Document, schema: Schema, language: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in schema.types_for("re"):
            pairs = unique((r.head.text, r.tail.text) for r in sorted(document.relations, key=_order)
                           if r.type == t.name)
            out[t.display(language, schema.language)] = [{"subject": s, "object": o} for s, o in pairs]
        return out

    def to_label(self, document: Document, schema: Schema, language: str) -> list[dict[str, Any]]:
        shown = self.shown_names(schema, "re", language)
        return [{"head": r.head.text, "relation": shown.get(r.type, r.type), "tail": r.tail.text}
                for r in sorted(document.relations, key=_order)]

    @guarded
    def parse_iepile(self, output: str, schema: Schema, language: str) -> tuple[list[Relation], list[str]]:
        value, errors = loads_lenient(output, "{[")
        obj = as_object(value)
        if obj is None:
            if value is not None:
                errors.append(f"expected a JSON object keyed by relation, got {type(value).__name__}")
            return [], errors
        relations: list[Relation] = []
        resolve = type_resolver(schema, "re", language)
        for key, items in obj.items():
            relation_type = resolve(str(key))
            if relation_type is None:
                errors.append(f"unknown relation '{snippet(str(key), 200)}' (not in the schema): dropped")
                continue
            for item in as_list(items):
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
        return unique(relations), errors

    def knowlm_schema_text(self, schema: Schema, language: str) -> str:
        return str(self.schema_items(schema, language))

    @guarded
    def parse_knowlm(self, output: str, schema: Schema, language: str) -> tuple[list[Relation], list[str]]:
        relations: list[Relation] = []
        errors: list[str] = []
        shown = sorted(((t.display(language, schema.language), t) for t in schema.types_for("re")),
                       key=lambda pair: -len(pair[0]))  # longest name first: "born in" < "born in city"
        for content in tuple_lines(output):
            for name, relation_type in shown:
                parts = split_around(content, name)
                if parts and parts[0] and parts[1]:
                    relations.append(relation_record(relation_type, *parts))
                    break
            else:
                errors.append(f"cannot read '({snippet(content, 200)})' as (subject,relation,object) with a "
                              "schema relation: dropped")
        return unique(relations), errors

    def to_knowlm_output(self, document: Document, schema: Schema, language: str) -> str:
        wanted = {t.name: t.display(language, schema.language) for t in schema.types_for("re")}
        return "\n".join(unique(f"({r.head.text},{wanted[r.type]},{r.tail.text})"
                                for r in sorted(document.relations, key=_order) if r.type in wanted))


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
