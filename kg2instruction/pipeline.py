"""The KG2Instruction pipeline over one document, and the streaming, sharded, multi-process run.

Per document: split sentences -> detect mentions -> candidates -> disambiguate -> distant
supervision -> rule filters -> :class:`deepke_llm.records.Document`. Every stage adds to a
:class:`collections.Counter` of stats; counters of documents, chunks and workers add up, so a
run's stats do not depend on how it was parallelised. Output order is corpus order.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from deepke_llm.records import Document, Entity, Relation
from kg2instruction.context import make_context_scorer
from kg2instruction.inputs import InputIssues, read_corpus
from kg2instruction.kb import KnowledgeBase
from kg2instruction.linking import LinkerConfig, candidate_lists, disambiguate
from kg2instruction.mentions import detect_mentions
from kg2instruction.rules import RULES, RuleSet, apply_rules, distant_candidates
from kg2instruction.sentences import make_splitter

_RECORD_KEYS = {"id", "text", "language", "entities", "relations", "events", "raw_output",
                "errors"}


@dataclass(frozen=True)
class BuildConfig:
    """Options of a build run (the CLI flags of ``kg2instruction build``)."""

    language: str = "en"  # en or zh: sentence rules and relation names
    splitter: str = "rules"  # rules, spacy or none
    context: str = "tfidf"  # tfidf, none, minilm or a sentence-embedding model directory
    max_distance: int = 300  # characters between two mentions of one triple; 0 = no limit
    ignore_case: bool = False  # match aliases case-insensitively
    drop_uncertain: bool = True  # drop triples resting on a tied (coin-flip) entity link
    keep_empty: bool = True  # also write documents that got no relation
    workers: int = 1
    shard: tuple[int, int] = (0, 1)  # (index, count): this run handles index of count shards
    chunk_size: int = 64  # documents per worker task
    ner_model: str | None = None  # spaCy pipeline name or directory (optional)
    ner_mode: str = "confirm"  # confirm: NER must cover a mention; propose: NER adds mentions
    linker: LinkerConfig = field(default_factory=LinkerConfig)

    def __post_init__(self) -> None:
        if self.language not in ("en", "zh"):
            raise ValueError(f"language must be en or zh, not '{self.language}'")
        index, count = self.shard
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard {index}/{count}: need 0 <= i < n")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")


class DocumentPipeline:
    """Turns one corpus record into a grounded Document plus a stats Counter."""

    def __init__(self, kb: KnowledgeBase, config: BuildConfig, relation_types: dict[int, str],
                 rules: RuleSet) -> None:
        self.kb = kb
        self.config = config
        self.relation_types = relation_types
        self.rules = rules
        self.split = make_splitter(config.splitter, config.language)
        self.context = make_context_scorer(config.context, kb, config.language)
        self.ner = None
        if config.ner_model:
            from kg2instruction.ner import NerFilter

            self.ner = NerFilter(config.ner_model, config.ner_mode)

    def process(self, record: dict[str, Any], stats: Counter) -> Document:
        kb, config = self.kb, self.config
        text = record["text"]
        stats["documents"] += 1
        sentences = self.split(text)
        stats["sentences"] += len(sentences)
        mentions = detect_mentions(text, sentences, kb)
        if self.ner is not None:
            mentions = self.ner.apply(kb, text, sentences, mentions, stats)
        stats["mentions"] += len(mentions)
        candidates = candidate_lists(kb, mentions, config.linker)
        stats["candidates"] += sum(map(len, candidates))
        stats["ambiguous_mentions"] += sum(1 for c in candidates if len(c) > 1)
        links = disambiguate(kb, text, sentences, mentions, candidates, config.linker,
                             self.context)
        stats["links"] += len(links)
        for link in links:
            stats[f"links_by:{link.how}"] += 1
        entities = [link.entity for link in links]
        certain = [link.certain for link in links]
        by_sentence: dict[int, list[int]] = {}
        for i, mention in enumerate(mentions):
            by_sentence.setdefault(mention.sentence, []).append(i)
        dropped: Counter = Counter()
        kept = []
        for k, members in by_sentence.items():
            if len(members) < 2:
                continue
            found = distant_candidates(kb, mentions, entities, members)
            stats["candidate_triples"] += len(found)
            if found:
                kept.extend(apply_rules(kb, self.rules, text, sentences[k], mentions, entities,
                                        certain, found, dropped))
        for rule, n in dropped.items():
            stats[f"dropped:{rule}"] += n
        records = [self._entity(text, m, e) for m, e in zip(mentions, entities, strict=True)]
        relations = []
        for c in sorted(kept, key=lambda c: (mentions[c.head].start, mentions[c.tail].start,
                                             c.relation)):
            name = self.relation_types[c.relation]
            relations.append(Relation(name, records[c.head], records[c.tail],
                                      kb_relation=kb.relations[c.relation].id))
            stats[f"triples:{name}"] += 1
        stats["triples"] += len(relations)
        stats["documents_with_relations"] += bool(relations)
        meta = {k: v for k, v in record.items() if k not in _RECORD_KEYS}
        return Document(id=record["id"], text=text, language=config.language,
                        entities=tuple(records), relations=tuple(relations), meta=meta)

    def _entity(self, text: str, mention, entity: int) -> Entity:
        types = self.kb.types[entity]
        return Entity(types[0] if types else "entity", text[mention.start:mention.end],
                      mention.start, mention.end, kb_id=self.kb.ids[entity])


# the pipeline of the running process; forked workers inherit it (and the KB) copy-on-write
_PIPELINE: DocumentPipeline | None = None


def _process_chunk(chunk: list[tuple[int, dict[str, Any]]]) -> tuple[list[str], Counter,
                                                                   list[str]]:
    assert _PIPELINE is not None
    stats: Counter = Counter()
    lines, errors = [], []
    for number, record in chunk:
        try:
            doc = _PIPELINE.process(record, stats)
        except Exception as exc:  # a bad record must never stop a corpus-scale run
            errors.append(f"line {number}: document '{record.get('id')}' failed "
                          f"({type(exc).__name__}: {exc})")
            continue
        if _PIPELINE.config.keep_empty or doc.relations:
            lines.append(doc.to_json() + "\n")
    return lines, stats, errors


def _chunks(records: Iterable[tuple[int, dict[str, Any]]], size: int) -> Iterator[list]:
    chunk: list = []
    for item in records:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_pipeline(pipeline: DocumentPipeline,
                 records: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[tuple]:
    """Process records in corpus order with ``config.workers`` forked processes.

    At most two chunks per worker are in flight, so memory stays bounded whatever the corpus
    size (``Pool.imap`` would read the whole input ahead).
    """
    global _PIPELINE
    _PIPELINE = pipeline
    workers = pipeline.config.workers
    chunks = _chunks(records, pipeline.config.chunk_size)
    if workers == 1:
        for chunk in chunks:
            yield _process_chunk(chunk)
        return
    import multiprocessing

    try:
        context = multiprocessing.get_context("fork")  # the KB is shared, never pickled
    except ValueError:  # no fork (Windows): pickling a large KB per worker would cost more
        import warnings

        warnings.warn("--workers needs the 'fork' start method; running in one process",
                      stacklevel=2)
        for chunk in chunks:
            yield _process_chunk(chunk)
        return
    with context.Pool(workers) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_process_chunk, (chunk,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def process_corpus(pipeline: DocumentPipeline, corpus: str, output: str,
                   issues: InputIssues, progress: bool = False) -> Counter:
    """Stream ``corpus`` through ``pipeline`` into ``output`` (written atomically)."""
    stats: Counter = Counter()
    records = read_corpus(corpus, issues, pipeline.config.shard)
    tmp = f"{output}.tmp-{os.getpid()}"
    started = time.monotonic()
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            for lines, chunk_stats, errors in run_pipeline(pipeline, records):
                handle.writelines(lines)
                stats.update(chunk_stats)
                for message in errors:
                    issues.add("document_failed", f"{corpus}: {message}")
                if progress:
                    _progress(stats, started)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if progress:
        import sys

        print(file=sys.stderr)
    return stats


def _progress(stats: Counter, started: float) -> None:
    import sys

    elapsed = max(time.monotonic() - started, 1e-9)
    print(f"\r{stats['documents']} documents, {stats['sentences']} sentences, "
          f"{stats['triples']} triples, {stats['sentences'] / elapsed:.0f} sentences/s",
          end="", file=sys.stderr, flush=True)


def stats_report(stats: Counter, extra_rules: Iterable[str] = ()) -> dict[str, Any]:
    """Nest a run's flat counter into the stats JSON layout."""
    plain = ("documents", "documents_with_relations", "sentences", "mentions",
             "ambiguous_mentions", "candidates", "links", "candidate_triples", "triples")
    report: dict[str, Any] = {key: stats.get(key, 0) for key in plain}
    report["links_by"] = {how: stats.get(f"links_by:{how}", 0)
                          for how in ("single", "coherence", "context", "prior", "tie")}
    report["triples_per_relation"] = dict(sorted(
        (k.split(":", 1)[1], v) for k, v in stats.items() if k.startswith("triples:")))
    ner = {k[4:]: stats[k] for k in ("ner_entities", "ner_unconfirmed", "ner_proposed")
           if k in stats}
    if ner:
        report["ner"] = ner
    rules = list(RULES) + [f"user:{r}" for r in extra_rules]
    report["dropped"] = {rule: stats.get(f"dropped:{rule}", 0) for rule in rules}
    return report
