"""Stream a Wikidata JSON dump into KG2Instruction inputs.

The dump (``latest-all.json[.gz|.bz2]``) is one JSON array with one entity per line; lines are
read one at a time. Items become KB entities (label and aliases in the chosen language,
description, the labels of their ``P31`` instance-of classes as types, sitelink count as
popularity) and their item-valued statements become triples; properties become the relation
inventory (English and Chinese labels, description, and head/tail types from the property's
"type constraint" / "value-type constraint").

So that a KB from a full dump fits in memory, items are filtered: an item without a label or alias
in the chosen language can never be mentioned and is left out, ``min_sitelinks`` drops obscure
items and ``only_linked`` keeps only items that a kept triple names. The dump is read once; what
needs the whole dump (whether a triple's tail is kept, which items are linked, the labels of the
type classes) is settled afterwards from compact intermediate files and bitmaps of item numbers
(16 MB per 128 million QIDs), never from the dump held in memory.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from deepke_llm.io import LineError, ResumableWriter, json_value, write_jsonl_atomic
from deepke_llm.problems import Problems
from kg2instruction.inputs import text_lines

INSTANCE_OF = "P31"
PROPERTY_CONSTRAINT = "P2302"
TYPE_CONSTRAINT = "Q21503250"  # subject must be an instance of a class
VALUE_TYPE_CONSTRAINT = "Q21510865"  # object must be an instance of a class
CONSTRAINT_CLASS = "P2308"
_LANGUAGES = {"en": ("en",), "zh": ("zh", "zh-hans", "zh-cn", "zh-hant", "zh-tw", "zh-hk")}


def iter_dump(path: str | Path, issues: Problems) -> Iterator[dict[str, Any]]:
    """Entities of a Wikidata JSON dump, one line at a time; broken lines are counted."""
    for number, line in text_lines(str(path), issues):
        line = line.strip().rstrip(",")
        if line in ("[", "]", ""):
            continue
        try:
            entity = json_value(line, f"{path}:{number}")
        except LineError as exc:
            issues.add("broken_line", str(exc))
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


class QidSet:
    """A set of item ids ``Q<number>`` as a growable bitmap (one bit per item number)."""

    def __init__(self) -> None:
        self.bits = bytearray()
        self.size = 0

    @staticmethod
    def number(qid: str) -> int | None:
        return int(qid[1:]) if qid[:1] == "Q" and qid[1:].isdigit() else None

    def add(self, qid: str) -> None:
        n = self.number(qid)
        if n is None:
            return
        byte, bit = divmod(n, 8)
        if byte >= len(self.bits):
            self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits))))
        if not self.bits[byte] >> bit & 1:
            self.bits[byte] |= 1 << bit
            self.size += 1

    def __contains__(self, qid: str) -> bool:
        n = self.number(qid)
        if n is None:
            return False
        byte, bit = divmod(n, 8)
        return byte < len(self.bits) and bool(self.bits[byte] >> bit & 1)

    def __len__(self) -> int:
        return self.size


def convert_wikidata(dump: str | Path, out_dir: str | Path, language: str = "en",
                     properties: set[str] | None = None, type_constraints: bool = False,
                     min_sitelinks: int = 0, only_linked: bool = False) -> dict[str, Any]:
    """Write kb_entities.jsonl, kb_triples.tsv and relations.json from a Wikidata dump.

    ``properties`` keeps only those relation ids (default: every item-valued property seen).
    Items without a label or alias in ``language`` are left out, so are items with fewer than
    ``min_sitelinks`` sitelinks and, with ``only_linked``, items no kept triple names; a triple
    is kept when both its items are. Types are the labels (in ``language``) of the items'
    ``P31`` classes; a class without such a label is left out rather than shown as a QID.
    ``type_constraints`` copies the properties' type constraints into head/tail types (as class
    labels too); off by default because entity types are direct ``P31`` classes only (no
    subclass reasoning), so a city typed "big city" would fail a "geographic location" check.
    Each output appears at its path only once complete.
    """
    issues = Problems()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"items": 0, "skipped_no_name": 0, "skipped_few_sitelinks": 0,
              "skipped_not_linked": 0, "triples_to_left_out_items": 0}
    with tempfile.TemporaryDirectory(dir=out, prefix=".wikidata-") as scratch:
        work = Path(scratch)
        relations, kept = _scan_dump(dump, work, issues, counts, language, properties,
                                     type_constraints, min_sitelinks)
        written_triples, used, linked = _write_triples(out, work, kept, counts)
        for pid in sorted(used | set(properties or ())):
            relations.setdefault(pid, {"name": pid})
        if properties is not None:
            relations = {pid: value for pid, value in relations.items() if pid in properties}
        keep = linked if only_linked else kept
        labels = _class_labels(work, keep, relations, counts)
        counts["entities"] = write_jsonl_atomic(
            out / "kb_entities.jsonl", _labelled(_records(work / "items.jsonl"), keep, labels,
                                                  counts))
    for rel in relations.values():
        for key in ("head_types", "tail_types"):
            if key in rel:
                rel[key] = _type_labels(rel[key], labels)
                if not rel[key]:
                    del rel[key]
    write_jsonl_atomic(out / "relations.json", [relations])  # one line: a JSON object
    return {**counts, "triples": written_triples, "relations": len(relations),
            "input_errors": issues.to_dict()}


def _scan_dump(dump: str | Path, work: Path, issues: Problems, counts: dict[str, int],
               language: str, properties: set[str] | None, type_constraints: bool,
               min_sitelinks: int) -> tuple[dict[str, dict[str, Any]], QidSet]:
    """One pass over the dump into ``work``: kept items, their candidate triples, every named
    item's label; returns the item-valued properties and the kept items."""
    relations: dict[str, dict[str, Any]] = {}
    kept = QidSet()
    with open(work / "items.jsonl", "w", encoding="utf-8") as items, \
            open(work / "triples.tsv", "w", encoding="utf-8") as triples, \
            open(work / "names.tsv", "w", encoding="utf-8") as names:
        for entity in iter_dump(dump, issues):
            claims = entity.get("claims") if isinstance(entity.get("claims"), dict) else {}
            if entity.get("type") == "property":
                if entity.get("datatype", "wikibase-item") == "wikibase-item":
                    relations[entity["id"]] = _relation(entity, claims, type_constraints)
                continue
            counts["items"] += 1
            record = _item(entity, claims, language)
            if record is None:
                counts["skipped_no_name"] += 1
                continue
            names.write(f"{record['id']}\t{_one_line(record['label'] or record['aliases'][0])}\n")
            if record.get("popularity", 0) < min_sitelinks:
                counts["skipped_few_sitelinks"] += 1
                continue
            kept.add(record["id"])
            items.write(json.dumps(record, ensure_ascii=False) + "\n")
            for pid, statements in claims.items():
                if pid == INSTANCE_OF or (properties is not None and pid not in properties):
                    continue
                for target, _ in _item_values(statements):
                    triples.write(f"{entity['id']}\t{pid}\t{target}\n")
    return relations, kept


def _write_triples(out: Path, work: Path, kept: QidSet, counts: dict[str, int]
                   ) -> tuple[int, set[str], QidSet]:
    """kb_triples.tsv: the candidate triples whose tail is kept too; returns how many, the
    properties they use and the items they name."""
    used: set[str] = set()
    linked = QidSet()
    written = 0
    with ResumableWriter(out / "kb_triples.tsv") as writer:  # .partial until complete
        batch = ["head\trelation\ttail"]
        for line in _text_lines(work / "triples.tsv"):
            head, pid, tail = line.split("\t")
            if tail not in kept:
                counts["triples_to_left_out_items"] += 1
                continue
            batch.append(line)
            if len(batch) >= 10_000:  # the writer flushes per call: lines go in batches
                writer.write("\n".join(batch))
                batch = []
            used.add(pid)
            linked.add(head)
            linked.add(tail)
            written += 1
        if batch:
            writer.write("\n".join(batch))
    return written, used, linked


def _class_labels(work: Path, keep: QidSet, relations: dict[str, dict[str, Any]],
                  counts: dict[str, int]) -> dict[str, str]:
    """Labels of the classes the kept items and the relations' type constraints use."""
    classes = {t for record in _records(work / "items.jsonl") if record["id"] in keep
               for t in record.get("types", ())}
    classes |= {t for rel in relations.values()
                for t in (*rel.get("head_types", ()), *rel.get("tail_types", ()))}
    labels = {}
    for line in _text_lines(work / "names.tsv"):
        qid, label = line.split("\t", 1)
        if qid in classes:
            labels[qid] = label
    counts["types_without_label"] = len(classes - labels.keys())
    return labels


def _item(entity: dict[str, Any], claims: dict[str, Any], language: str) -> dict[str, Any] | None:
    """The KB entity record of an item (types still QIDs), None without a name in ``language``."""
    label = _text(entity.get("labels"), language)
    aliases = [a for a in _aliases(entity.get("aliases"), language) if a != label]
    if not label and not aliases:
        return None
    record: dict[str, Any] = {"id": entity["id"], "label": label, "aliases": aliases}
    description = _text(entity.get("descriptions"), language)
    if description:
        record["description"] = description
    types = [t for t, _ in _item_values(claims.get(INSTANCE_OF))]
    if types:
        record["types"] = types
    if isinstance(entity.get("sitelinks"), dict):
        record["popularity"] = len(entity["sitelinks"])
    return record


def _labelled(records: Iterable[dict[str, Any]], keep: QidSet, labels: dict[str, str],
              counts: dict[str, int]) -> Iterator[dict[str, Any]]:
    for record in records:
        if record["id"] not in keep:
            counts["skipped_not_linked"] += 1
            continue
        if "types" in record:
            record["types"] = _type_labels(record["types"], labels)
            if not record["types"]:
                del record["types"]
        yield record


def _type_labels(classes: Iterable[str], labels: dict[str, str]) -> list[str]:
    return list(dict.fromkeys(labels[c] for c in classes if c in labels))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _text_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield line.rstrip("\n")


def _records(path: Path) -> Iterator[dict[str, Any]]:
    for line in _text_lines(path):
        yield json.loads(line)


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
