"""``pretrain prepare``: raw documents -> tokens + sentence cuts -> packed samples -> indexed dataset.

Pipeline: the parent reads each source as a stream of raw records and groups them into chunks of a
fixed size (independent of ``workers``); workers parse, hash and tokenize a chunk (one batched call
of the fast tokenizer for all its documents, each document tokenized whole so the token stream is
the tokenizer's own for the text) and map sentence spans onto token boundaries (the only places
packing may cut, besides inside over-long sentences); the parent takes the results back *in input
order*, drops exact-duplicate documents, packs and writes. The output is therefore
byte-identical for any number of workers. At most ``2 * workers`` chunks are in flight, so memory
does not grow with the corpus, except for the duplicate filter: one 16-byte digest per distinct
document (about 100 bytes each in a Python set, i.e. ~1 GB per 10M documents; ``dedup=False``
turns it off).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from deepke_llm.config import check_ranges, config_field
from deepke_llm.io import json_value
from deepke_llm.problems import Problems
from deepke_llm.sentences import sentence_spans
from deepke_llm.training.pretrain.corpus import BadLine, SourceSpec, StreamPacker, iter_raw_records
from deepke_llm.training.pretrain.indexed_dataset import IndexedDatasetWriter, token_dtype

logger = logging.getLogger(__name__)

MAX_ERROR_EXAMPLES = 5


@dataclass(frozen=True)
class Chunk:
    """A slice of one input file, processed by one worker call."""

    source_id: int
    path: str
    is_jsonl: bool
    text_field: str
    records: list[tuple[int, str | BadLine]]  # (line number, raw JSON line or plain-text document)


@dataclass
class ChunkResult:
    """Tokens of one chunk: the documents' token streams back to back, BOS/EOS included."""

    tokens: np.ndarray  # uint32, flat
    unit_lengths: np.ndarray  # int64, tokens per sentence (BOS/EOS counted with first/last)
    doc_units: np.ndarray  # int64, sentences per document
    doc_tokens: np.ndarray  # int64, tokens per document
    digests: list[bytes]
    empty: int = 0
    # records skipped: kinds "bad_record" and "undecodable_line" (not UTF-8), first messages kept
    problems: Problems = field(default_factory=lambda: Problems(keep=MAX_ERROR_EXAMPLES))


@dataclass
class SourceStats:
    """Per-source counts, saved in the sidecar JSON (the basis of mixing ratios)."""

    name: str
    files: list[str] = field(default_factory=list)
    documents: int = 0
    duplicates: int = 0
    empty: int = 0
    bad_records: int = 0
    undecodable_lines: int = 0
    sentences: int = 0
    samples: int = 0
    tokens: int = 0
    dropped_samples: int = 0
    dropped_tokens: int = 0


# ---- worker side -----------------------------------------------------------------------------

_TOKENIZER: dict[str, Any] = {}


def _init_worker(tokenizer_name: str, bos: int | None, eos: int | None, single_core: bool) -> None:
    if single_core:
        # one worker = one core; Rust-side threads would only oversubscribe the pool
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    _TOKENIZER.update(encode=batch_encoder(tokenizer, tokenizer_name), bos=bos, eos=eos)


def batch_encoder(tokenizer: Any, name: str = "") -> Callable[[list[str]], list[Any]]:
    """The Rust batch call of a fast tokenizer: ``texts -> tokenizers.Encoding`` (ids + offsets).

    Same ids as ``tokenizer(texts, add_special_tokens=False)``, without the Python-side
    BatchEncoding overhead. Offsets are needed to map sentences onto tokens, hence fast only.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"tokenizer {name or type(tokenizer).__name__} is not a fast (Rust) tokenizer; "
                         "corpus preparation needs its token offsets: use a tokenizer with tokenizer.json")
    return lambda texts: backend.encode_batch(texts, add_special_tokens=False)


def document_text(raw: str | BadLine, is_jsonl: bool, text_field: str, where: str) -> str:
    """The text of one raw record; raises ValueError ``{where}: reason`` (one line)."""
    if isinstance(raw, BadLine):
        raise ValueError(f"{where}: {raw.reason}")
    if not is_jsonl:
        return raw
    record = json_value(raw, where)
    if not isinstance(record, dict) or text_field not in record:
        raise ValueError(f"{where}: no '{text_field}' field (choose it with --text-field)")
    text = record[text_field]
    if not isinstance(text, str):
        raise ValueError(f"{where}: field '{text_field}' is {type(text).__name__}, not a string")
    return text


def sentence_token_lengths(text: str, encoding: Any) -> list[int]:
    """Tokens per sentence of a document tokenized as a whole (zero-token sentences left out).

    The document is tokenized once, so the token stream is exactly the tokenizer's for the whole
    text (whitespace, newlines, one dummy prefix). Sentences only choose where packing may cut: a
    sentence starts at the first token ending after its first character (the token holding that
    character, or the next one when the tokenizer dropped it), so a token that straddles a
    boundary, like byte-level "ĠThe", goes with the sentence it starts.
    """
    n = len(encoding.ids)
    cuts = [0]
    for start, _ in sentence_spans(text)[1:]:
        token = encoding.char_to_token(start)
        if token is None:
            token = next((i for i, (_, end) in enumerate(encoding.offsets) if end > start), n)
        cuts.append(max(token, cuts[-1]))
    cuts.append(n)
    return [b - a for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def process_chunk(chunk: Chunk) -> ChunkResult:
    """Parse, hash, tokenize (one batched call per chunk) and find sentence cuts (runs in a worker)."""
    encode, bos, eos = _TOKENIZER["encode"], _TOKENIZER["bos"], _TOKENIZER["eos"]
    texts: list[str] = []
    problems = Problems(keep=MAX_ERROR_EXAMPLES)
    empty = 0
    for line, raw in chunk.records:
        try:
            text = document_text(raw, chunk.is_jsonl, chunk.text_field, f"{chunk.path}:{line}")
        except ValueError as exc:
            problems.add("undecodable_line" if isinstance(raw, BadLine) else "bad_record", str(exc))
            continue
        if text.strip():
            texts.append(text)
        else:
            empty += 1
    pieces: list[list[int]] = []
    lengths: list[int] = []
    doc_units: list[int] = []
    digests: list[bytes] = []
    for text, encoding in zip(texts, encode(texts) if texts else [], strict=True):
        units = sentence_token_lengths(text, encoding)
        if not units:
            empty += 1
            continue
        digests.append(hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest())
        if bos is not None:
            pieces.append([bos])
            units[0] += 1
        pieces.append(encoding.ids)
        if eos is not None:
            pieces.append([eos])
            units[-1] += 1
        lengths.extend(units)
        doc_units.append(len(units))
    unit_lengths = np.asarray(lengths, dtype=np.int64)
    units_arr = np.asarray(doc_units, dtype=np.int64)
    total = int(unit_lengths.sum())
    tokens = np.fromiter(chain.from_iterable(pieces), dtype=np.uint32, count=total)
    starts = np.concatenate([[0], np.cumsum(units_arr)[:-1]]).astype(np.int64)
    doc_tokens = (np.add.reduceat(unit_lengths, starts) if len(units_arr)
                  else np.zeros(0, np.int64))
    return ChunkResult(tokens, unit_lengths, units_arr, doc_tokens, digests, empty, problems)


# ---- parent side -----------------------------------------------------------------------------

def iter_chunks(specs: list[SourceSpec], source_ids: list[int], text_field: str,
                text_mode: str, chunk_docs: int, chunk_chars: int) -> Iterator[Chunk]:
    """Group each file's records into chunks of at most ``chunk_docs`` records / ``chunk_chars``."""
    for spec, source_id in zip(specs, source_ids, strict=True):
        records: list[tuple[int, str | BadLine]] = []
        size = 0
        for line, raw in iter_raw_records(spec, text_mode):
            records.append((line, raw))
            size += len(raw) if isinstance(raw, str) else 0
            if len(records) >= chunk_docs or size >= chunk_chars:
                yield Chunk(source_id, str(spec.path), spec.is_jsonl, text_field, records)
                records, size = [], 0
        if records:
            yield Chunk(source_id, str(spec.path), spec.is_jsonl, text_field, records)


def run_in_order(chunks: Iterator[Chunk], workers: int, init_args: tuple) -> Iterator[tuple[Chunk, ChunkResult]]:
    """Process chunks in ``workers`` processes (in-process for 1), yielding results in input order."""
    if workers <= 1:
        _init_worker(*init_args)
        for chunk in chunks:
            yield chunk, process_chunk(chunk)
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(workers, mp_context=mp.get_context(method),
                             initializer=_init_worker, initargs=init_args) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(process_chunk, chunk)))
            if len(pending) >= 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


@dataclass
class PrepareOptions:
    """Knobs of :func:`prepare_corpus` (``deepke-llm pretrain prepare`` options of the same name)."""

    max_len: int = config_field(1024, minimum=1, help="Max tokens per packed sample.")
    min_len: int = config_field(16, minimum=0, help="Drop samples shorter than this.")
    text_field: str = config_field("text", help="JSON field holding the text.")
    text_mode: str = config_field("paragraph", help="Plain text: documents are blank-line "
                                  "separated paragraphs, or lines.")
    workers: int = config_field(1, minimum=1, help="Worker processes (output is identical for "
                                "any N).")
    dedup: bool = config_field(True, help="Drop exact-duplicate documents (memory ~100 bytes per "
                               "distinct document).")
    add_bos: bool = config_field(True, help="BOS token before each document.")
    add_eos: bool = config_field(True, help="EOS token after each document.")
    vocab_size: int | None = config_field(None, help="Vocabulary size deciding the token dtype "
                                          "(default: the tokenizer's).")
    chunk_docs: int = config_field(512, help="Records per worker call (at most).")
    chunk_chars: int = config_field(1 << 20, help="Characters per worker call (at "
                                    "most, past one record).")

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.min_len > self.max_len:
            raise ValueError(f"min_len must be between 0 and max_len ({self.max_len}), got {self.min_len}")
        if self.text_mode not in ("paragraph", "line"):
            raise ValueError(f"text_mode must be 'paragraph' or 'line', got {self.text_mode!r}")


def prepare_corpus(sources: list[str | SourceSpec], tokenizer_name: str, out_prefix: str,
                   options: PrepareOptions | None = None,
                   progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Build an indexed dataset at ``out_prefix`` from ``sources`` (``NAME=PATH`` or ``PATH``).

    ``progress`` is called after each chunk with the source, its documents so far, the tokens
    written and the seconds elapsed. Returns the sidecar metadata (also written to
    ``<out_prefix>.json``).
    """
    from deepke_llm import __version__

    options = options or PrepareOptions()
    specs, source_ids, stats = _plan_sources(sources)
    tokenizer_name, tokenizer = _load_tokenizer(tokenizer_name)
    vocab_size = len(tokenizer)
    bos = tokenizer.bos_token_id if options.add_bos else None
    eos = tokenizer.eos_token_id if options.add_eos else None
    writer = IndexedDatasetWriter(out_prefix, token_dtype(options.vocab_size or vocab_size))
    chunks = iter_chunks(specs, source_ids, options.text_field, options.text_mode,
                         options.chunk_docs, options.chunk_chars)
    try:
        results = run_in_order(chunks, options.workers,
                               (tokenizer_name, bos, eos, options.workers > 1))
        errors = _pack_and_write(results, writer, stats, options, progress)
        metadata = {
            "tokenizer": tokenizer_name,
            "vocab_size": vocab_size, "max_len": options.max_len, "min_len": options.min_len,
            "bos": bos, "eos": eos, "dedup": options.dedup,
            "sources": [vars(s) for s in stats], "errors": errors,
            "deepke_llm_version": __version__,
        }
        for error in errors:
            logger.warning("skipped record: %s", error)
        return writer.finish(metadata)
    except BaseException:
        writer.abort()
        raise


def _plan_sources(sources: list[str | SourceSpec]) -> tuple[list[SourceSpec], list[int],
                                                            list[SourceStats]]:
    """Input files in reading order, their source ids, and one (empty) stats entry per source."""
    specs = [s if isinstance(s, SourceSpec) else SourceSpec.parse(s) for s in sources]
    for spec in specs:
        if not spec.path.is_file():
            raise FileNotFoundError(f"{spec.path}: input file not found")
    names = list(dict.fromkeys(s.name for s in specs))
    stats = [SourceStats(name=n) for n in names]
    for spec in specs:
        stats[names.index(spec.name)].files.append(str(spec.path))
    # sources are packed one after the other, so files of one source are read together
    order = sorted(range(len(specs)), key=lambda i: names.index(specs[i].name))
    specs = [specs[i] for i in order]
    return specs, [names.index(s.name) for s in specs], stats


def _load_tokenizer(name: str) -> tuple[str, Any]:
    """(the name to record, the tokenizer); a fast tokenizer is required."""
    from transformers import AutoTokenizer

    if Path(name).exists():
        # recorded in the sidecar: later steps (pretrain run, inspect) may run from another directory
        name = str(Path(name).resolve())
    tokenizer = AutoTokenizer.from_pretrained(name)
    batch_encoder(tokenizer, name)  # fail here, not in every worker
    return name, tokenizer


def _pack_and_write(results: Iterator[tuple[Chunk, ChunkResult]], writer: IndexedDatasetWriter,
                    stats: list[SourceStats], options: PrepareOptions,
                    progress: Callable[[dict[str, Any]], None] | None) -> list[str]:
    """Drop duplicates, pack each source's token stream into samples and write them (counting
    everything in ``stats``); returns the first skipped-record messages."""
    seen: set[bytes] = set()
    problems = Problems(keep=MAX_ERROR_EXAMPLES)
    packer = StreamPacker(options.max_len)
    current = -1
    started = time.perf_counter()

    def emit(samples: list[np.ndarray], source_id: int) -> None:
        kept = [s for s in samples if len(s) >= options.min_len]
        stat = stats[source_id]
        stat.dropped_samples += len(samples) - len(kept)
        stat.dropped_tokens += sum(len(s) for s in samples) - sum(len(s) for s in kept)
        stat.samples += len(kept)
        stat.tokens += sum(len(s) for s in kept)
        writer.add_samples(kept, source_id)

    for chunk, result in results:
        if chunk.source_id != current:
            if current >= 0:
                emit(packer.flush(), current)
            current = chunk.source_id
        stat = stats[chunk.source_id]
        stat.bad_records += result.problems.count
        stat.undecodable_lines += result.problems.counts["undecodable_line"]
        stat.empty += result.empty
        problems.merge(result.problems)
        if options.dedup:
            tokens, units = _drop_duplicates(result, seen, stat)
        else:
            tokens, units = result.tokens, result.unit_lengths
            stat.documents += len(result.digests)
        stat.sentences += len(units)
        emit(packer.add(tokens, units.tolist()), chunk.source_id)
        if progress is not None:
            progress({"source": stat.name, "documents": stat.documents,
                      "tokens": writer.num_tokens, "seconds": time.perf_counter() - started})
    if current >= 0:
        emit(packer.flush(), current)
    return problems.messages


def _drop_duplicates(result: ChunkResult, seen: set[bytes],
                     stat: SourceStats) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and unit lengths of the chunk's documents not seen before (first copy wins)."""
    keep = np.ones(len(result.digests), dtype=bool)
    for i, digest in enumerate(result.digests):
        if digest in seen:
            keep[i] = False
        else:
            seen.add(digest)
    stat.documents += int(keep.sum())
    stat.duplicates += int((~keep).sum())
    if keep.all():
        return result.tokens, result.unit_lengths
    token_mask = np.repeat(keep, result.doc_tokens)
    unit_mask = np.repeat(keep, result.doc_units)
    return result.tokens[token_mask], result.unit_lengths[unit_mask]
