"""Score built documents against gold documents (e.g. the FewRel adapter's gold.jsonl).

- triple recall: gold (head id, relation id, tail id) found in the document's output relations;
- triple precision: output triples of the relations the gold covers that are gold triples;
- linking accuracy on ambiguous aliases: gold mentions whose text names more than one KB entity,
  counted correct when the output has an entity on exactly that span with the gold id (a mention
  that was not detected there counts as wrong);
- linking accuracy on all gold mentions, same rule.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from deepke_llm.records import Document, read_documents
from kg2instruction.inputs import InputIssues, read_entities


def _triples(doc: Document) -> Counter:
    return Counter((r.head.kb_id, r.kb_relation, r.tail.kb_id) for r in doc.relations)


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def score_documents(output: str | Path, gold: str | Path,
                    kb_entities: str | Path) -> dict[str, Any]:
    """Compare output and gold documents by id; returns fractions and counts."""
    alias_entities: dict[str, set[str]] = {}
    for entity in read_entities(kb_entities, InputIssues()):
        for alias in entity.aliases:
            alias_entities.setdefault(alias, set()).add(entity.id)
    produced = {doc.id: doc for doc in read_documents(str(output))}
    counts: Counter = Counter()
    per_relation: dict[str, Counter] = {}
    gold_docs = list(read_documents(str(gold)))
    covered = {r.kb_relation for doc in gold_docs for r in doc.relations}
    for gold_doc in gold_docs:
        doc = produced.get(gold_doc.id)
        counts["gold_documents"] += 1
        if doc is None:
            counts["missing_documents"] += 1
            doc = Document(gold_doc.id, gold_doc.text)
        gold_triples, out_triples = _triples(gold_doc), _triples(doc)
        for triple, n in gold_triples.items():
            hit = min(n, out_triples.get(triple, 0))
            counts["gold_triples"] += n
            counts["recalled"] += hit
            stats = per_relation.setdefault(triple[1], Counter())
            stats["gold"] += n
            stats["recalled"] += hit
        for triple, n in out_triples.items():
            if triple[1] not in covered:
                continue
            hit = min(n, gold_triples.get(triple, 0))
            counts["produced"] += n
            counts["correct"] += hit
            stats = per_relation.setdefault(triple[1], Counter())
            stats["produced"] += n
            stats["correct"] += hit
        linked = {(e.start, e.end): e.kb_id for e in doc.entities}
        for entity in gold_doc.entities:
            right = linked.get((entity.start, entity.end)) == entity.kb_id
            counts["gold_mentions"] += 1
            counts["mentions_correct"] += right
            if len(alias_entities.get(entity.text, ())) > 1:
                counts["ambiguous_mentions"] += 1
                counts["ambiguous_correct"] += right
                counts["ambiguous_detected"] += (entity.start, entity.end) in linked
    return {
        "recall": _ratio(counts["recalled"], counts["gold_triples"]),
        "precision": _ratio(counts["correct"], counts["produced"]),
        "ambiguous_alias_accuracy": _ratio(counts["ambiguous_correct"],
                                           counts["ambiguous_mentions"]),
        "mention_linking_accuracy": _ratio(counts["mentions_correct"], counts["gold_mentions"]),
        "counts": dict(counts),
        "per_relation": {rel: {"recall": _ratio(c["recalled"], c["gold"]),
                               "precision": _ratio(c["correct"], c["produced"]), **dict(c)}
                         for rel, c in sorted(per_relation.items())},
    }
