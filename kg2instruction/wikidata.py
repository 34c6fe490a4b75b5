"""Stream a Wikidata JSON dump into KG2Instruction inputs.

The dump (``latest-all.json[.gz|.bz2]``) is one JSON array with one entity per line; lines are
read one at a time, so memory does not grow with the dump. Items become KB entities (label and
aliases in the chosen language, description, ``P31`` instance-of classes as types, sitelink count
as popularity) and their item-valued statements become triples; properties become the relation
inventory (English and Chinese labels, description, and head/tail types from the property's
"type constraint" / "value-type constraint").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kg2instruction.inputs import InputIssues, _lines

INSTANCE_OF = "P31"
PROPERTY_CONSTRAINT = "P2302"
TYPE_CONSTRAINT = "Q21503250"  # subject must be an instance of a class
VALUE_TYPE_CONSTRAINT = "Q21510865"  # object must be an instance of a class
CONSTRAINT_CLASS = "P2308"
_LANGUAGES = {"en": ("en",), "zh": ("zh", "zh-hans", "zh-cn", "zh-hant", "zh-tw", "zh-hk")}


def iter_dump(path: str | Path, issues: InputIssues) -> Iterator[dict[str, Any]]:
    """Entities of a Wikidata JSON dump, one line at a time; broken lines are counted."""
    for number, line in _lines(str(path), issues):
        line = line.strip().rstrip(",")
        if line in ("[", "]", ""):
            continue
        try:
            entity = json.loads(line)
        except json.JSONDecodeError as exc:
            issues.add("broken_line", f"{path}:{number}: not valid JSON ({exc.msg})")
            continue
        if isinstance(entity, dict) and isinstance(entity.get("id"), str):
            yield entity
        else:
            issues.add("broken_line", f"{path}:{number}: expected an entity object with an id")


def _text(values: Any, language: str) -> str:
    if isinstance(values, dict):
        for code in _LANGUAGES[language]:
            value = values.get(code)
            if isinstance(value, dict) and isinstance(value.get("value"), str):
                return value["value"]
    return ""


def _aliases(values: Any, language: str) -> list[str]:
    out: list[str] = []
    if isinstance(values, dict):
        for code in _LANGUAGES[language]:
            for item in values.get(code, []) or []:
                if isinstance(item, dict) and isinstance(item.get("value"), str):
                    out.append(item["value"])
    return out


def _item_values(statements: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(target QID, statement) of the non-deprecated item-valued statements."""
    for statement in statements if isinstance(statements, list) else []:
        if not isinstance(statement, dict) or statement.get("rank") == "deprecated":
            continue
        snak = statement.get("mainsnak") or {}
        value = (snak.get("datavalue") or {}).get("value") if snak.get("snaktype") == "value" \
            else None
        if isinstance(value, dict) and value.get("entity-type", "item") == "item":
            target = value.get("id") or (f"Q{value['numeric-id']}" if "numeric-id" in value
                                         else None)
            if isinstance(target, str):
                yield target, statement


def _constraint_classes(claims: dict[str, Any], kind: str) -> list[str]:
    classes: list[str] = []
    for target, statement in _item_values(claims.get(PROPERTY_CONSTRAINT)):
        if target != kind:
            continue
        for qualifier in (statement.get("qualifiers") or {}).get(CONSTRAINT_CLASS, []):
            value = (qualifier.get("datavalue") or {}).get("value")
            if isinstance(value, dict) and isinstance(value.get("id"), str):
                classes.append(value["id"])
    return classes


def convert_wikidata(dump: str | Path, out_dir: str | Path, language: str = "en",
                     properties: set[str] | None = None,
                     type_constraints: bool = False) -> dict[str, Any]:
    """Write kb_entities.jsonl, kb_triples.tsv and relations.json from a Wikidata dump.

    ``properties`` keeps only those relation ids (default: every item-valued property seen).
    Triples may name items missing from the dump; ``build`` counts and skips them.
    ``type_constraints`` copies the properties' type constraints into head/tail types; off by
    default because they name classes and entity types are direct ``P31`` classes only (no
    subclass reasoning), so a city typed "big city" would fail a "geographic location" check.
    """
    issues = InputIssues()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    relations: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    counts = {"entities": 0, "triples": 0}
    with open(out / "kb_entities.jsonl", "w", encoding="utf-8") as entities, \
            open(out / "kb_triples.tsv", "w", encoding="utf-8") as triples:
        triples.write("head\trelation\ttail\n")
        for entity in iter_dump(dump, issues):
            claims = entity.get("claims") if isinstance(entity.get("claims"), dict) else {}
            if entity.get("type") == "property":
                if entity.get("datatype", "wikibase-item") == "wikibase-item":
                    relations[entity["id"]] = _relation(entity, claims, type_constraints)
                continue
            label = _text(entity.get("labels"), language)
            aliases = _aliases(entity.get("aliases"), language)
            record: dict[str, Any] = {"id": entity["id"], "label": label,
                                      "aliases": [a for a in aliases if a != label]}
            description = _text(entity.get("descriptions"), language)
            if description:
                record["description"] = description
            types = [t for t, _ in _item_values(claims.get(INSTANCE_OF))]
            if types:
                record["types"] = types
            if isinstance(entity.get("sitelinks"), dict):
                record["popularity"] = len(entity["sitelinks"])
            entities.write(json.dumps(record, ensure_ascii=False) + "\n")
            counts["entities"] += 1
            for pid, statements in claims.items():
                if pid == INSTANCE_OF or (properties is not None and pid not in properties):
                    continue
                for target, _ in _item_values(statements):
                    triples.write(f"{entity['id']}\t{pid}\t{target}\n")
                    used.add(pid)
                    counts["triples"] += 1
    for pid in sorted(used | set(properties or ())):
        relations.setdefault(pid, {"name": pid})
    if properties is not None:
        relations = {pid: value for pid, value in relations.items() if pid in properties}
    tmp = out / f"relations.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(relations, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / "relations.json")
    return {**counts, "relations": len(relations), "input_errors": issues.to_dict()}


def _relation(entity: dict[str, Any], claims: dict[str, Any],
              type_constraints: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": _text(entity.get("labels"), "en") or entity["id"]}
    name_zh = _text(entity.get("labels"), "zh")
    if name_zh:
        entry["name_zh"] = name_zh
    description = _text(entity.get("descriptions"), "en")
    if description:
        entry["description"] = description
    if not type_constraints:
        return entry
    head_types = _constraint_classes(claims, TYPE_CONSTRAINT)
    tail_types = _constraint_classes(claims, VALUE_TYPE_CONSTRAINT)
    if head_types:
        entry["head_types"] = head_types
    if tail_types:
        entry["tail_types"] = tail_types
    return entry
