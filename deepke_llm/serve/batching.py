"""Dynamic batching: concurrent requests gathered into shared engine calls by one worker thread.

The server loads ONE backend. A single worker thread owns it: it takes the first waiting
request, waits a short window (or until ``max_batch`` documents are gathered) for more, groups
what it gathered by :class:`ExtractionSpec` and runs each group through one
:meth:`~deepke_llm.extractor.Extractor.extract_iter` call, so the prompts of every gathered
document share the backend's ``generate`` calls (rows of one llama.cpp KV cache, one transformers
forward pass, or concurrent requests to a server). One ``Extractor`` per spec is kept in a small
LRU cache over that backend; nothing else runs extraction.

Admission is bounded: :meth:`Batcher.submit` raises :class:`QueueFull` when the documents
admitted and not yet answered would pass ``max_queue`` (the HTTP layer answers 429 with
Retry-After). A request cancelled before the worker takes it (a client timeout) is skipped.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from deepke_llm.backends.base import BackendUnavailable, GenerationConfig
from deepke_llm.extractor import Extractor
from deepke_llm.problems import one_line
from deepke_llm.records import Document
from deepke_llm.schema import Schema

__all__ = ["Batcher", "BatchFailed", "CountingBackend", "ExtractionSpec", "QueueFull"]


class QueueWorker:
    """A daemon thread running ``_work`` on ``_queue``; ``None`` on the queue stops it."""

    thread_name = "deepke-worker"

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.thread_name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Let the worker finish what it holds and end."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _work(self) -> None:
        raise NotImplementedError


class QueueFull(RuntimeError):
    """More documents are waiting than the server admits: retry later."""


class BatchFailed(RuntimeError):
    """The engine could not answer a request (``status``: 502 for a document the backend failed,
    503 for an unavailable backend, 500 for anything else)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ExtractionSpec:
    """What an Extractor is built from: requests with equal specs share engine calls."""

    task: str
    schema: Schema = field(compare=False, hash=False)
    prompt_style: str = "iepile"
    language: str | None = None
    max_new_tokens: int = 512
    split_num: int | None = None
    keep_punctuation: bool = False
    constrained: bool | None = None
    schema_key: str = ""
    """The schema's canonical JSON (filled in by :meth:`create`): equal schemas, equal specs."""

    @classmethod
    def create(cls, task: str, schema: Schema, **options: Any) -> ExtractionSpec:
        key = json.dumps(schema.to_dict(), sort_keys=True, ensure_ascii=False)
        return cls(task=task, schema=schema, schema_key=key, **options)


class CountingBackend:
    """The one loaded backend, with its ``generate`` calls counted (``calls``, ``prompts``).

    Every other attribute (``count_tokens``, ``context_length``, ``render``, ``stats``) is the
    wrapped backend's, so the Extractor sees the backend itself.
    """

    def __init__(self, backend: Any, on_call: Callable[[int], None] | None = None) -> None:
        self._backend = backend
        self._on_call = on_call
        self.calls = 0
        self.prompts = 0

    def generate(self, prompts: Sequence[Any], config: GenerationConfig,
                 **options: Any) -> list[str]:
        """The wrapped backend's ``generate`` (``options``: e.g. ``constraints``), counted."""
        self.calls += 1
        self.prompts += len(prompts)
        if self._on_call is not None:
            self._on_call(len(prompts))
        return self._backend.generate(prompts, config, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


@dataclass
class _Request:
    spec: ExtractionSpec
    documents: list[Document]
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    """What the worker did (read by /metrics and the tests)."""

    batches: int = 0
    documents: int = 0
    generated_tokens: int = 0
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1024))
    """Documents of the last batches (bounded: the server is long-lived)."""


class Batcher(QueueWorker):
    """Gathers requests into engine calls on one worker thread (see the module docstring).

    ``engine_batch`` is the Extractor's ``GenerationConfig.batch_size`` (prompts per
    ``generate`` call); ``on_batch(documents, generated_tokens, seconds)`` is called after each
    group the worker runs (metrics).
    """

    thread_name = "deepke-batcher"

    def __init__(self, backend: Any, *, window_s: float = 0.015, max_batch: int = 32,
                 max_queue: int = 256, engine_batch: int = 32, cache_size: int = 16,
                 on_batch: Callable[[int, int, float], None] | None = None) -> None:
        self.backend = backend
        self.window_s = window_s
        self.max_batch = max(1, max_batch)
        self.max_queue = max(1, max_queue)
        self.engine_batch = max(1, engine_batch)
        self.cache_size = cache_size
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._extractors: OrderedDict[ExtractionSpec, Extractor] = OrderedDict()
        self._pending = 0
        self._lock = threading.Lock()
        super().__init__()  # the queue of _Request (None stops the worker)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Documents admitted and not yet answered (the queue depth)."""
        return self._pending

    # ---- submitting ---------------------------------------------------------------------------
    def submit(self, spec: ExtractionSpec, documents: list[Document],
               admit: bool = True) -> Future:
        """Queue ``documents``; the future's result is their Documents, in order.

        With ``admit`` (HTTP requests) a full queue raises :class:`QueueFull`; background jobs
        pass ``admit=False`` and are counted but never refused (they send one batch at a time).
        """
        count = len(documents)
        with self._lock:
            if admit and self._pending and self._pending + count > self.max_queue:
                raise QueueFull(f"{self._pending} documents are waiting (limit "
                                f"{self.max_queue}); retry in a moment")
            self._pending += count
        request = _Request(spec, documents)
        request.future.add_done_callback(lambda _: self._release(count))
        self._queue.put(request)
        return request.future

    def run(self, spec: ExtractionSpec, documents: list[Document]) -> list[Document]:
        """Submit without admission control and wait for the Documents (background jobs)."""
        return self.submit(spec, documents, admit=False).result()

    def _release(self, count: int) -> None:
        with self._lock:
            self._pending -= count

    # ---- the worker ---------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._run_batch(batch)
            if stop:
                return

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` plus what arrives within the window, up to ``max_batch`` documents."""
        batch = [first]
        count = len(first.documents)
        deadline = time.monotonic() + self.window_s
        while count < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else \
                    self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            count += len(item.documents)
        return batch, False

    def _run_batch(self, batch: list[_Request]) -> None:
        groups: dict[ExtractionSpec, list[_Request]] = {}
        for request in batch:
            # a request whose client gave up before now is not run
            if request.future.set_running_or_notify_cancel():
                groups.setdefault(request.spec, []).append(request)
        for spec, requests in groups.items():
            self._run_group(spec, requests)

    def _run_group(self, spec: ExtractionSpec, requests: list[_Request]) -> None:
        """One ``extract_iter`` over the documents of ``requests``; results split back in order."""
        documents = [d for r in requests for d in r.documents]
        started = time.perf_counter()
        try:
            extractor = self._extractor(spec)
        except ValueError as exc:  # options this engine cannot honour (a constraint)
            self._fail(requests, BatchFailed(one_line(exc), 422))
            return
        try:
            before = extractor.stats.generated_tokens
            results = list(extractor.extract_iter(documents))
            tokens = extractor.stats.generated_tokens - before
        except BackendUnavailable as exc:
            self._fail(requests, BatchFailed(f"the backend is unavailable: {one_line(exc)}", 503))
            return
        except Exception as exc:  # noqa: BLE001 - whatever breaks, the worker must go on
            self._fail(requests, BatchFailed(f"extraction failed: {one_line(exc)}", 500))
            return
        seconds = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.documents += len(documents)
        self.stats.generated_tokens += tokens
        self.stats.batch_sizes.append(len(documents))
        if self.on_batch is not None:
            self.on_batch(len(documents), tokens, seconds)
        start = 0
        for request in requests:
            end = start + len(request.documents)
            request.future.set_result(results[start:end])
            start = end

    @staticmethod
    def _fail(requests: list[_Request], error: BatchFailed) -> None:
        for request in requests:
            request.future.set_exception(error)

    def _extractor(self, spec: ExtractionSpec) -> Extractor:
        extractor = self._extractors.get(spec)
        if extractor is None:
            generation = GenerationConfig(max_new_tokens=spec.max_new_tokens,
                                          batch_size=self.engine_batch)
            extractor = Extractor(self.backend, spec.schema, spec.task, language=spec.language,
                                  prompt_style=spec.prompt_style, generation=generation,
                                  split_num=spec.split_num,
                                  trim_punctuation=not spec.keep_punctuation,
                                  constrained=spec.constrained)
            self._extractors[spec] = extractor
            while len(self._extractors) > self.cache_size:
                self._extractors.popitem(last=False)
        else:
            self._extractors.move_to_end(spec)
        return extractor
