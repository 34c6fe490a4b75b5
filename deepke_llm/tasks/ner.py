"""Named entity recognition: schema items, IEPile output, parsers (iepile, knowlm), gold labels.

IEPile output: ``{"person": ["Robert Allenby"], "location": ["Australia"]}``.
KnowLM output: one ``(entity,entity type)`` per line.
"""

from __future__ import annotations

from typing import Any

from deepke_llm.lenient_json import loads_lenient
from deepke_llm.records import Document, Entity
from deepke_llm.schema import Schema
from deepke_llm.tasks.base import (
    Task,
    as_object,
    as_strings,
    guarded,
    register_task,
    snippet,
    tuple_lines,
    type_resolver,
    unique,
)


@register_task
class NERTask(Task):
    name = "ner"
    iepile_name = "NER"
    record_field = "entities"

    def schema_items(self, schema: Schema, language: str) -> list[str]:
        return [t.display(language, schema.language) for t in schema.types_for("ner")]

    def to_output(self, document: Document, schema: Schema, language: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in schema.types_for("ner"):
            mentions = [e.text for e in sorted(document.entities, key=_order) if e.type == t.name]
            out[t.display(language, schema.language)] = unique(mentions)
        return out

    def to_label(self, document: Document, schema: Schema, language: str) -> list[dict[str, Any]]:
        shown = self.shown_names(schema, "ner", language)
        return [{"entity": e.text, "entity_type": shown.get(e.type, e.type)}
                for e in sorted(document.entities, key=_order)]

    @guarded
    def parse_iepile(self, output: str, schema: Schema, language: str) -> tuple[list[Entity], list[str]]:
        value, errors = loads_lenient(output, "{[")
        obj = as_object(value)
        if obj is None:
            if value is not None:
                errors.append(f"expected a JSON object keyed by entity type, got {type(value).__name__}")
            return [], errors
        entities: list[Entity] = []
        resolve = type_resolver(schema, "ner", language)
        for key, mentions in obj.items():
            entity_type = resolve(str(key))
            if entity_type is None:
                errors.append(f"unknown entity type '{snippet(str(key), 200)}' (not in the schema): dropped")
                continue
            entities.extend(Entity(entity_type.name, m) for m in unique(as_strings(mentions)))
        return unique(entities), errors

    def knowlm_schema_text(self, schema: Schema, language: str) -> str:
        return str(self.schema_items(schema, language))

    @guarded
    def parse_knowlm(self, output: str, schema: Schema, language: str) -> tuple[list[Entity], list[str]]:
        entities: list[Entity] = []
        errors: list[str] = []
        resolve = type_resolver(schema, "ner", language)
        for content in tuple_lines(output):
            cut = max(content.rfind(","), content.rfind("，"))
            mention, shown = content[:cut], content[cut + 1:]
            entity_type = resolve(shown.strip()) if cut >= 0 else None
            if entity_type is None or not mention.strip():
                errors.append(f"cannot read '({snippet(content, 200)})' as (entity,entity type): "
                              "dropped")
                continue
            entities.append(Entity(entity_type.name, mention.strip()))
        return unique(entities), errors

    def to_knowlm_output(self, document: Document, schema: Schema, language: str) -> str:
        wanted = {t.name: t.display(language, schema.language) for t in schema.types_for("ner")}
        lines = unique(f"({e.text},{wanted[e.type]})" for e in sorted(document.entities, key=_order)
                       if e.type in wanted)
        return "\n".join(lines)


def _order(entity: Entity) -> tuple[int, int]:
    return (entity.start if entity.start is not None else 1 << 60, entity.end or 0)
