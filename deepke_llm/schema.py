"""Extraction schemas: load by bundled name or path, validate, and map names <-> dataset labels.

A schema lists entity, relation and event types. Each type has a ``name`` (what the model sees, in
the schema's language), an optional dataset ``label`` and optional ``names`` in other languages.
Records always carry the canonical ``name``; prompts may show another language's name and the
parser maps it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["EntityType", "EventType", "RelationType", "Role", "Schema", "SchemaError",
           "bundled_schemas", "load_schema"]

INVENTORIES = ("entity_types", "relation_types", "event_types")


class SchemaError(ValueError):
    """A schema name or file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class _Named:
    name: str
    label: str
    description: str = ""
    names: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def display(self, language: str, schema_language: str) -> str:
        """The name shown to the model in ``language`` (falls back to the canonical name)."""
        if language == schema_language:
            return self.name
        return self.names.get(language, self.name)


@dataclass(frozen=True)
class EntityType(_Named):
    pass


@dataclass(frozen=True)
class RelationType(_Named):
    head_types: tuple[str, ...] = ()
    tail_types: tuple[str, ...] = ()
    symmetric: bool = False


@dataclass(frozen=True)
class Role(_Named):
    entity_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventType(_Named):
    roles: tuple[Role, ...] = ()


def _named_kwargs(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": item["name"], "label": item.get("label", item["name"]),
            "description": item.get("description", ""), "names": dict(item.get("names", {}))}


@dataclass(frozen=True)
class Schema:
    """Entity, relation and event inventories of one dataset or domain."""

    name: str
    language: str
    entity_types: tuple[EntityType, ...] = ()
    relation_types: tuple[RelationType, ...] = ()
    event_types: tuple[EventType, ...] = ()
    description: str = ""
    path: str | None = field(default=None, compare=False)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "<schema>") -> Schema:
        """Validate ``data`` against schemas/schema.schema.json and build a Schema."""
        import jsonschema

        validator = jsonschema.Draft202012Validator(_meta_schema())
        error = jsonschema.exceptions.best_match(validator.iter_errors(data))
        if error is not None:
            raise SchemaError(f"{source}: {error.json_path}: {error.message}")
        schema = cls(
            name=data["name"],
            language=data["language"],
            description=data.get("description", ""),
            entity_types=tuple(EntityType(**_named_kwargs(e)) for e in data.get("entity_types", [])),
            relation_types=tuple(
                RelationType(**_named_kwargs(r), head_types=tuple(r.get("head_types", [])),
                             tail_types=tuple(r.get("tail_types", [])),
                             symmetric=bool(r.get("symmetric", False)))
                for r in data.get("relation_types", [])),
            event_types=tuple(
                EventType(**_named_kwargs(e),
                          roles=tuple(Role(**_named_kwargs(r),
                                           entity_types=tuple(r.get("entity_types", [])))
                                      for r in e["roles"]))
                for e in data.get("event_types", [])),
            path=None if source.startswith("<") else source,
        )
        schema._check_unique(source)
        return schema

    def _check_unique(self, source: str) -> None:
        for kind, items in (("entity_types", self.entity_types),
                            ("relation_types", self.relation_types),
                            ("event_types", self.event_types)):
            seen: dict[str, int] = {}
            for i, item in enumerate(items):
                for key in {item.name, item.label}:
                    if key in seen and seen[key] != i:
                        raise SchemaError(f"{source}: $.{kind}[{i}]: name or label '{key}' "
                                          f"repeats $.{kind}[{seen[key]}]")
                    seen[key] = i
            if kind == "event_types":
                for i, event in enumerate(items):
                    names = [r.name for r in event.roles]
                    if len(names) != len(set(names)):
                        raise SchemaError(f"{source}: $.event_types[{i}].roles: role names repeat")

    def to_dict(self) -> dict[str, Any]:
        def named(item: _Named) -> dict[str, Any]:
            out: dict[str, Any] = {"name": item.name}
            if item.label != item.name:
                out["label"] = item.label
            if item.description:
                out["description"] = item.description
            if item.names:
                out["names"] = dict(item.names)
            return out

        out: dict[str, Any] = {"name": self.name, "language": self.language}
        if self.description:
            out["description"] = self.description
        if self.entity_types:
            out["entity_types"] = [named(e) for e in self.entity_types]
        if self.relation_types:
            out["relation_types"] = [
                {**named(r), **({"head_types": list(r.head_types)} if r.head_types else {}),
                 **({"tail_types": list(r.tail_types)} if r.tail_types else {}),
                 **({"symmetric": True} if r.symmetric else {})}
                for r in self.relation_types]
        if self.event_types:
            out["event_types"] = [
                {**named(e), "roles": [{**named(r), **({"entity_types": list(r.entity_types)}
                                                       if r.entity_types else {})}
                                       for r in e.roles]}
                for e in self.event_types]
        return out

    # ---- lookups ------------------------------------------------------------------------------
    def types_for(self, task: str) -> tuple[EntityType, ...] | tuple[RelationType, ...] | \
            tuple[EventType, ...]:
        """The type inventory a task queries (the task's ``schema_field``: entities for NER,
        relations for RE, events for EE)."""
        items: Sequence[_Named] = getattr(self, _inventory(task))
        if not items:
            where = self.path or self.name
            raise SchemaError(f"schema '{where}' has no {_kind(task)}: pick a schema that defines "
                              f"them or another --task")
        return tuple(items)  # type: ignore[return-value]

    def defines(self, task: str) -> bool:
        """Does the schema have types for ``task``?"""
        return bool(getattr(self, _inventory(task)))

    def by_label(self, task: str) -> dict[str, _Named]:
        """Dataset label -> type (for dataset readers)."""
        return {t.label: t for t in self.types_for(task)}

    def by_display(self, task: str, language: str) -> dict[str, _Named]:
        """Name shown to the model in ``language`` (also canonical name and label) -> type.

        Parsers use this to map what the model wrote back to the canonical type; matching is
        exact first, then case-insensitive (see :meth:`resolve`).
        """
        out: dict[str, _Named] = {}
        for item in self.types_for(task):
            for key in (item.label, item.name, *item.names.values(),
                        item.display(language, self.language)):
                out.setdefault(key, item)
        # what the prompt shows wins over any clash with another type's label
        for item in self.types_for(task):
            out[item.display(language, self.language)] = item
        return out

    def resolve(self, task: str, language: str, shown: str) -> _Named | None:
        """Map a type name as written by a model to the schema type, or None if unknown."""
        table = self.by_display(task, language)
        if shown in table:
            return table[shown]
        folded = _fold(shown)
        for key, item in table.items():
            if _fold(key) == folded:
                return item
        return None

    def subset(self, task: str, names: Sequence[str], ordered: bool = False) -> Schema:
        """A copy of this schema restricted to the given canonical type names of one task.

        With ``ordered`` the types follow the order of ``names``, else the schema's order.
        """
        wanted = set(names)
        unknown = wanted - {t.name for t in self.types_for(task)}
        if unknown:
            raise SchemaError(f"schema '{self.name}' has no {_kind(task)} named "
                              f"{', '.join(sorted(unknown))}")
        by_name = {t.name: t for t in self.types_for(task)}
        order = list(dict.fromkeys(names)) if ordered else [t.name for t in self.types_for(task)]
        kwargs = {_inventory(task): tuple(by_name[n] for n in order if n in wanted)}
        return Schema(name=self.name, language=self.language, description=self.description,
                      path=self.path, **{**{f: () for f in INVENTORIES}, **kwargs})


def _inventory(task: str) -> str:
    """The Schema field holding ``task``'s types (the task says which)."""
    from deepke_llm.tasks import get_task  # tasks build on schemas: looked up when asked

    try:
        return get_task(task).schema_field
    except ValueError as exc:
        raise SchemaError(str(exc)) from None


def _kind(task: str) -> str:
    return _inventory(task).replace("_", " ")


def _fold(text: str) -> str:
    return " ".join(text.replace("_", " ").replace("-", " ").split()).casefold()


@lru_cache(maxsize=1)
def _meta_schema() -> dict[str, Any]:
    return json.loads(_schema_dir().joinpath("schema.schema.json").read_text(encoding="utf-8"))


def _schema_dir():
    return resources.files("deepke_llm").joinpath("schemas")


def bundled_schemas() -> list[str]:
    """Names of the schemas shipped with the package."""
    return sorted(p.name[:-5] for p in _schema_dir().iterdir()
                  if p.name.endswith(".json") and p.name != "schema.schema.json")


def load_schema(name_or_path: str | Path | Schema | Mapping[str, Any]) -> Schema:
    """Load a bundled schema by name (``conll03``) or a schema JSON file by path."""
    if isinstance(name_or_path, Schema):
        return name_or_path
    if isinstance(name_or_path, Mapping):
        return Schema.from_dict(name_or_path)
    text = str(name_or_path)
    path = Path(text)
    # a bundled name wins over a same-named directory in the working dir (e.g. the data dir)
    if path.suffix == ".json" or path.is_file() or "/" in text or "\\" in text:
        if not path.is_file():
            raise SchemaError(f"schema file {text} does not exist")
        source = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Schema.from_dict(data, source)
        except (UnicodeDecodeError, ValueError) as exc:
            if isinstance(exc, SchemaError):
                raise
            raise SchemaError(f"{source}: not valid UTF-8 JSON ({exc})") from None
        except RecursionError:
            raise SchemaError(f"{source}: JSON nested too deeply to be a schema") from None
    resource = _schema_dir().joinpath(f"{text}.json")
    if not resource.is_file():
        raise SchemaError(f"unknown schema '{text}': use a path to a schema JSON file or one of "
                          f"{', '.join(bundled_schemas())}")
    return Schema.from_dict(json.loads(resource.read_text(encoding="utf-8")), f"schemas/{text}.json")
