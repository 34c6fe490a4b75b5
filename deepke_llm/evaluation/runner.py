"""Run a benchmark end to end: read gold, extract with a backend, score, write the reports.

``run_benchmark(config, backend, model_name)`` writes into ``OUTPUT_DIR/<benchmark>/``
(default ``runs/evaluate``, which the checkout's .gitignore ignores: a run of your own never
touches the published results; a run to publish goes to ``benchmarks/results`` explicitly and is
committed there, and only committed reports make the README's table):

* ``<model>-<date>.json``: scores of every mode (the ``score --json`` shape under ``scores``),
  bootstrap 95% intervals of F1, prompt variance, warnings, run statistics and settings; the
  data as benchmark, split, file relative to the data dir and sha256 (reports get committed and
  compared across machines, so they name no absolute path);
* ``<model>-<date>.md``: overall table, per-type table(s), warnings and 20 sample errors;
* ``<model>-<date>.png``: per-type F1 bar chart;
* ``<model>-<date>.gold.jsonl`` and ``.pred.jsonl`` (``.shuffleK.pred.jsonl`` per schema order),
  so ``deepke-llm score --gold ... --pred ...`` re-scores the run without a model. These hold
  dataset text: keep them out of version control (``benchmarks/results/.gitignore`` does).

Predictions are written as they finish and ``resume=True`` continues an interrupted run.
"""

from __future__ import annotations

import datetime
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepke_llm.backends.base import Backend, GenerationConfig
from deepke_llm.config import check_ranges, config_field
from deepke_llm.extractor import ExtractionStats, constrained_for
from deepke_llm.problems import Problems
from deepke_llm.records import Document, read_documents
from deepke_llm.tasks import get_task

from .bootstrap import bootstrap_f1
from .definitions import BenchmarkDefinition, BenchmarkError, load_benchmark, resolve_data_path
from .diagnostics import KINDS, Diagnostics
from .report import sample_errors, write_chart, write_json, write_markdown
from .scoring import TaskScore, score_documents

__all__ = ["EvaluationConfig", "EvaluationResult", "model_slug", "run_benchmark"]

ERROR_SAMPLES = 20
# Not benchmarks/results: the README's table is generated from there, so a user's own run
# (e.g. the README's `evaluate conll04 --limit 15`) must not land there by default.
DEFAULT_OUTPUT_DIR = "runs/evaluate"


@dataclass
class EvaluationConfig:
    """What to evaluate and how; saved into every result file."""

    benchmark: str = config_field(help="A bundled benchmark name or a definition JSON file.")
    split: str | None = config_field(None, help="Dataset split [default: the benchmark's, "
                                                "usually test].")
    limit: int | None = config_field(None, minimum=1, help="Only the first N documents.")
    output_dir: str = config_field(DEFAULT_OUTPUT_DIR, help=(
        "Results go to OUTPUT/BENCHMARK/ (runs to publish in the README: benchmarks/results)."))
    data_dir: str | None = config_field(None, help="Root of dataset paths [default: "
                                                   "$DEEPKE_DATA, else ../shared/data].")
    prompt_style: str = config_field("iepile", help="Prompt style.")
    language: str | None = config_field(None, help="Prompt language [default: the benchmark's].")
    batch_size: int = config_field(8, minimum=1, help="Prompts per forward pass / concurrent "
                                                      "requests.")
    max_new_tokens: int = config_field(512, minimum=1, help="Generation limit per prompt.")
    split_num: int | None = config_field(None, minimum=1, help="Schema types per prompt.")
    modes: tuple[str, ...] | None = config_field(None, help="Scoring mode (repeatable) "
                                                            "[default: the benchmark's].")
    shuffle_runs: int = config_field(0, minimum=0, help="Repeat with N shuffled schema orders "
                                                        "and report F1 mean ± std.")
    bootstrap: int = config_field(1000, minimum=0, help="Bootstrap samples for the 95% CI of F1 "
                                                        "(0 = none).")
    seed: int = config_field(0, help="Seed of the bootstrap and the error sample.")
    few_shot: int = config_field(0, minimum=0, help="Gold demonstrations shown before each "
                                                    "prompt (from the train or dev split).")
    few_shot_split: str | None = config_field(None, help="Split the demonstrations come from "
                                                         "[default: train, else dev].")
    resume: bool = config_field(False, help="Continue this model's interrupted run.")
    constrained: bool | None = config_field(None, help="Decode under the schema/text constraint "
                                                       "[default: where the engine supports it].")
    progress: bool = config_field(True, help="Show a progress bar on stderr.")

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.shuffle_runs < 0 or self.bootstrap < 0:
            raise ValueError("shuffle_runs and bootstrap must be >= 0")
        check_ranges(self)


@dataclass
class EvaluationResult:
    """The summary written to ``<stem>.json``, the files written, and the first run's scores."""

    summary: dict[str, Any]
    paths: dict[str, Path]
    score: TaskScore
    extra: dict[str, Any] = field(default_factory=dict)


def model_slug(name: str) -> str:
    """A file-name-safe model name (``org/Model 7B`` -> ``org_Model_7B``)."""
    name = name.rstrip("/")
    if Path(name).exists():  # a local model dir names the model by its folder
        name = Path(name).name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "model"


def data_file_name(definition: BenchmarkDefinition, split: str) -> str:
    """The split's file as reports name it: relative to the data dir as the definition gives it,
    by its name when the definition gives an absolute path."""
    given = definition.splits[split]
    return Path(given).name if Path(given).is_absolute() else given


def data_record(definition: BenchmarkDefinition, split: str, path: Path) -> dict[str, str]:
    """What identifies the evaluated data without naming this machine's directories: the
    benchmark, the split, the file (:func:`data_file_name`) and the file's sha256."""
    from deepke_llm.io import sha256_file

    return {"benchmark": definition.name, "split": split,
            "file": data_file_name(definition, split), "sha256": sha256_file(path)}


def _portable(value: str | None, is_file: bool = False) -> str | None:
    """A path setting as a report may record it: relative paths as given, absolute ones relative
    to the working dir when inside it; another absolute directory means nothing on another
    machine (None), another absolute file is recorded by its name."""
    if value is None or not Path(value).is_absolute():
        return value
    path = Path(value)
    if path.is_relative_to(Path.cwd()):
        return str(path.relative_to(Path.cwd())) or "."
    return path.name if is_file else None


def _settings(config: EvaluationConfig, definition: BenchmarkDefinition,
              modes: tuple[str, ...]) -> dict[str, Any]:
    """The run's settings with no absolute path of this machine in them."""
    described = definition.to_dict()
    described["splits"] = {split: _portable(path, is_file=True)
                           for split, path in definition.splits.items()}
    return {**asdict(config), "benchmark": _portable(config.benchmark, is_file=True),
            "data_dir": _portable(config.data_dir), "output_dir": _portable(config.output_dir),
            "modes": list(modes), "schema": definition.schema, "definition": described}


def load_gold(definition: BenchmarkDefinition, split: str, data_dir: str | None,
              limit: int | None, problems: Problems | None = None) -> tuple[Path, list[Document]]:
    """The gold Documents of a benchmark split (first ``limit``); reader problems go to
    ``problems`` (logged as warnings without one)."""
    from deepke_llm.datasets import DatasetError, read_dataset

    path = resolve_data_path(definition, split, data_dir)
    try:
        documents: list[Document] = []
        for document in read_dataset(definition.format, path, schema=definition.schema,
                                     split=split, errors=problems, **definition.reader_options):
            documents.append(document)
            if limit is not None and len(documents) >= limit:
                break
    except DatasetError as exc:
        raise BenchmarkError(f"benchmark '{definition.name}': {exc}") from None
    if not documents:
        raise BenchmarkError(f"benchmark '{definition.name}': no documents in {path}")
    return path, documents


def _stem(directory: Path, slug: str, resume: bool) -> str:
    if resume:
        # only this model's runs: "<slug>-YYYY-MM-DD...", not "<slug>-3shot-..."
        own = re.compile(rf"{re.escape(slug)}-\d{{4}}-\d\d-\d\d")
        partials = sorted((p for p in directory.glob(f"{slug}-*.pred.jsonl.partial")
                           if own.match(p.name)), key=lambda p: p.stat().st_mtime)
        if partials:  # <stem>.pred.jsonl.partial or <stem>.shuffleK.pred.jsonl.partial
            return re.sub(r"(\.shuffle\d+)?\.pred\.jsonl\.partial$", "", partials[-1].name)
    return f"{slug}-{datetime.date.today().isoformat()}"


def _extract(extractor: Any, gold: list[Document], path: Path, resume: bool,
             progress: bool) -> list[Document]:
    from deepke_llm.batch import run_to_file

    # the model sees the text only; gold records and token offsets stay behind
    texts = (Document(id=d.id, text=d.text, language=d.language) for d in gold)
    summary = run_to_file(texts, extractor.extract_iter, str(path), resume=resume,
                          progress=progress, total=len(gold), desc="evaluate")
    if summary.failed:
        # scoring a run with missing documents would report a failure as low recall
        raise BackendFailures(f"{summary.failed} of {len(gold)} documents failed in the backend; "
                              f"the predictions stay in {path}.partial: rerun with --resume to "
                              "redo them (nothing was scored)")
    return list(read_documents(str(path)))


class BackendFailures(RuntimeError):
    """Documents the backend could not answer: the run is not scored (exit 3)."""


def _variance(scores: list[TaskScore]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, Any]:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return {"mean": statistics.fmean(values), "std": std, "values": values}

    out: dict[str, Any] = {}
    for mode, levels in scores[0].modes.items():
        per_level = {}
        for level in levels:
            counts = [s.modes[mode][level].overall for s in scores]
            per_level[level] = {name: stats([getattr(c, name) for c in counts])
                                for name in ("precision", "recall", "f1")}
        out[mode] = per_level if get_task(scores[0].task).has_levels else per_level[None]
    return out


def _intervals(score: TaskScore, samples: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, levels in score.modes.items():
        per_level = {level: bootstrap_f1(s.document_counts(), samples, seed)
                     for level, s in levels.items()}
        out[mode] = per_level if get_task(score.task).has_levels else per_level[None]
    return out


def _demonstrations(definition: BenchmarkDefinition, config: EvaluationConfig) -> list[Document]:
    """Few-shot examples: the first documents with records of a training (or dev) split."""
    if not config.few_shot:
        return []
    from deepke_llm.extractor import pick_demonstrations

    split = config.few_shot_split or ("train" if "train" in definition.splits else "dev")
    if split == (config.split or definition.default_split):
        raise BenchmarkError(f"few-shot examples must not come from the evaluated split '{split}'")
    _, documents = load_gold(definition, split, config.data_dir, None, Problems())
    picked = pick_demonstrations(documents, definition.task, config.few_shot)
    if len(picked) < config.few_shot:
        raise BenchmarkError(f"split '{split}' has only {len(picked)} documents with records "
                             f"for {config.few_shot} demonstrations")
    return picked


@dataclass
class _Run:
    """One benchmark run being made: what it reads, where it writes, what it has found."""

    config: EvaluationConfig
    definition: BenchmarkDefinition
    split: str
    modes: tuple[str, ...]
    gold: list[Document]
    data: dict[str, str]
    paths: dict[str, Path]
    diagnostics: Diagnostics
    stats: ExtractionStats = field(default_factory=ExtractionStats)
    with_errors: int = 0


def _start(config: EvaluationConfig, model_name: str) -> _Run:
    """Read the gold split (reader problems -> the run's diagnostics) and name the outputs."""
    from deepke_llm.io import write_jsonl_atomic

    definition = load_benchmark(config.benchmark)
    split = config.split or definition.default_split
    diagnostics = Diagnostics()
    shown, path = data_file_name(definition, split), resolve_data_path(definition, split,
                                                                        config.data_dir)
    # "FILE:LINE: ...": the file as the report names it
    reader = Problems(lambda m: diagnostics.add("dataset_problem", m.replace(str(path), shown)))
    data_file, gold = load_gold(definition, split, config.data_dir, config.limit, reader)
    directory = Path(config.output_dir) / definition.name
    directory.mkdir(parents=True, exist_ok=True)
    stem = _stem(directory, model_slug(model_name), config.resume)
    paths = {"json": directory / f"{stem}.json", "markdown": directory / f"{stem}.md",
             "chart": directory / f"{stem}.png", "gold": directory / f"{stem}.gold.jsonl"}
    write_jsonl_atomic(paths["gold"], gold)
    return _Run(config, definition, split, tuple(config.modes or definition.modes), gold,
                data_record(definition, split, data_file), paths, diagnostics)


def _score_runs(run: _Run, backend: Backend) -> list[TaskScore]:
    """Extract and score once, or once per shuffled schema order; the first run keeps its
    mismatches (for the error sample) and the run's diagnostics."""
    from deepke_llm.extractor import Extractor

    config, definition = run.config, run.definition
    demonstrations = _demonstrations(definition, config)
    generation = GenerationConfig(max_new_tokens=config.max_new_tokens,
                                  batch_size=config.batch_size)
    scores: list[TaskScore] = []
    for seed in _seeds(config):
        name = "pred" if seed is None else f"shuffle{seed}.pred"
        pred_path = run.paths.setdefault(name, run.paths["json"].with_name(
            f"{run.paths['json'].stem}.{name}.jsonl"))
        extractor = Extractor(backend, definition.schema, definition.task,
                              language=config.language or definition.language,
                              prompt_style=config.prompt_style, generation=generation,
                              split_num=config.split_num, schema_shuffle_seed=seed,
                              demonstrations=demonstrations,
                              trim_punctuation=definition.trim_punctuation,
                              constrained=config.constrained)
        predictions = _extract(extractor, run.gold, pred_path, config.resume, config.progress)
        for name in ("prompts", "generated_tokens", "seconds"):
            setattr(run.stats, name, getattr(run.stats, name) + getattr(extractor.stats, name))
        first = not scores
        if first:
            run.with_errors = sum(1 for d in predictions if d.errors)
        scores.append(score_documents(definition.task, run.gold, predictions, run.modes,
                                      schema=definition.schema, gold_name=run.paths["gold"].name,
                                      pred_name=pred_path.name,
                                      keep_mismatches=run.modes[:1] if first else (),
                                      diagnostics=run.diagnostics if first else None))
    return scores


def _seeds(config: EvaluationConfig) -> list[int | None]:
    return list(range(config.shuffle_runs)) if config.shuffle_runs else [None]


def _summary(run: _Run, scores: list[TaskScore], model_name: str) -> dict[str, Any]:
    """The ``<stem>.json`` report (see the module doc)."""
    from deepke_llm import __version__

    config, score = run.config, scores[0]
    stats = run.stats
    return {
        "benchmark": run.definition.name, "task": run.definition.task, "split": run.split,
        "model": model_name, "date": datetime.date.today().isoformat(),
        "deepke_llm_version": __version__, "documents": len(run.gold),
        "data": run.data,
        "scores": score.to_dict(),
        "confidence_intervals": _intervals(score, config.bootstrap, config.seed)
        if config.bootstrap else None,
        "prompt_variance": {"runs": len(scores), "seeds": _seeds(config),
                            "scores": _variance(scores)} if config.shuffle_runs else None,
        "warnings": [{"kind": kind, "what": KINDS[kind], **entry}
                     for kind, entry in score.diagnostics.to_dict().items()],
        "extraction": {"prompts": stats.prompts, "generated_tokens": stats.generated_tokens,
                       "seconds": round(stats.seconds, 3),
                       "documents_with_errors": run.with_errors},
        "settings": _settings(config, run.definition, run.modes),
        "files": {key: path.name for key, path in run.paths.items()},
    }


def run_benchmark(config: EvaluationConfig, backend: Backend, model_name: str) -> EvaluationResult:
    """Extract, score and report one benchmark split with ``backend``; see the module doc."""
    run = _start(config, model_name)
    scores = _score_runs(run, backend)
    score, paths, mode = scores[0], run.paths, run.modes[0]
    summary = _summary(run, scores, model_name)
    summary["extraction"]["engine"] = getattr(backend, "engine", type(backend).__name__)
    summary["extraction"]["constrained"] = constrained_for(backend, config.constrained)
    mismatches = score.mismatches.get(mode, [])
    errors = sample_errors(mismatches, ERROR_SAMPLES, config.seed)
    title = f"{run.definition.name} ({run.split}) — {model_name}"
    if not write_chart(paths["chart"], score, title):
        del paths["chart"]
        summary["files"].pop("chart")
    write_markdown(paths["markdown"], summary, score, mode, errors, len(mismatches),
                   redact=bool(run.definition.data_note))  # data not shipped = not ours to publish
    write_json(paths["json"], summary)
    return EvaluationResult(summary, paths, score)
