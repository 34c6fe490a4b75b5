"""Named entity recognition: schema items, gold answers, records from answers, and the glue the
shared stages need (grounding, scoring tuples, the IEPile evaluator's tuples).

Answer: ``[("person", "Robert Allenby"), ("location", "Australia")]`` (a value may also be a list
of mentions, as in IEPile's ``{"person": ["Robert Allenby"]}``).
"""

from __future__ import annotations

from typing import Any

from deepke_llm.grounding import GroundingOptions, ground_entities
from deepke_llm.records import Document, Entity
from deepke_llm.schema import Schema
from deepke_llm.tasks.base import (
    ItemReader,
    Note,
    SpanOf,
    Task,
    as_strings,
    register_task,
    unique,
)

NAN = "NAN"


@register_task
class NERTask(Task):
    name = "ner"
    iepile_name = "NER"
    schema_field = "entity_types"
    record_field = "entities"
    type_noun = "entity type"
    type_kind = "entity type"
    chunk_size = 6
    type_index = {("strict", None): 0, ("boundary", None): None, ("string", None): 1}

    def schema_items(self, schema: Schema, language: str) -> list[str]:
        return [t.display(language, schema.language) for t in schema.types_for("ner")]

    def gold_items(self, document: Document, schema: Schema, language: str
                   ) -> list[tuple[str, Any, bool]]:
        shown = self.shown_names(schema, "ner", language)
        return [(shown.get(e.type, e.type), e.text, e.type in shown)
                for e in sorted(document.entities, key=_order)]

    def to_label(self, document: Document, schema: Schema, language: str) -> list[dict[str, Any]]:
        return [{"entity": text, "entity_type": shown}
                for shown, text, _ in self.gold_items(document, schema, language)]

    def item_reader(self, schema: Schema, language: str, errors: list[str]) -> ItemReader:
        return lambda kind, key, value: [Entity(kind.name, m) for m in unique(as_strings(value))]

    def ground(self, text: str, records: Any, options: GroundingOptions) -> tuple[list, list[str]]:
        return ground_entities(text, records, options)

    def score_tuples(self, document: Document, mode: str, span: SpanOf
                     ) -> dict[str | None, list[tuple]]:
        if mode == "string":
            return {None: [(e.text, e.type) for e in document.entities]}
        if mode == "boundary":
            return {None: [(span(e),) for e in document.entities]}
        return {None: [(e.type, span(e)) for e in document.entities]}

    def iepile_tuples(self, key: str, item: Any, where: str, note: Note) -> list[tuple]:
        if not isinstance(item, str):
            note("skipped_item", f"{where}: '{key}' item {str(item)[:40]!r} is not a string")
            return []
        if item == NAN:
            note("nan_dropped", f"{where}: '{key}': \"NAN\"")
            return []
        return [(item, key)]

    def iepile_label_tuple(self, item: Any) -> tuple:
        return (item.get("entity", ""), item.get("entity_type", ""))

    def iepile_label_item(self, key: str, item: Any) -> dict[str, Any] | None:
        return {"entity": item, "entity_type": key} if isinstance(item, str) else None


def _order(entity: Entity) -> tuple[int, int]:
    return (entity.start if entity.start is not None else 1 << 60, entity.end or 0)
