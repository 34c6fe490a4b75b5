"""The KG2Instruction pipeline over one document, and the streaming, sharded, multi-process run.

Per document: split sentences -> detect mentions -> candidates -> disambiguate -> distant
supervision -> rule filters -> :class:`deepke_llm.records.Document`. Every stage adds to a
:class:`collections.Counter` of stats; counters of documents, chunks and workers add up, so a
run's stats do not depend on how it was parallelised. Output order is corpus order.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepke_llm.batch import RunSummary
from deepke_llm.config import config_field
from deepke_llm.problems import Problems
from deepke_llm.progress import ProgressBar
from deepke_llm.records import Document, Entity, Relation
from kg2instruction.context import make_context_scorer
from kg2instruction.inputs import read_corpus
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

    language: str = config_field("en", help="en or zh: sentence rules and relation names.")
    splitter: str = config_field("rules", help="Sentence splitter: rules, spacy or none.")
    context: str = config_field("tfidf", help="Context scorer: tfidf, none, minilm or a "
                                              "sentence-embedding model directory.")
    max_distance: int = config_field(300, minimum=0, help="Characters between two mentions of "
                                                          "one triple; 0 = no limit.")
    ignore_case: bool = config_field(False, help="Match aliases case-insensitively.")
    drop_uncertain: bool = config_field(True, help="Tied (coin-flip) links get no kb_id and "
                                                   "their triples are dropped.")
    keep_empty: bool = config_field(True, help="Also write documents that got no relation.")
    workers: int = config_field(1, minimum=1, help="Worker processes.")
    shard: tuple[int, int] = config_field((0, 1), help="(index, count): this run handles shard "
                                                       "index of count.")
    chunk_size: int = config_field(64, minimum=1, help="Documents per worker task.")
    ner_model: str | None = config_field(None, help="spaCy pipeline name or directory "
                                                    "(optional).")
    ner_mode: str = config_field("confirm", help="confirm: NER must cover a mention; propose: "
                                                 "NER adds mentions.")
    linker: LinkerConfig = config_field(help="Entity-linking weights and limits.",
                                        default_factory=LinkerConfig)

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
        records, ties, errors = self._entities(text, mentions, links)
        stats["links"] += sum(1 for e in records if e.kb_id is not None)
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
        if ties:
            meta["uncertain_links"] = ties
        return Document(id=record["id"], text=text, language=config.language,
                        entities=tuple(records), relations=tuple(relations),
                        errors=tuple(errors), meta=meta)

    def _entities(self, text: str, mentions: list, links: list) -> tuple[list[Entity],
                                                                         list[dict], list[str]]:
        """Entity records of the mentions, the tied links' candidates and their error lines.

        A tie (equally supported candidates) is no evidence for any one of them: by default the
        mention is written without ``kb_id``; with ``drop_uncertain=False`` the first candidate
        is kept and the guess is named in ``errors``. Both list the tied ids in the document's
        ``uncertain_links``.
        """
        kb = self.kb
        records, ties, errors = [], [], []
        for mention, link in zip(mentions, links, strict=True):
            surface = text[mention.start:mention.end]
            if link.certain:
                types = kb.types[link.entity]
                records.append(Entity(types[0] if types else "entity", surface, mention.start,
                                      mention.end, kb_id=kb.ids[link.entity]))
                continue
            tied = [kb.ids[c] for c in link.tied]
            ties.append({"text": surface, "start": mention.start, "end": mention.end,
                         "candidates": tied})
            if self.config.drop_uncertain:
                records.append(Entity("entity", surface, mention.start, mention.end))
                continue
            types = kb.types[link.entity]
            records.append(Entity(types[0] if types else "entity", surface, mention.start,
                                  mention.end, kb_id=kb.ids[link.entity]))
            errors.append(f"uncertain link: '{surface}' at {mention.start}-{mention.end} is "
                          f"{kb.ids[link.entity]} by a tie among {', '.join(tied)}")
        return records, ties, errors


# the pipeline of the running process; forked workers inherit it (and the KB) copy-on-write
_PIPELINE: DocumentPipeline | None = None


@dataclass
class ChunkResult:
    """What one chunk of documents produced: output lines (id, JSON) in corpus order."""

    stats: Counter
    last_line: int  # corpus line number of the chunk's last record
    lines: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def process_chunk(pipeline: DocumentPipeline,
                  chunk: list[tuple[int, dict[str, Any]]]) -> ChunkResult:
    """Run ``pipeline`` over one chunk of ``(line number, record)``: the unit of work of every
    runner (in process, forked workers, Ray actors)."""
    stats: Counter = Counter()
    result = ChunkResult(stats, chunk[-1][0] if chunk else 0)
    for number, record in chunk:
        counted: Counter = Counter()  # a document that fails halfway adds nothing to the stats
        try:
            doc = pipeline.process(record, counted)
        except Exception as exc:  # a bad record must never stop a corpus-scale run
            result.errors.append(f"line {number}: document '{record.get('id')}' failed "
                                 f"({type(exc).__name__}: {exc})")
            continue
        stats.update(counted)
        if pipeline.config.keep_empty or doc.relations:
            result.lines.append((doc.id, doc.to_json()))
    return result


def _process_chunk(chunk: list[tuple[int, dict[str, Any]]]) -> ChunkResult:
    assert _PIPELINE is not None
    return process_chunk(_PIPELINE, chunk)


def chunked(records: Iterable[tuple[int, dict[str, Any]]], size: int) -> Iterator[list]:
    """``records`` in lists of ``size`` (the last one shorter), read lazily."""
    chunk: list = []
    for item in records:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_pipeline(pipeline: DocumentPipeline,
                 records: Iterable[tuple[int, dict[str, Any]]]) -> Iterator[ChunkResult]:
    """Process records in corpus order with ``config.workers`` forked processes.

    At most two chunks per worker are in flight, so memory stays bounded whatever the corpus
    size (``Pool.imap`` would read the whole input ahead).
    """
    global _PIPELINE
    _PIPELINE = pipeline
    workers = pipeline.config.workers
    chunks = chunked(records, pipeline.config.chunk_size)
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


@dataclass
class CorpusRun(RunSummary):
    """A corpus pass in the shape of every file run (:class:`deepke_llm.batch.RunSummary`):
    ``documents`` this process went through, ``skipped`` the documents already in the output when
    a resumed run started, ``failed``, ``input_errors``, ``seconds``; plus the pipeline's counters
    (``stats``: with ``--resume`` they include the interrupted runs' counts) and the sentences this
    process went through (for its speed)."""

    stats: Counter = field(default_factory=Counter)
    processed_sentences: int = 0

    def count(self, chunk: Any) -> int:
        """Add a finished chunk's counts; returns the documents it handled (failed ones too)."""
        self.stats.update(chunk.stats)
        self.processed_sentences += chunk.stats["sentences"]
        handled = chunk.stats["documents"] + len(chunk.errors)
        self.documents += handled
        return handled


CHECKPOINT_SECONDS = 2.0


ChunkRunner = Callable[[DocumentPipeline, Iterable[tuple[int, dict[str, Any]]]],
                      Iterator[ChunkResult]]


def process_corpus(pipeline: DocumentPipeline, corpus: str, output: str,
                   issues: Problems, progress: bool = False,
                   resume: bool = False, runner: ChunkRunner | None = None) -> CorpusRun:
    """Stream ``corpus`` through ``pipeline`` into ``output``.

    Documents go to ``OUTPUT.partial`` as they finish and the file becomes ``OUTPUT`` only when
    the whole corpus is done (:class:`deepke_llm.io.ResumableWriter`). Every few seconds the
    stats so far and the last corpus line they cover go to ``OUTPUT.partial.stats``; with
    ``resume`` the records up to that line are skipped and their stats taken from there, later
    records are processed again but written only when their id is not in the output yet, so the
    final stats equal an uninterrupted run's. ``runner`` yields the chunks' results in corpus
    order (default :func:`run_pipeline`; on Ray :func:`deepke_llm.distributed.kg2instruction_runner`).
    """
    from deepke_llm.io import ResumableWriter, write_jsonl_atomic

    checkpoint = Path(f"{output}.partial.stats")
    base = _read_checkpoint(checkpoint) if resume else None
    stats: Counter = Counter(base["stats"]) if base else Counter()
    failed: list[str] = list(base["failed"]) if base else []
    done_line = base["line"] if base else 0
    run = CorpusRun(stats=stats)
    started = time.perf_counter()
    records = ((n, r) for n, r in read_corpus(corpus, issues, pipeline.config.shard)
               if n > done_line)
    if not resume:
        checkpoint.unlink(missing_ok=True)  # a stale one must not describe this fresh output
    bar = ProgressBar(progress, desc="kg2instruction", initial=stats["documents"])
    last_saved, last_line = time.monotonic(), done_line

    def save() -> None:
        write_jsonl_atomic(checkpoint, [{"line": last_line, "stats": stats, "failed": failed}])

    with ResumableWriter(output, resume=resume) as writer:
        done = writer.done_ids
        run.skipped = len(done)
        try:
            for chunk in (runner or run_pipeline)(pipeline, records):
                for doc_id, line in chunk.lines:
                    if doc_id not in done:
                        writer.write(line)
                bar.advance(run.count(chunk))
                failed.extend(chunk.errors)
                last_line = chunk.last_line
                bar.status(f"sentences={stats['sentences']}, triples={stats['triples']}",
                           refresh=False)
                if time.monotonic() - last_saved >= CHECKPOINT_SECONDS:
                    save()
                    last_saved = time.monotonic()
        except BaseException:
            if last_line > done_line:
                save()  # the chunks written so far, exactly: --resume starts after them
            raise
    checkpoint.unlink(missing_ok=True)
    bar.close()
    for message in failed:
        issues.add("document_failed", f"{corpus}: {message}")
    run.failed, run.input_errors = len(failed), issues.count
    run.seconds = time.perf_counter() - started
    return run


def _read_checkpoint(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no (readable) checkpoint: every record is processed again
    if not (isinstance(data, dict) and isinstance(data.get("line"), int)
            and isinstance(data.get("stats"), dict) and isinstance(data.get("failed"), list)):
        return None
    return data


def stats_report(stats: Counter, extra_rules: Iterable[str] = ()) -> dict[str, Any]:
    """Nest a run's flat counter into the stats JSON layout."""
    plain = ("documents", "documents_with_relations", "sentences", "mentions",
             "ambiguous_mentions", "candidates", "links", "candidate_triples", "triples")
    report: dict[str, Any] = {key: stats.get(key, 0) for key in plain}
    report["links_by"] = {how: stats.get(f"links_by:{how}", 0)
                          for how in ("single", "coherence", "context", "prior", "combined", "tie")}
    report["triples_per_relation"] = dict(sorted(
        (k.split(":", 1)[1], v) for k, v in stats.items() if k.startswith("triples:")))
    ner = {k[4:]: stats[k] for k in ("ner_entities", "ner_unconfirmed", "ner_proposed")
           if k in stats}
    if ner:
        report["ner"] = ner
    rules = list(RULES) + [f"user:{r}" for r in extra_rules]
    report["dropped"] = {rule: stats.get(f"dropped:{rule}", 0) for rule in rules}
    return report
