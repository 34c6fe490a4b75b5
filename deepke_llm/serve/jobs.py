"""Batch jobs: an uploaded JSONL file of ``{"id", "text"}`` lines run through the server's one
queue, its records downloadable when done.

Each job has a folder under the jobs dir: the upload (written atomically), ``records.jsonl``
written by :func:`deepke_llm.batch.run_to_file` (``records.jsonl.partial`` while it runs,
renamed when complete; a document the backend failed is left out and counted, as ``extract``
does), and ``status.json`` (atomic). One runner thread takes jobs in order and sends their
documents to the :class:`~deepke_llm.serve.batching.Batcher` one batch at a time, so a job never
crowds interactive requests out of the queue.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from deepke_llm.batch import read_text_inputs, run_to_file
from deepke_llm.io import atomic_path, count_lines
from deepke_llm.problems import Problems, one_line
from deepke_llm.records import Document
from deepke_llm.serve.batching import Batcher, BatchFailed, ExtractionSpec, QueueWorker

__all__ = ["Job", "JobManager", "UploadTooLarge"]

JOB_ID = re.compile(r"^[0-9a-f]{16}$")
SHOWN_ERRORS = 20  # input problems and failures listed in a job's status; the rest are counted
MAX_JOBS = 1000  # jobs kept; the oldest finished ones (and their files) are dropped first
CHUNK = 1 << 20


class UploadTooLarge(ValueError):
    """An upload over the server's limit."""


@dataclass
class Job:
    """A batch job's state (what ``GET /v1/jobs/{id}`` answers)."""

    id: str
    task: str
    schema: str
    filename: str
    state: str = "queued"  # queued, running, done, failed
    documents_total: int = 0
    documents_done: int = 0
    records: int = 0
    failed: int = 0
    input_errors: int = 0
    errors: list[str] = field(default_factory=list)
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    complete: bool = False
    """True when every document was written (records.jsonl is final, not .partial)."""

    @property
    def progress(self) -> float:
        """Share of the upload's lines handled (documents answered and bad lines skipped)."""
        if self.state == "done" or not self.documents_total:
            return 1.0 if self.state == "done" else 0.0
        return min(1.0, (self.documents_done + self.input_errors) / self.documents_total)

    def to_dict(self) -> dict:
        return {**asdict(self), "progress": round(self.progress, 4)}


class JobManager(QueueWorker):
    """Keeps jobs, stores their uploads and runs them one after another on a runner thread."""

    thread_name = "deepke-jobs"

    def __init__(self, batcher: Batcher, jobs_dir: str | Path, max_upload_bytes: int) -> None:
        self.batcher = batcher
        self.root = Path(jobs_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = max_upload_bytes
        self.jobs: dict[str, Job] = {}
        self._specs: dict[str, ExtractionSpec] = {}
        super().__init__()  # the queue of job ids (None stops the runner)

    def create(self, spec: ExtractionSpec, upload: BinaryIO, filename: str | None) -> Job:
        """Store ``upload`` (at most ``max_upload_bytes``) and queue a job for it."""
        job_id = secrets.token_hex(8)
        name = _safe_name(filename)
        folder = self.root / job_id
        with atomic_path(folder / name) as tmp, open(tmp, "wb") as handle:
            size = 0
            while chunk := upload.read(CHUNK):
                size += len(chunk)
                if size > self.max_upload_bytes:
                    raise UploadTooLarge(f"file: over this server's upload limit of "
                                         f"{self.max_upload_bytes} bytes")
                handle.write(chunk)
        job = Job(id=job_id, task=spec.task, schema=spec.schema.name, filename=name,
                  documents_total=count_lines(folder / name))
        self._forget_old()
        self.jobs[job_id] = job
        self._specs[job_id] = spec
        self._save(job)
        self._queue.put(job_id)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id) if JOB_ID.match(job_id) else None

    def records_path(self, job: Job) -> Path:
        """The job's records: the final file, or the ``.partial`` of one with failures."""
        path = self.root / job.id / "records.jsonl"
        return path if path.exists() else path.with_name("records.jsonl.partial")

    # ---- the runner ---------------------------------------------------------------------------
    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            job = self.jobs.get(job_id)
            if job is not None:
                self._run(job, self._specs.pop(job_id))

    def _run(self, job: Job, spec: ExtractionSpec) -> None:
        folder = self.root / job.id
        # messages name the upload as the client named it, not the server's folder
        problems = Problems(lambda message: _keep(job, message.removeprefix(f"{folder}/")))
        job.state = "running"
        self._save(job)

        def process(documents: Iterable[Document]) -> Iterator[Document]:
            for chunk in _chunks(documents, self.batcher.max_batch):
                for document in self.batcher.run(spec, chunk):
                    job.documents_done += 1
                    yield document
                # bad input lines are done too, for the progress bar
                job.input_errors = problems.count

        try:
            summary = run_to_file(read_text_inputs(str(folder / job.filename), problems),
                                  process, str(folder / "records.jsonl"), progress=False,
                                  on_failure=lambda message: _keep(job, message))
            job.records, job.failed = summary.records, summary.failed
            job.complete = summary.finished
            job.state = "done"
        except (BatchFailed, OSError) as exc:
            job.state, job.error = "failed", one_line(exc)
        except Exception as exc:  # noqa: BLE001 - a job's failure must not end the runner
            job.state, job.error = "failed", f"{type(exc).__name__}: {one_line(exc)}"
        job.input_errors = problems.count
        job.finished = time.time()
        self._save(job)

    def _save(self, job: Job) -> None:
        with atomic_path(self.root / job.id / "status.json") as tmp:
            tmp.write_text(json.dumps(job.to_dict(), ensure_ascii=False), encoding="utf-8")

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.state in ("done", "failed")]
        for job in sorted(finished, key=lambda j: j.created)[:max(0, len(self.jobs) - MAX_JOBS + 1)]:
            del self.jobs[job.id]
            shutil.rmtree(self.root / job.id, ignore_errors=True)


def _keep(job: Job, message: str) -> None:
    if len(job.errors) < SHOWN_ERRORS:
        job.errors.append(message)


def _chunks(documents: Iterable[Document], size: int) -> Iterator[list[Document]]:
    chunk: list[Document] = []
    for document in documents:
        chunk.append(document)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _safe_name(filename: str | None) -> str:
    """The upload's base name in safe characters (ids default to its stem, as ``extract``'s)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or "").name).lstrip(".")
    if base in ("", "records.jsonl", "status.json"):
        return "input.jsonl"
    return base if base.endswith(".jsonl") else base + ".jsonl"
