"""``kg2instruction build``: KB + corpus -> grounded documents, IEPile instructions and stats."""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepke_llm.io import write_jsonl_atomic
from deepke_llm.problems import Problems
from deepke_llm.schema import Schema, load_schema
from kg2instruction.inputs import InputError
from kg2instruction.kb import KnowledgeBase, load_knowledge_base
from kg2instruction.pipeline import (
    BuildConfig,
    ChunkRunner,
    DocumentPipeline,
    process_corpus,
    stats_report,
)
from kg2instruction.rules import load_user_rules, make_rule_set


class InstructionsUnavailable(RuntimeError):
    """The core instruction converter (deepke_llm.instructions) is not installed."""


def inventory_schema(kb: KnowledgeBase, language: str, name: str = "kg2instruction") -> Schema:
    """A deepke-llm Schema whose relation types are the KB relation inventory.

    ``name`` is the relation name in ``language``, ``label`` the KB id; a name shared by two
    relations gets the id appended so that every type stays addressable.
    """
    counts: dict[str, int] = {}
    for rel in kb.relations:
        counts[rel.display(language)] = counts.get(rel.display(language), 0) + 1
    types = []
    for rel in kb.relations:
        shown = rel.display(language)
        item: dict[str, Any] = {"name": shown if counts[shown] == 1 else f"{shown} ({rel.id})",
                                "label": rel.id}
        other = {"en": rel.name} if language == "zh" else {"zh": rel.name_zh}
        other = {k: v for k, v in other.items() if v and v != shown}
        if other:
            item["names"] = other
        if rel.description:
            item["description"] = rel.description
        if rel.head_types:
            item["head_types"] = list(rel.head_types)
        if rel.tail_types:
            item["tail_types"] = list(rel.tail_types)
        if rel.symmetric:
            item["symmetric"] = True
        types.append(item)
    return Schema.from_dict({"name": name, "language": language, "relation_types": types})


def relation_types(kb: KnowledgeBase, language: str,
                   schema: str | Path | Schema | None) -> tuple[dict[int, str], frozenset[int] | None,
                                                                Schema]:
    """Relation index -> record type name, the allowed relation indices, and the RE schema.

    Without a schema every inventory relation is allowed and named in ``language``; with one, a
    KB relation maps to the schema type whose label is its id, else whose name matches.
    """
    full = inventory_schema(kb, language)
    names = {i: t.name for i, t in enumerate(full.relation_types)}
    if schema is None:
        return names, None, full
    chosen = load_schema(schema)
    where = chosen.path or chosen.name
    if not chosen.relation_types:
        raise InputError(f"schema '{where}' defines no relation types")
    by_label = {t.label: t for t in chosen.relation_types}
    mapped: dict[int, str] = {}
    for i, rel in enumerate(kb.relations):
        found = by_label.get(rel.id)
        for key in (rel.display(language), rel.name, rel.name_zh):
            if found is None and key:
                found = chosen.resolve("re", language, key)
        if found is not None:
            mapped[i] = found.name
    if not mapped:
        raise InputError(f"schema '{where}' has no relation type whose label is a relation id "
                         "or whose name is a relation name of the inventory")
    names.update(mapped)
    return names, frozenset(mapped), chosen


def build(kb_entities: str | Path, kb_triples: str | Path, relations: str | Path,
          corpus: str | Path, output: str | Path, *, instructions: str | Path | None = None,
          stats_path: str | Path | None = None, schema: str | Path | Schema | None = None,
          rules: str | Path | None = None, config: BuildConfig | None = None,
          instruction_options: Mapping[str, Any] | None = None,
          progress: bool = False, resume: bool = False,
          runner: ChunkRunner | None = None) -> dict[str, Any]:
    """Run the pipeline over ``corpus`` and write documents (and optionally instructions/stats).

    Returns the stats report (also written to ``stats_path``). Bad input records are counted
    and listed under ``input_errors``; only unusable inputs (missing files, an unreadable
    relation inventory or rules file) raise :class:`InputError`. An interrupted run keeps its
    documents in ``OUTPUT.partial``; ``resume=True`` continues it (see
    :func:`kg2instruction.pipeline.process_corpus`). Every output appears at its path only
    when complete. ``runner`` runs the chunks elsewhere (Ray: ``config.workers`` actors).
    """
    config = config or BuildConfig()
    issues = Problems()
    started = time.monotonic()
    kb = load_knowledge_base(kb_entities, kb_triples, relations, issues, config.ignore_case)
    loaded = time.monotonic()
    types, allowed, re_schema = relation_types(kb, config.language, schema)
    user = load_user_rules(rules) if rules else None
    rule_set = make_rule_set(kb, config.max_distance, allowed, user, config.drop_uncertain,
                             issues)
    pipeline = DocumentPipeline(kb, config, types, rule_set)
    # the KB is millions of long-lived objects: keep the cyclic GC from re-scanning them, and
    # forked workers from copying every page the scan would touch
    gc.collect()
    gc.freeze()
    cpu_before = _cpu_seconds()
    run = process_corpus(pipeline, str(corpus), str(output), issues, progress, resume,
                         runner)
    finished = time.monotonic()
    pipeline_cpu = _cpu_seconds() - cpu_before
    gc.unfreeze()
    report = stats_report(run.stats, [r.name for r in rule_set.user_rules])
    if resume:
        report["resumed_documents"] = run.skipped
    if instructions is not None:
        report["instructions"] = write_instructions(output, instructions, re_schema,
                                                    config.language, instruction_options or {})
    report["kb"] = {**kb.stats.to_dict(),
                    "symmetric_relations": [r.id for i, r in enumerate(kb.relations)
                                            if rule_set.symmetric.get(i, kb.symmetric[i])]}
    report["input_errors"] = issues.to_dict()
    report["config"] = {"language": config.language, "splitter": config.splitter,
                        "context": config.context, "max_distance": config.max_distance,
                        "shard": f"{config.shard[0]}/{config.shard[1]}",
                        "workers": config.workers, "schema": re_schema.name}
    # speeds are this process's own: a resumed run's earlier sentences took no time here
    report["timing"] = _timing(loaded - started, finished - loaded, pipeline_cpu,
                               run.processed_sentences)
    if stats_path is not None:
        write_jsonl_atomic(stats_path, [report])  # one line of JSON: a valid JSON file
    return report


def _timing(kb_load_s: float, pipeline_s: float, pipeline_cpu: float,
            sentences: int) -> dict[str, Any]:
    """The stats report's timing: KB load, pipeline wall and CPU seconds, sentence speeds."""
    return {"kb_load_s": round(kb_load_s, 3),
            "pipeline_s": round(pipeline_s, 3),
            "pipeline_cpu_s": round(pipeline_cpu, 3),
            "sentences_processed": sentences,
            "sentences_per_s": round(sentences / pipeline_s, 1) if pipeline_s > 0 else None,
            "sentences_per_cpu_s": round(sentences / pipeline_cpu, 1)
            if pipeline_cpu > 0 else None}


def write_instructions(documents: str | Path, output: str | Path, schema: Schema, language: str,
                       options: Mapping[str, Any]) -> int:
    """Convert the documents that carry relations into IEPile RE instruction lines.

    Documents without any KB triple are left out: the KB is incomplete, so "no triple found"
    is not evidence that the sentence states none (negatives come from the converter's schema
    sampling instead).
    """
    try:
        from deepke_llm.instructions import documents_to_instructions
    except ImportError as exc:
        raise InstructionsUnavailable(
            f"--instructions needs deepke_llm.instructions.documents_to_instructions ({exc}); "
            "the documents were written, convert them later with 'deepke-llm instruct'") from None
    from deepke_llm.records import read_documents

    docs = (d for d in read_documents(str(documents)) if d.relations)
    lines = documents_to_instructions(docs, schema, "re", language=language,
                                      **{"source": "kg2instruction", **dict(options)})
    return write_jsonl_atomic(output, lines)


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped workers (user + system)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
