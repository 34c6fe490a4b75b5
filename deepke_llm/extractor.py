"""Extractor: text + schema -> prompts -> backend -> parse -> ground -> merged records.

Per document, the text is split into windows that fit the model's context next to the prompt,
every window is asked every schema chunk (IEPile: 6 entity types or 4 relation / event types per
prompt), and the grounded results are mapped back to document offsets and de-duplicated.

Prompts go to the backend in calls of ``generation.batch_size``, filled document after document,
and each document is yielded as soon as its last prompt is answered: a killed run loses at most
the call in flight. Windows are made as the prompts are sent, so a huge document costs memory
for its text and its results, not for all its prompts at once. A document whose prompts the
backend could not answer is yielded with :attr:`Document.failure` set (not finished: writers
leave it out so that ``--resume`` redoes it); a dead backend (:class:`BackendUnavailable`) stops
the run.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from deepke_llm.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    GenerationConfig,
    context_length,
    count_tokens,
)
from deepke_llm.cjk import document_language
from deepke_llm.decoding import ConstraintCompiler
from deepke_llm.grounding import GroundingOptions
from deepke_llm.io import replace_surrogates
from deepke_llm.prompts.styles import Style, chunk_schema, get_style
from deepke_llm.records import Document, RecordError
from deepke_llm.schema import Schema, load_schema
from deepke_llm.tasks import Task, get_task
from deepke_llm.tasks.base import unique
from deepke_llm.windows import Window, WindowPlace, iter_windows, merge_window_records

__all__ = ["BatchStatus", "ExtractionStats", "Extractor", "constrained_for", "parse_output",
           "pick_demonstrations"]

# a window needs room for at least this many tokens of text to be worth a prompt
MIN_WINDOW_TOKENS = 16


@dataclass
class ExtractionStats:
    """Counts over everything an Extractor has processed (for the run summary)."""

    documents: int = 0
    records: int = 0
    errors: int = 0
    failed: int = 0
    prompts: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class BatchStatus:
    """Where a run is after a backend call (for progress displays)."""

    document_id: str
    windows_done: int
    windows_estimate: int

    def describe(self) -> str:
        if self.windows_estimate <= 1:
            return ""
        return f"{self.document_id}: window {self.windows_done} of ~{self.windows_estimate}"


@dataclass
class _Pending:
    """A document whose prompts are being made and answered."""

    document: Document
    language: str
    errors: list[str] = field(default_factory=list)
    windows: list[WindowPlace] = field(default_factory=list)
    found: dict[int, list] = field(default_factory=dict)  # window index -> its records
    window_errors: list[tuple[int, str]] = field(default_factory=list)
    raw_outputs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    open_jobs: int = 0
    planned: bool = False

    @property
    def done(self) -> bool:
        return self.planned and self.open_jobs == 0


@dataclass
class _Job:
    """One prompt: a window of a document asked one schema chunk."""

    pending: _Pending
    window_index: int
    window: Window
    chunk_index: int
    prompt: Any
    constraint: Any = None
    output: str | None = None
    failure: str | None = None


class Extractor:
    """Schema-guided extraction with any backend.

    >>> extractor = Extractor(backend, "conll03", task="ner")        # doctest: +SKIP
    >>> extractor.extract("Japan beat Syria 2-1 in Beirut.").entities  # doctest: +SKIP
    """

    def __init__(self, backend: Backend, schema: str | Schema, task: str,
                 language: str | None = None, prompt_style: str = "iepile",
                 generation: GenerationConfig | None = None, split_num: int | None = None,
                 schema_shuffle_seed: int | None = None, window_overlap: float = 0.15,
                 demonstrations: Sequence[Document] = (), trim_punctuation: bool = True,
                 constrained: bool | None = None) -> None:
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
        self.grounding = GroundingOptions(trim_punctuation=trim_punctuation)
        self.stats = ExtractionStats()
        self.on_batch: Callable[[BatchStatus], None] | None = None
        """Called after every backend call (progress displays)."""
        # few-shot: gold documents shown (prompt + gold answer) before every prompt
        self.demonstrations = tuple(demonstrations)
        self._demo_cache: dict[tuple[int, str], tuple] = {}
        self._overhead: dict[str, tuple[int, int]] = {}
        self._auto_ids = 0  # ids for inputs that come without one: text-1, text-2, ...
        self.constrained = constrained_for(backend, constrained)
        """Whether answers are decoded under the schema/text constraint (:mod:`deepke_llm.decoding`)."""
        self._constraints = ConstraintCompiler(prompt_style, self.task.name) \
            if self.constrained else None

    # ---- public API -------------------------------------------------------------------------
    def extract(self, inputs: str | Document | dict | Iterable[str | Document | dict]
                ) -> Document | list[Document]:
        """Extract from one text/Document (returns a Document) or many (returns a list).

        A document the backend could not answer comes back with ``failure`` set.
        """
        if isinstance(inputs, (str, Document, dict)):
            return next(iter(self.extract_iter([inputs])))
        return list(self.extract_iter(inputs))

    def extract_iter(self, inputs: Iterable[str | Document | dict]) -> Iterator[Document]:
        """Stream Documents in input order; each is yielded once its last prompt is answered."""
        queue: deque[_Pending] = deque()
        batch: list[_Job] = []
        size = self.generation.batch_size
        for i, item in enumerate(inputs):
            pending = self._start(self._as_document(item, i))
            queue.append(pending)
            for job in self._jobs(pending):
                batch.append(job)
                if len(batch) >= size:
                    self._dispatch(batch)
                    batch = []
                    yield from self._finished(queue)
            pending.planned = True
            if not batch:
                yield from self._finished(queue)
        if batch:
            self._dispatch(batch)
        yield from self._finished(queue)

    # ---- internals ----------------------------------------------------------------------------
    def _as_document(self, item: str | Document | dict, index: int) -> Document:
        if isinstance(item, str):
            self._auto_ids += 1
            item = Document(id=f"text-{self._auto_ids}", text=item)
        elif isinstance(item, dict):
            if not item.get("id"):
                self._auto_ids += 1
                item = {**item, "id": f"text-{self._auto_ids}"}
            item = Document.from_dict(item, where=f"input {index}")
        elif not isinstance(item, Document):
            raise RecordError(f"input {index}: expected text, a Document or a dict, "
                              f"got {type(item).__name__}")
        clean = replace_surrogates(item.text)
        if clean is not item.text:
            # no tokenizer or HTTP body can carry them; U+FFFD keeps every offset
            item = replace(item, text=clean).with_errors(
                "text: lone surrogates (not Unicode text) replaced by U+FFFD")
        return item

    def _start(self, document: Document) -> _Pending:
        return _Pending(document, document_language(document.text, self.language, document.language,
                                                    self.schema.language))

    def _jobs(self, pending: _Pending) -> Iterator[_Job]:
        """The document's prompts, window by window (windows are cut as they are needed)."""
        text, language = pending.document.text, pending.language
        if not text.strip():
            pending.errors.append("empty text: nothing to extract")
            return
        widest, overhead = self._prompt_overhead(language)
        room = context_length(self.backend) - self.generation.max_new_tokens - overhead
        if room < MIN_WINDOW_TOKENS:
            pending.errors.append(
                f"the prompt ({overhead} tokens) plus max_new_tokens "
                f"({self.generation.max_new_tokens}) leaves {max(room, 0)} of the model's "
                f"{context_length(self.backend)} context tokens for text: lower max_new_tokens "
                "or split_num")
            return

        def text_tokens(piece: str) -> int:
            # measured inside the real prompt: the IEPile JSON escapes quotes and newlines
            prompt = self._render(self._build(widest, piece, language))
            return count_tokens(self.backend, prompt) - overhead

        for index, window in enumerate(iter_windows(text, room, text_tokens, self.window_overlap)):
            pending.windows.append(window.place)
            for i in range(len(self.chunks)):
                pending.open_jobs += 1
                yield _Job(pending, index, window, i, self._build(i, window.text, language),
                           self._constraint(i, window.text, language))

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

    def _constraint(self, chunk_index: int, text: str, language: str) -> Any:
        if self._constraints is None:
            return None
        items = self.task.schema_items(self.chunks[chunk_index], language)
        return self._constraints.for_prompt((chunk_index, language), items, text)

    def _render(self, prompt: Any) -> str:
        render = getattr(self.backend, "render", None)
        return render(prompt) if render else prompt.user + (prompt.input or "")

    def _dispatch(self, jobs: list[_Job]) -> None:
        """One backend call for ``jobs``; their answers are parsed and grounded into their
        documents at once (so no prompt or window text outlives the call)."""
        started = time.perf_counter()
        backend_stats = getattr(self.backend, "stats", None)
        before = backend_stats.generated_tokens if backend_stats else 0
        try:
            self._generate(jobs)
        finally:
            self.stats.prompts += len(jobs)
            if backend_stats is not None:
                self.stats.generated_tokens += backend_stats.generated_tokens - before
            self.stats.seconds += time.perf_counter() - started
        for job in jobs:
            self._collect(job)
        if self.on_batch is not None:
            pending = jobs[-1].pending
            self.on_batch(BatchStatus(pending.document.id, len(pending.windows),
                                      _windows_estimate(pending)))

    def _generate(self, jobs: list[_Job]) -> None:
        try:
            prompts = [job.prompt for job in jobs]
            if self._constraints is not None:
                outputs = self.backend.generate(prompts, self.generation,
                                                constraints=[job.constraint for job in jobs])
            else:
                outputs = self.backend.generate(prompts, self.generation)
        except BackendUnavailable:
            raise
        except BackendError as exc:
            if exc.outputs is not None and len(exc.outputs) == len(jobs):
                # the backend says which prompts failed: keep the others, never resend them
                failures = exc.failures or [None] * len(jobs)
                for job, output, failure in zip(jobs, exc.outputs, failures, strict=True):
                    if output is None:
                        job.failure = failure or str(exc)
                    else:
                        job.output = output
                return
            # one bad prompt must not sink the batch: halve it until the failures are isolated
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

    def _collect(self, job: _Job) -> None:
        """Parse and ground one answer into its document (window offsets -> document offsets)."""
        pending = job.pending
        pending.open_jobs -= 1
        if job.failure is not None or job.output is None:
            name = self.chunks[job.chunk_index].types_for(self.task.name)[0].name
            pending.failures.append(f"no output for schema chunk {name!r}...: {job.failure}")
            return
        pending.raw_outputs.append(job.output)
        grounded, errors = parse_output(self.task, job.output, self.chunks[job.chunk_index],
                                        job.window.text, pending.language, self.style,
                                        self.grounding)
        pending.window_errors.extend((job.window_index, e) for e in errors)
        pending.found.setdefault(job.window_index, []).extend(
            r.shifted(job.window.start) for r in grounded)

    def _finished(self, queue: deque[_Pending]) -> Iterator[Document]:
        while queue and queue[0].done:
            document = self._merge(queue.popleft())
            self.stats.documents += 1
            if document.failure is not None:
                self.stats.failed += 1
            self.stats.records += document.record_count
            self.stats.errors += len(document.errors)
            yield document

    def _merge(self, pending: _Pending) -> Document:
        windows = pending.windows
        several = len(windows) > 1
        errors = list(pending.errors)
        errors.extend((f"window at {windows[i].start}: " if several else "") + e
                      for i, e in pending.window_errors)
        records = merge_window_records(pending.found, windows)
        document = replace(self.task.with_records(pending.document, records),
                           language=pending.language, raw_output=tuple(pending.raw_outputs),
                           errors=tuple(unique(list(pending.document.errors) + errors)))
        if pending.failures:
            document = replace(document, failure=pending.failures[0])
        return document


def constrained_for(backend: Backend, wanted: bool | None) -> bool:
    """Constrained decoding: on where the engine applies it (``wanted`` None), or as asked."""
    supported = bool(getattr(backend, "supports_constraints", False))
    if wanted and not supported:
        name = getattr(backend, "engine", type(backend).__name__)
        raise ValueError(f"the {name} engine cannot apply a decoding constraint: use --engine "
                         "hf, llamacpp, openvino or an OpenAI-compatible server, or "
                         "--no-constrained")
    return supported if wanted is None else wanted


def _windows_estimate(pending: _Pending) -> int:
    """About how many windows the document will have (from the stride of the ones cut so far)."""
    windows = pending.windows
    if not windows or windows[-1].last:
        return len(windows)
    stride = windows[-1].start / (len(windows) - 1) if len(windows) > 1 else \
        windows[0].end - windows[0].start
    remaining = len(pending.document.text) - windows[-1].end
    return len(windows) + max(1, round(remaining / max(stride, 1)))


def parse_output(task: Task, output: str, schema: Schema, text: str, language: str,
                 style: Style | None = None, grounding: GroundingOptions | None = None
                 ) -> tuple[list, list[str]]:
    """Parse one model output for ``task`` in ``style`` (default ``iepile``) and ground it in
    ``text``; never raises.

    Lone surrogates (a server's broken ``\\ud800`` escape) become U+FFFD first, so nothing
    parsed from the output can break a UTF-8 writer downstream.
    """
    output = replace_surrogates(output)
    parsed, errors = (style or get_style("iepile")).parse(task, output, schema, language)
    grounded, ground_errors = task.ground(text, parsed, grounding or GroundingOptions())
    return grounded, errors + ground_errors


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
