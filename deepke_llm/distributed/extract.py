"""Sharded extraction on Ray, exactly once per shard.

:func:`extract_shards`: every input shard (JSONL, ``.jsonl.gz``, Parquet) becomes
one output shard of the same name, written by :func:`deepke_llm.batch.run_extract` inside an
actor that built its engine once (:func:`deepke_llm.commands.options.backend_from_options`, as
``extract`` does), so records are byte for byte those of ``deepke-llm extract --input SHARD
--output OUT``. ``_manifest.json`` maps each input shard to its output with line counts,
checksums and whether it finished.

Exactly once: a shard is written to ``OUT.partial`` and renamed to ``OUT`` only when every
document is in it (:class:`deepke_llm.io.ResumableWriter`), so a killed actor never leaves a
partial shard under its final name. Ray restarts a dead actor and retries its shard
(``max_restarts``/``max_task_retries``); the retry resumes the ``.partial`` file (ids already
written are skipped), so every input id ends up in the output exactly once. A job run again
with ``resume=True`` skips the shards the manifest lists as finished (their output checksum
still matching) and redoes the others the same way.

Why per-shard tasks on actors, not ``ray.data.read_json(...).map_batches(..., concurrency=N)``:
Ray Data re-blocks rows, so an output file is not one input shard and a retried block cannot be
matched to what was already written; a shard as the unit of work (one task, one output, one
manifest entry) is what makes "exactly once" checkable. The dispatch loop is ours (not
``ray.util.ActorPool``) because ``ActorPool.get_next_unordered`` does not say which shard a
failure belongs to, and the manifest needs that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepke_llm.batch import ExtractConfig, RunSummary
from deepke_llm.distributed.session import ray_session
from deepke_llm.io import atomic_path, count_lines, output_lock, sha256_file
from deepke_llm.problems import ErrorCallback, one_line, print_errors
from deepke_llm.progress import ProgressBar

__all__ = ["MANIFEST", "JobSummary", "ShardError", "ShardWorker", "extract_shards",
           "resolve_shards"]

MANIFEST = "_manifest.json"
SHARD_SUFFIXES = (".jsonl", ".json", ".parquet")
_COMPRESSED = (".gz", ".bz2")
SHOWN_MESSAGES = 50  # input-error lines an actor sends back per shard (all are counted)



class ShardError(ValueError):
    """The inputs or the output folder of a sharded job cannot be used (one line, what to do)."""



def _shard_stem(path: Path) -> str | None:
    name = path.name
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    for suffix in SHARD_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def resolve_shards(inputs: str | Sequence[str], output_dir: str | os.PathLike[str]
                   ) -> list[tuple[str, str]]:
    """``(input shard, output file name)`` pairs for a folder, a glob or a list of files.

    A folder means its ``*.jsonl``, ``*.json``, ``*.parquet`` files (also ``.gz``/``.bz2``
    JSONL); outputs are named ``STEM.jsonl``. Raises :class:`ShardError` for no shards, two
    shards with one output name, or an output that would overwrite an input."""
    patterns = [inputs] if isinstance(inputs, str) else list(inputs)
    files: list[Path] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            files.extend(p for p in Path(pattern).iterdir() if p.is_file() and _shard_stem(p))
        else:
            files.extend(Path(p) for p in glob.glob(pattern) if os.path.isfile(p))
    files = sorted(set(files))
    if not files:
        raise ShardError(f"no input shards match {', '.join(patterns)}: give a folder of .jsonl "
                         "/ .parquet files, a glob or files")
    out = Path(output_dir)
    pairs, owner = [], {}
    for path in files:
        stem = _shard_stem(path)
        if stem is None:
            raise ShardError(f"{path}: not a shard (.jsonl, .json, .parquet, or .jsonl.gz)")
        name = f"{stem}.jsonl"
        if name in owner:
            raise ShardError(f"{owner[name]} and {path} would both write {out / name}; "
                             "rename one of them")
        if os.path.realpath(out / name) == os.path.realpath(path):
            raise ShardError(f"output {out / name} is the input {path}: choose another --output")
        owner[name] = path
        pairs.append((str(path), name))
    return pairs


def _parquet_as_jsonl(source: str, staging: Path) -> Path:
    """The rows of a Parquet shard as a JSONL file named like it (so default ids match)."""
    import pyarrow.parquet as pq

    from deepke_llm.io import replace_surrogates

    target = staging / f"{_shard_stem(Path(source))}.jsonl"
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for batch in pq.ParquetFile(source).iter_batches():
            for row in batch.to_pylist():
                # a column has a value in every row: null is how Parquet says "absent"
                row = {key: value for key, value in row.items() if value is not None}
                line = json.dumps(row, ensure_ascii=False, default=str)
                handle.write(replace_surrogates(line) + "\n")
    return target


class ShardWorker:
    """A Ray actor: one engine (loaded once, in ``__init__``) that extracts whole shards."""

    def __init__(self, config: ExtractConfig, model_options: dict[str, Any]) -> None:
        from deepke_llm.commands.options import backend_from_options

        self.config = config
        self.backend = backend_from_options(model_options, config.batch_size)

    def run(self, source: str, target: str) -> dict[str, Any]:
        """Extract ``source`` into ``target`` (resuming its ``.partial``); totals + checksums."""
        from deepke_llm.backends.base import BackendUnavailable
        from deepke_llm.batch import run_extract
        from deepke_llm.io import OutputBusy
        from deepke_llm.problems import Problems

        problems = Problems(keep=SHOWN_MESSAGES)
        result: dict[str, Any] = {"input": source, "output": Path(target).name, "finished": False,
                                  "error": None, "pid": os.getpid()}
        reading, staged = source, None
        try:
            if source.endswith(".parquet"):
                staged = _parquet_as_jsonl(source, Path(target).parent / ".staging")
                reading = str(staged)
            config = dataclasses.replace(self.config, input=reading, output=target, resume=True,
                                         progress=False)
            summary = run_extract(config, self.backend, on_error=problems.append)
        except (BackendUnavailable, OutputBusy, ValueError, OSError) as exc:
            result["error"] = one_line(exc)
            return result
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        result.update({key: getattr(summary, key) for key in _TOTALS})
        result["messages"] = [m.replace(str(staged), source) if staged else m
                              for m in problems.messages]
        result["input_sha256"] = sha256_file(source)
        result["input_lines"] = count_lines(reading) if staged is None else \
            _parquet_rows(source)
        if summary.finished and os.path.exists(target):
            result.update(finished=True, output_lines=count_lines(target),
                          output_sha256=sha256_file(target))
        return result


def _parquet_rows(path: str) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


_TOTALS = ("documents", "records", "errors", "failed", "prompts", "generated_tokens", "skipped",
           "input_errors", "seconds")


@dataclass
class JobSummary(RunSummary):
    """A sharded job's totals (the shards' :class:`~deepke_llm.batch.RunSummary` counts added)
    plus the shards done, skipped (finished by an earlier run) and not finished."""

    shards: int = 0
    shards_done: int = 0
    shards_skipped: int = 0
    shards_unfinished: list[str] = dataclasses.field(default_factory=list)

    def line(self) -> str:
        return (f"shards: {self.shards_done} done, {self.shards_skipped} skipped (finished "
                f"before), {len(self.shards_unfinished)} not finished; " + super().line())

    def add(self, result: dict[str, Any]) -> None:
        for key in _TOTALS:
            if key != "seconds":
                setattr(self, key, getattr(self, key) + result.get(key, 0))


def _job_key(config: ExtractConfig, model_options: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same job (a resumed run must not mix another job's records)."""
    schema = config.schema if isinstance(config.schema, str) else config.schema.name
    keys = ("task", "prompt_style", "language", "max_new_tokens", "split_num", "few_shot",
            "few_shot_file", "keep_punctuation", "constrained")
    # not the server's address: a resumed job may reach the same model through another one
    model = ("model", "lora", "engine", "api_model", "endpoint", "chat_template", "dtype")
    return {"schema": schema, **{k: getattr(config, k) for k in keys},
            **{k: model_options.get(k) for k in model}}


def _load_manifest(path: Path, job: dict[str, Any], resume: bool) -> dict[str, Any]:
    fresh = {"format": 1, "job": job, "shards": {}}
    if not resume or not path.exists():
        return fresh
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fresh  # unreadable: every shard is checked again (their .partial files resume)
    if manifest.get("job") != job:
        changed = sorted(k for k in job if manifest.get("job", {}).get(k) != job[k])
        raise ShardError(f"{path} was written by another job (it differs in "
                         f"{', '.join(changed) or 'its layout'}): choose another --output or "
                         "run without --resume")
    return manifest


def _finished(entry: dict[str, Any] | None, target: Path) -> bool:
    return bool(entry and entry.get("finished") and target.is_file()
                and sha256_file(target) == entry.get("output_sha256"))


def extract_shards(config: ExtractConfig, model_options: dict[str, Any],
                   inputs: str | Sequence[str], output_dir: str | os.PathLike[str], *,
                   actors: int = 1, address: str | None = None, resume: bool = False,
                   num_cpus: float | None = None, num_gpus: float = 0, max_retries: int = 2,
                   progress: bool = False, on_error: ErrorCallback | None = None) -> JobSummary:
    """Extract every shard of ``inputs`` into ``output_dir`` on a Ray actor pool.

    ``config`` is the per-shard :class:`~deepke_llm.batch.ExtractConfig` (its input/output are
    set per shard); ``model_options`` are the CLI's model options (``MODEL_KEYS``), from which
    each actor builds its engine once. ``num_cpus`` per actor defaults to ``--threads`` (or 1)
    for a local engine and 0.25 for a server; ``num_gpus`` places actors on GPU nodes. Without
    ``resume`` earlier outputs in ``output_dir`` are replaced. Input errors go to ``on_error``.
    """
    out = Path(output_dir)
    shards = resolve_shards(inputs, out)
    out.mkdir(parents=True, exist_ok=True)
    report = on_error or print_errors()
    summary = JobSummary(shards=len(shards))
    started = time.perf_counter()
    lock = output_lock(out / MANIFEST)  # one job per output folder
    try:
        manifest = _load_manifest(out / MANIFEST, _job_key(config, model_options), resume)
        todo = []
        for source, name in shards:
            if resume and _finished(manifest["shards"].get(source), out / name):
                summary.shards_skipped += 1
                continue
            manifest["shards"].pop(source, None)
            if not resume:  # a fresh job: nothing of an earlier run may be taken as done
                for stale in (out / name, out / f"{name}.partial"):
                    stale.unlink(missing_ok=True)
            todo.append((source, name))
        _save(out / MANIFEST, manifest)
        if todo:
            if num_cpus is None:
                num_cpus = 0.25 if model_options.get("base_url") else \
                    float(model_options.get("threads") or 1)
            options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_restarts": max_retries,
                       "max_task_retries": max_retries}
            with ray_session(address) as ray:
                for result in _dispatch(ray, todo, out, config, model_options, options, actors,
                                        progress):
                    _record(result, manifest, summary, report)
                    _save(out / MANIFEST, manifest)
            # shards never started (every actor died): left for --resume
            summary.shards_unfinished += [s for s, _ in todo if s not in manifest["shards"]]
            with contextlib.suppress(OSError):
                (out / ".staging").rmdir()  # Parquet shards' JSONL copies, gone when done
    finally:
        lock.release()
    summary.seconds = time.perf_counter() - started
    summary.finished = not summary.shards_unfinished and not summary.failed
    return summary


def _record(result: dict[str, Any], manifest: dict[str, Any], summary: JobSummary,
            report: ErrorCallback) -> None:
    entry = {k: v for k, v in result.items() if k not in ("messages", "pid")}
    manifest["shards"][result["input"]] = entry
    summary.add(result)
    for message in result.get("messages", []):
        report(message)
    if result["finished"]:
        summary.shards_done += 1
        return
    summary.shards_unfinished.append(result["input"])
    if result.get("error"):
        print(f"error: shard {result['input']} not finished: {result['error']}", flush=True,
              file=sys.stderr)


def _save(path: Path, manifest: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n",
                       encoding="utf-8")


def _dispatch(ray: Any, todo: list[tuple[str, str]], out: Path, config: ExtractConfig,
              model_options: dict[str, Any], options: dict[str, Any], actors: int,
              progress: bool) -> Iterator[dict[str, Any]]:
    """Run each shard on the next free actor; yield each shard's result as it finishes."""
    from ray.exceptions import RayActorError, RayError

    worker = ray.remote(ShardWorker).options(**options)
    idle = [worker.remote(config, model_options) for _ in range(min(actors, len(todo)))]
    everyone = list(idle)
    queue = list(reversed(todo))
    running: dict[Any, tuple[Any, str, str]] = {}
    bar = ProgressBar(progress, len(todo), "shards", unit="shard")
    try:
        while queue or running:
            while queue and idle:
                actor = idle.pop()
                source, name = queue.pop()
                running[actor.run.remote(source, str(out / name))] = (actor, source, name)
            done, _ = ray.wait(list(running), num_returns=1)
            actor, source, name = running.pop(done[0])
            try:
                result = ray.get(done[0])
                idle.append(actor)
            except RayError as exc:
                if getattr(exc, "actor_init_failed", False):  # the engine does not load
                    raise ShardError(f"the engine did not load in a Ray actor: {_cause(exc)}"
                                     ) from None
                result = {"input": source, "output": name, "finished": False,
                          "error": _cause(exc)}
                if not isinstance(exc, RayActorError):
                    idle.append(actor)  # a bug in this shard's run; the actor lives on
                elif not idle and not running:
                    queue.clear()  # died more often than max_restarts allows, and the last one
            bar.advance()
            yield result
    finally:
        bar.close()
        for actor in everyone:
            with contextlib.suppress(Exception):
                ray.kill(actor)


def _cause(exc: BaseException) -> str:
    """One line for a Ray error: the innermost exception it wraps (a model that does not load
    in the actor's ``__init__``, a bug), else Ray's own first line."""
    seen = exc
    while getattr(seen, "cause", None) is not None and seen.cause is not seen:
        seen = seen.cause
    if seen is not exc:
        return one_line(seen)
    # an actor's death carries the traceback as text: its last line names the exception
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__
