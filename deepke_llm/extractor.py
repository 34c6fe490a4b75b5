"""Extractor: text + schema -> prompts -> backend -> parse -> ground -> merged records.

Per document, the text is split into windows that fit the model's context next to the prompt,
every window is asked every schema chunk (IEPile: 6 entity types or 4 relation / event types per
prompt), and the grounded results are mapped back to document offsets and de-duplicated.
Prompts of many documents go to the backend together so it can batch them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from deepke_llm.backends.base import (
    Backend,
    BackendError,
    GenerationConfig,
    context_length,
    count_tokens,
)
from deepke_llm.cjk import is_cjk
from deepke_llm.grounding import ground_records, shift
from deepke_llm.prompts.styles import chunk_schema, get_style
from deepke_llm.records import Document, RecordError, replace_surrogates
from deepke_llm.schema import Schema, load_schema
from deepke_llm.tasks import get_task
from deepke_llm.tasks.base import unique
from deepke_llm.windows import Window, split_windows

__all__ = ["ExtractionStats", "Extractor", "detect_language", "parse_output", "pick_demonstrations"]

# a window needs room for at least this many tokens of text to be worth a prompt
MIN_WINDOW_TOKENS = 16


def detect_language(text: str) -> str:
    """``zh`` when CJK characters make up a fifth of the letters, else ``en``."""
    letters = [ch for ch in text if ch.isalpha()]
    cjk = sum(1 for ch in letters if is_cjk(ch))
    return "zh" if letters and cjk / len(letters) >= 0.2 else "en"


@dataclass
class ExtractionStats:
    """Counts over everything an Extractor has processed (for the run summary)."""

    documents: int = 0
    records: int = 0
    errors: int = 0
    prompts: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0


@dataclass
class _Job:
    """One prompt: a window of a document asked one schema chunk."""

    doc_index: int
    window: Window
    schema: Schema
    prompt: Any
    output: str = ""
    failure: str | None = None


@dataclass
class _Pending:
    document: Document
    language: str
    jobs: list[_Job] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Extractor:
    """Schema-guided extraction with any backend.

    >>> extractor = Extractor(backend, "conll03", task="ner")        # doctest: +SKIP
    >>> extractor.extract("Japan beat Syria 2-1 in Beirut.").entities  # doctest: +SKIP
    """

    def __init__(self, backend: Backend, schema: str | Schema, task: str,
                 language: str | None = None, prompt_style: str = "iepile",
                 generation: GenerationConfig | None = None, split_num: int | None = None,
                 schema_shuffle_seed: int | None = None, window_overlap: float = 0.15,
                 documents_per_batch: int | None = None,
                 demonstrations: Sequence[Document] = (), trim_punctuation: bool = True) -> None:
        self.backend = backend
        self.schema = load_schema(schema)
        self.task = get_task(task)
        self.schema.types_for(self.task.name)  # fails early when the schema lacks this task
        if language not in (None, "en", "zh"):
            raise ValueError(f"unknown language '{language}': use en or zh")
        self.language = language
        self.style = get_style(prompt_style)
        self.generation = generation or GenerationConfig()
        self.chunks = chunk_schema(self.task, self.schema, split_num, schema_shuffle_seed)
        self.window_overlap = window_overlap
        self.trim_punctuation = trim_punctuation  # see deepke_llm.grounding.find_mention
        # enough documents per backend call to fill several batches
        self.documents_per_batch = documents_per_batch or max(8, self.generation.batch_size * 4)
        self.stats = ExtractionStats()
        # few-shot: gold documents shown (prompt + gold answer) before every prompt
        self.demonstrations = tuple(demonstrations)
        self._demo_cache: dict[tuple[int, str], tuple] = {}
        self._overhead: dict[str, tuple[int, int]] = {}
        self._auto_ids = 0  # ids for inputs that come without one: text-1, text-2, ...

    # ---- public API -------------------------------------------------------------------------
    def extract(self, inputs: str | Document | dict | Iterable[str | Document | dict]
                ) -> Document | list[Document]:
        """Extract from one text/Document (returns a Document) or many (returns a list)."""
        if isinstance(inputs, (str, Document, dict)):
            return next(iter(self.extract_iter([inputs])))
        return list(self.extract_iter(inputs))

    def extract_iter(self, inputs: Iterable[str | Document | dict]) -> Iterator[Document]:
        """Stream Documents in input order, calling the backend once per group of documents."""
        group: list[Document] = []
        for i, item in enumerate(inputs):
            group.append(self._as_document(item, i))
            if len(group) >= self.documents_per_batch:
                yield from self._run(group)
                group = []
        if group:
            yield from self._run(group)

    # ---- internals ----------------------------------------------------------------------------
    def _as_document(self, item: str | Document | dict, index: int) -> Document:
        if isinstance(item, Document):
            return item
        if isinstance(item, str):
            self._auto_ids += 1
            return Document(id=f"text-{self._auto_ids}", text=item)
        if isinstance(item, dict):
            if not item.get("id"):
                self._auto_ids += 1
                item = {**item, "id": f"text-{self._auto_ids}"}
            return Document.from_dict(item, where=f"input {index}")
        raise RecordError(f"input {index}: expected text, a Document or a dict, got {type(item).__name__}")

    def _language(self, document: Document) -> str:
        return self.language or document.language or self.schema.language

    def _plan(self, document: Document) -> _Pending:
        language = self._language(document)
        pending = _Pending(document, language)
        if not document.text.strip():
            pending.errors.append("empty text: nothing to extract")
            return pending
        widest, overhead = self._prompt_overhead(language)
        room = context_length(self.backend) - self.generation.max_new_tokens - overhead
        if room < MIN_WINDOW_TOKENS:
            pending.errors.append(
                f"the prompt ({overhead} tokens) plus max_new_tokens "
                f"({self.generation.max_new_tokens}) leaves {max(room, 0)} of the model's "
                f"{context_length(self.backend)} context tokens for text: lower max_new_tokens "
                "or split_num")
            return pending
        def text_tokens(text: str) -> int:
            # measured inside the real prompt: the IEPile JSON escapes quotes and newlines
            prompt = self._render(self._build(widest, text, language))
            return count_tokens(self.backend, prompt) - overhead

        windows = split_windows(document.text, room, text_tokens, self.window_overlap)
        for window in windows:
            for i, chunk in enumerate(self.chunks):
                pending.jobs.append(_Job(0, window, chunk, self._build(i, window.text, language)))
        return pending

    def _prompt_overhead(self, language: str) -> tuple[int, int]:
        """(index of the chunk with the longest prompt, its tokens around an empty input + BOS)."""
        if language not in self._overhead:
            sizes = [count_tokens(self.backend, self._render(self._build(i, "", language)))
                     for i in range(len(self.chunks))]
            widest = max(range(len(sizes)), key=sizes.__getitem__)
            self._overhead[language] = (widest, sizes[widest] + 1)  # +1: the BOS token
        return self._overhead[language]

    def _build(self, chunk_index: int, text: str, language: str) -> Any:
        """The prompt for one schema chunk, with the few-shot demonstrations when there are any."""
        chunk = self.chunks[chunk_index]
        prompt = self.style.build(self.task, chunk, text, language)
        if not self.demonstrations:
            return prompt
        key = (chunk_index, language)
        if key not in self._demo_cache:
            self._demo_cache[key] = tuple(
                (self.style.build(self.task, chunk, demo.text, language),
                 self.style.target(self.task, demo, chunk, language))
                for demo in self.demonstrations)
        return replace(prompt, demonstrations=self._demo_cache[key])

    def _render(self, prompt: Any) -> str:
        render = getattr(self.backend, "render", None)
        return render(prompt) if render else prompt.user + (prompt.input or "")

    def _run(self, documents: list[Document]) -> Iterator[Document]:
        started = time.perf_counter()
        pending = [self._plan(d) for d in documents]
        jobs = [job for p in pending for job in p.jobs]
        backend_stats = getattr(self.backend, "stats", None)
        before = backend_stats.generated_tokens if backend_stats else 0
        if jobs:
            self._generate(jobs)
        self.stats.prompts += len(jobs)
        if backend_stats is not None:
            self.stats.generated_tokens += backend_stats.generated_tokens - before
        for item in pending:
            document = self._merge(item)
            self.stats.documents += 1
            self.stats.records += document.record_count
            self.stats.errors += len(document.errors)
            yield document
        self.stats.seconds += time.perf_counter() - started

    def _generate(self, jobs: list[_Job]) -> None:
        try:
            outputs = self.backend.generate([job.prompt for job in jobs], self.generation)
        except BackendError as exc:
            # one bad prompt must not sink the batch: halve it until the failures are isolated
            # (still batched / concurrent), and record those in their documents' errors
            if len(jobs) == 1:
                jobs[0].failure = str(exc)
                return
            middle = len(jobs) // 2
            self._generate(jobs[:middle])
            self._generate(jobs[middle:])
            return
        if len(outputs) != len(jobs):
            raise RuntimeError(f"backend returned {len(outputs)} outputs for {len(jobs)} prompts")
        for job, output in zip(jobs, outputs, strict=True):
            job.output = output

    def _merge(self, pending: _Pending) -> Document:
        records: list = []
        errors = list(pending.errors)
        windows = list(dict.fromkeys(job.window for job in pending.jobs))
        several = len(windows) > 1
        for job in pending.jobs:
            if job.failure is not None:
                errors.append(f"no output for schema chunk {job.schema.types_for(self.task.name)[0].name!r}"
                              f"...: {job.failure}")
                continue
            grounded, job_errors = parse_output(self.task.name, job.output, job.schema,
                                                job.window.text, pending.language, self.style.name,
                                                self.trim_punctuation)
            prefix = f"window at {job.window.start}: " if several else ""
            errors.extend(prefix + e for e in job_errors)
            for record in grounded:
                record = shift(record, job.window.start)
                if several and _touches_cut(record, job.window) and \
                        _held_by_other(record, job.window, windows):
                    continue  # cut by this window's edge; an overlapping window sees it whole
                records.append(record)
        records = unique(records)
        if several:
            records = _drop_ungrounded_twins(records)
        fields = {"entities": (), "relations": (), "events": ()}
        fields[self.task.record_field] = tuple(records)
        return replace(pending.document, language=pending.language, **fields,
                       raw_output=tuple(job.output for job in pending.jobs),
                       errors=tuple(unique(errors)))


def parse_output(task: str, output: str, schema: Schema, text: str, language: str,
                 prompt_style: str = "iepile", trim_punctuation: bool = True
                 ) -> tuple[list, list[str]]:
    """Parse one model output for ``task`` and ground it in ``text``; never raises.

    Lone surrogates (a server's broken ``\\ud800`` escape) become U+FFFD first, so nothing
    parsed from the output can break a UTF-8 writer downstream.
    """
    output = replace_surrogates(output)
    task_obj = get_task(task)
    parsed, errors = get_style(prompt_style).parse(task_obj, output, schema, language)
    grounded, ground_errors = ground_records(task_obj.name, text, parsed, trim_punctuation)
    return grounded, errors + ground_errors


def _spans(record: Any) -> list[tuple[int, int]]:
    parts = []
    for part in (record, getattr(record, "head", None), getattr(record, "tail", None),
                 getattr(record, "trigger", None), *getattr(record, "arguments", ())):
        if part is not None and getattr(part, "start", None) is not None:
            parts.append((part.start, part.end))
    return parts


def _touches_cut(record: Any, window: Window) -> bool:
    """Does a span (document offsets) run into an edge where ``window`` cut the text?"""
    end_of_window = window.start + len(window.text)
    return any((not window.last and end >= end_of_window) or (not window.first and start <= window.start)
               for start, end in _spans(record))


def _held_by_other(record: Any, window: Window, windows: list[Window]) -> bool:
    spans = _spans(record)
    return any(other is not window and all(other.start <= s and e <= other.start + len(other.text)
                                           for s, e in spans)
               for other in windows)


def _strings(record: Any) -> tuple:
    """What a record says, without offsets (to match an ungrounded copy with a grounded one)."""
    if hasattr(record, "head"):
        return (record.type, record.head.text.casefold(), record.tail.text.casefold())
    if hasattr(record, "trigger"):
        return (record.type, record.trigger.text.casefold())
    return (record.type, record.text.casefold())


def _drop_ungrounded_twins(records: list) -> list:
    """A mention a window's model named without it being in that window is dropped when another
    window grounded the same thing."""
    grounded = {_strings(r) for r in records if len(_spans(r)) == _parts(r)}
    return [r for r in records if len(_spans(r)) == _parts(r) or _strings(r) not in grounded]


def _parts(record: Any) -> int:
    if hasattr(record, "head"):
        return 2
    if hasattr(record, "trigger"):
        return 1 + len(record.arguments)
    return 1


def pick_demonstrations(documents: Iterable[Document], task: str, count: int) -> list[Document]:
    """The first ``count`` documents that hold records of ``task`` (few-shot examples)."""
    field = get_task(task).record_field
    picked = []
    for document in documents:
        if len(picked) >= count:
            break
        if getattr(document, field):
            picked.append(document)
    return picked
