"""Score built documents against gold documents (e.g. the FewRel adapter's gold.jsonl).

- triple recall: gold (head id, relation id, tail id) found in the document's output relations;
- triple precision: output triples of the relations the gold covers that are gold triples;
- linking accuracy on ambiguous aliases: gold mentions whose text names more than one KB entity,
  the gold one among them (alias keys as the KB makes them: case-folded with ``ignore_case``),
  counted correct when the output has an entity on exactly that span with the gold id; a mention
  not detected there or left unlinked (a tie) counts as wrong. Reported beside it: accuracy on
  the decided links only (output entity with a ``kb_id`` on the span) and their coverage
  (decided / all ambiguous gold mentions);
- linking accuracy on all gold mentions, same rules;
- KB coverage: the share of gold triples that are KB triples and of gold mentions whose text is
  an alias of their gold entity — 100% when the KB was built from the evaluated sentences, the
  ceiling of recall and linking otherwise (recall on the KB-covered gold triples is reported too).

With the KB triples, ambiguous mentions are also split by whether the KB can tell the gold entity
from the other candidates at all: a candidate with the same aliases and the same neighbourhood
(relations to entities with the same aliases, two hops deep) is indistinguishable, so no linker
can do better than guess there; accuracy is reported on the distinguishable ones too.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from deepke_llm.problems import Problems
from deepke_llm.records import Document, read_documents
from kg2instruction.inputs import read_entities, read_triples
from kg2instruction.kb import fold_case


def _triples(doc: Document) -> Counter:
    return Counter((r.head.kb_id, r.kb_relation, r.tail.kb_id) for r in doc.relations)


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _signatures(aliases: dict[str, frozenset[str]], triples: str | Path) -> dict[str, Any]:
    """Entity id -> (aliases, {(relation, direction, neighbour aliases + their relations)})."""
    edges: dict[str, set[tuple[str, str]]] = {}
    for head, rel, tail, _ in read_triples(triples, Problems()):
        edges.setdefault(head, set()).add((rel, tail))
        edges.setdefault(tail, set()).add((f"~{rel}", head))

    def one_hop(entity: str) -> frozenset:
        return frozenset((rel, aliases.get(n, frozenset())) for rel, n in edges.get(entity, ()))

    return {entity: (names, frozenset((rel, aliases.get(n, frozenset()), one_hop(n))
                                      for rel, n in edges.get(entity, ())))
            for entity, names in aliases.items()}


def score_documents(output: str | Path, gold: str | Path, kb_entities: str | Path,
                    kb_triples: str | Path | None = None,
                    ignore_case: bool = False) -> dict[str, Any]:
    """Compare output and gold documents by id; returns fractions and counts.

    ``ignore_case`` must be the build's: it decides which gold mentions are ambiguous.
    """
    key = fold_case if ignore_case else str
    alias_entities: dict[str, set[str]] = {}
    entity_aliases: dict[str, frozenset[str]] = {}
    for entity in read_entities(kb_entities, Problems()):
        entity_aliases[entity.id] = frozenset(entity.aliases)
        for alias in entity.aliases:
            alias_entities.setdefault(key(alias), set()).add(entity.id)
    kb_facts: set[tuple[str, str, str]] | None = None
    signature = None
    if kb_triples is not None:
        kb_facts = {(h, r, t) for h, r, t, _ in read_triples(kb_triples, Problems())}
        signature = _signatures(entity_aliases, kb_triples)
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
        _count_triples(gold_doc, doc, counts, per_relation, kb_facts, covered)
        _count_mentions(gold_doc, doc, counts, alias_entities, key, signature)
    return _scores(counts, per_relation, with_kb=signature is not None)


def _count_triples(gold_doc: Document, doc: Document, counts: Counter,
                   per_relation: dict[str, Counter], kb_facts: set | None,
                   covered: set) -> None:
    """Recall over the gold triples, precision over the produced ones of covered relations."""
    gold_triples, out_triples = _triples(gold_doc), _triples(doc)
    for triple, n in gold_triples.items():
        hit = min(n, out_triples.get(triple, 0))
        counts["gold_triples"] += n
        counts["recalled"] += hit
        if kb_facts is not None and triple in kb_facts:
            counts["gold_triples_in_kb"] += n
            counts["recalled_in_kb"] += hit
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


def _count_mentions(gold_doc: Document, doc: Document, counts: Counter,
                    alias_entities: dict[str, set[str]], key: Any,
                    signature: dict[str, Any] | None) -> None:
    """Linking of the gold mentions: decided, right, and for ambiguous aliases how."""
    linked = {(e.start, e.end): e.kb_id for e in doc.entities}
    for entity in gold_doc.entities:
        span = (entity.start, entity.end)
        decided = linked.get(span) is not None
        right = linked.get(span) == entity.kb_id
        candidates = alias_entities.get(key(entity.text), set())
        counts["gold_mentions"] += 1
        counts["mentions_linkable"] += entity.kb_id in candidates
        counts["mentions_decided"] += decided
        counts["mentions_correct"] += right
        if len(candidates) < 2 or entity.kb_id not in candidates:
            continue
        counts["ambiguous_mentions"] += 1
        counts["ambiguous_correct"] += right
        counts["ambiguous_detected"] += span in linked
        counts["ambiguous_decided"] += decided
        if signature is not None:
            mine = signature.get(entity.kb_id)
            twin = any(signature.get(c) == mine for c in candidates if c != entity.kb_id)
            kind = "indistinguishable" if twin else "distinguishable"
            counts[f"ambiguous_{kind}"] += 1
            counts[f"ambiguous_{kind}_correct"] += right


def _scores(counts: Counter, per_relation: dict[str, Counter], with_kb: bool) -> dict[str, Any]:
    """The fractions of the score report, then its counts."""
    return {
        "recall": _ratio(counts["recalled"], counts["gold_triples"]),
        "precision": _ratio(counts["correct"], counts["produced"]),
        "ambiguous_alias_accuracy": _ratio(counts["ambiguous_correct"],
                                           counts["ambiguous_mentions"]),
        "ambiguous_alias_accuracy_decided": _ratio(counts["ambiguous_correct"],
                                                   counts["ambiguous_decided"]),
        "ambiguous_link_coverage": _ratio(counts["ambiguous_decided"],
                                          counts["ambiguous_mentions"]),
        "mention_linking_accuracy": _ratio(counts["mentions_correct"], counts["gold_mentions"]),
        "mention_linking_accuracy_decided": _ratio(counts["mentions_correct"],
                                                   counts["mentions_decided"]),
        "mention_alias_coverage": _ratio(counts["mentions_linkable"], counts["gold_mentions"]),
        **({"kb_triple_coverage": _ratio(counts["gold_triples_in_kb"], counts["gold_triples"]),
            "recall_of_kb_triples": _ratio(counts["recalled_in_kb"],
                                           counts["gold_triples_in_kb"]),
            "ambiguous_alias_accuracy_distinguishable": _ratio(
                counts["ambiguous_distinguishable_correct"], counts["ambiguous_distinguishable"]),
            "ambiguous_alias_accuracy_indistinguishable": _ratio(
                counts["ambiguous_indistinguishable_correct"],
                counts["ambiguous_indistinguishable"])}
           if with_kb else {}),
        "counts": dict(counts),
        "per_relation": {rel: {"recall": _ratio(c["recalled"], c["gold"]),
                               "precision": _ratio(c["correct"], c["produced"]), **dict(c)}
                         for rel, c in sorted(per_relation.items())},
    }
