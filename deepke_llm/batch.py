"""File-to-file runs behind ``deepke-llm extract``, ``parse`` and ``evaluate``.

Inputs stream line by line; a bad line (not JSON, not UTF-8, not Unicode text, no ``text``, empty
text) is reported with ``file:line`` and skipped without stopping the run; outputs go through
:class:`~deepke_llm.io.ResumableWriter` so an interrupted run keeps its work and ``--resume``
continues it. A document the backend could not answer is not written: it is counted as failed,
the output stays ``OUT.partial`` and ``--resume`` redoes it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepke_llm.cjk import document_language
from deepke_llm.config import config_field
from deepke_llm.extractor import ExtractionStats, Extractor, parse_output
from deepke_llm.grounding import GroundingOptions
from deepke_llm.io import ProgressBar, ResumableWriter, count_lines, json_chunks, read_jsonl
from deepke_llm.problems import ErrorCallback, Problems, print_errors
from deepke_llm.prompts.styles import Style, get_style
from deepke_llm.records import Document, RecordError
from deepke_llm.schema import Schema, load_schema
from deepke_llm.tasks import Task, get_task
from deepke_llm.tasks.base import unique

__all__ = ["ExtractConfig", "RunSummary", "extract_file", "parse_file", "read_text_inputs",
           "run_extract", "run_to_file"]

# failed documents named one by one on stderr; the rest are counted
SHOWN_FAILURES = 10


@dataclass
class RunSummary(ExtractionStats):
    """A file run's totals: the Extractor's counts (documents, records, errors, failed, prompts,
    generated tokens, seconds: :class:`~deepke_llm.extractor.ExtractionStats`, the same meaning)
    plus what the run around it adds."""

    input_errors: int = 0
    """Input lines reported to the error sink and skipped."""
    skipped: int = 0
    """Documents already in the output (``resume``), not done again."""
    finished: bool = True
    """False when the output was left as ``OUT.partial`` (failed documents to redo)."""

    def line(self) -> str:
        rate = self.generated_tokens / self.seconds if self.seconds else 0.0
        parts = [f"documents: {self.documents}", f"records: {self.records}",
                 f"errors: {self.errors}", f"input errors: {self.input_errors}"]
        if self.failed:
            parts.append(f"failed (backend, not written): {self.failed}")
        if self.skipped:
            parts.append(f"skipped (already done): {self.skipped}")
        parts.append(f"tokens/s: {rate:.1f}")
        return ", ".join(parts)


@dataclass
class ExtractConfig:
    """Everything ``deepke-llm extract`` runs besides the model (each field is the option of the
    same name: ``max_new_tokens`` -> ``--max-new-tokens``)."""

    task: str = config_field(help="What to extract: ner, re or ee.")
    schema: str | Schema = config_field(help="Bundled schema name (see `deepke-llm schemas`) or "
                                        "path to a schema JSON file.")
    prompt_style: str = config_field("iepile", help="iepile: OneKE/IEPile JSON; knowlm: ZhiXi "
                                                    "free text.")
    language: str | None = config_field(None, help="Prompt language [default: the document's, "
                                                   "else the schema's].")
    batch_size: int = config_field(8, minimum=1, help="Prompts per forward pass / concurrent "
                                                      "requests.")
    max_new_tokens: int = config_field(512, minimum=1, help="Generation limit per prompt.")
    split_num: int | None = config_field(None, minimum=1, help="Schema types per prompt "
                                                               "[default: NER 6, RE/EE 4].")
    few_shot: int = config_field(0, minimum=0, help="Show N gold examples from --few-shot-file "
                                                    "before each prompt.")
    few_shot_file: str | None = config_field(None, help="Records JSONL to take the first N "
                                                        "documents with records from.")
    keep_punctuation: bool = config_field(False, help="Keep punctuation a model copies at a "
                                                      "mention's end.")
    constrained: bool | None = config_field(None, help="Decode under the schema/text constraint "
                                                       "[default: where the engine supports it].")
    input: str | None = config_field(None, help='JSONL file of {"id", "text"} lines.')
    output: str | None = config_field(None, help="Records JSONL [default: stdout].")
    resume: bool = config_field(False, help="Skip ids already in --output.")
    progress: bool = config_field(True, help="Show a progress bar on stderr.")

    def __post_init__(self) -> None:
        from deepke_llm.prompts.styles import get_style

        get_task(self.task)
        get_style(self.prompt_style)
        if self.language not in (None, "en", "zh"):
            raise ValueError(f"unknown language '{self.language}': use en or zh")
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.few_shot < 0 or \
                (self.split_num is not None and self.split_num < 1):
            raise ValueError("batch_size, max_new_tokens and split_num must be >= 1, few_shot >= 0")
        if self.resume and not self.output:
            raise ValueError("resume needs an output file")
        if self.few_shot and not self.few_shot_file:
            raise ValueError("few_shot needs a few_shot_file of gold records")


def run_extract(config: ExtractConfig, backend: Any, texts: Iterable[str] = (),
                on_error: ErrorCallback | None = None) -> RunSummary:
    """Build the Extractor ``config`` describes on ``backend`` and run it over ``config.input``
    and ``texts`` into ``config.output`` (stdout without one)."""
    from deepke_llm.backends.base import GenerationConfig
    from deepke_llm.extractor import pick_demonstrations
    from deepke_llm.records import read_documents

    demonstrations: list[Document] = []
    if config.few_shot:
        demonstrations = pick_demonstrations(read_documents(str(config.few_shot_file)),
                                             config.task, config.few_shot)
        if len(demonstrations) < config.few_shot:
            raise RecordError(f"{config.few_shot_file} has only {len(demonstrations)} documents "
                              f"with {config.task} records; --few-shot {config.few_shot} needs "
                              "that many")
    generation = GenerationConfig(max_new_tokens=config.max_new_tokens,
                                  batch_size=config.batch_size)
    extractor = Extractor(backend, config.schema, config.task, language=config.language,
                          prompt_style=config.prompt_style, generation=generation,
                          split_num=config.split_num, demonstrations=demonstrations,
                          trim_punctuation=not config.keep_punctuation,
                          constrained=config.constrained)
    return extract_file(extractor, input_path=config.input, texts=texts, output=config.output,
                        resume=config.resume, progress=config.progress, on_error=on_error)


def read_text_inputs(path: str, on_error: ErrorCallback) -> Iterator[Document]:
    """Documents from a JSONL file of ``{"id", "text", ...}``; bad lines go to ``on_error``."""
    stem = Path(path).stem
    seen: set[str] = set()
    for number, data in read_jsonl(path, on_error):
        where = f"{path}:{number}"
        if not isinstance(data, dict):
            on_error(f"{where}: expected a JSON object with a 'text' field")
            continue
        if "text" not in data:
            on_error(f"{where}: missing field 'text'")
            continue
        if not isinstance(data["text"], str) or not data["text"].strip():
            on_error(f"{where}: field 'text' is empty or not a string")
            continue
        data = dict(data)
        data.setdefault("id", f"{stem}-{number}")
        try:
            document = Document.from_dict(data, where=where)
        except RecordError as exc:
            on_error(str(exc))
            continue
        if document.id in seen:
            on_error(f"{where}: duplicate id '{document.id}' (ids must be unique for --resume)")
            continue
        seen.add(document.id)
        yield document


class _StdoutWriter:
    done_ids: set[str] = set()

    def write(self, record: Any) -> None:
        sys.stdout.writelines(json_chunks(record))
        sys.stdout.write("\n")
        sys.stdout.flush()

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


def run_to_file(documents: Iterable[Document],
                process: Callable[[Iterable[Document]], Iterator[Document]],
                output: str | None, *, resume: bool = False, progress: bool | ProgressBar = True,
                summary: RunSummary | None = None, total: int | None = None,
                desc: str = "extract", on_failure: ErrorCallback | None = None) -> RunSummary:
    """Stream ``documents`` through ``process`` into ``output`` (stdout without one).

    Ids already in ``output`` (or its ``.partial``) are skipped with ``resume``; finished documents
    are kept when the run dies, and the output becomes final only when it completes with no
    failed document. ``total`` (documents to do, for the progress bar) may count the skipped
    ones too. Failed documents (``Document.failure``) are not written; each is reported to
    ``on_failure`` (stderr by default) and counted in ``RunSummary.failed``.
    """
    summary = summary or RunSummary()
    report = on_failure or print_errors(show=SHOWN_FAILURES, prefix="failed: ")
    writer = ResumableWriter(output, resume=resume) if output else _StdoutWriter()
    started = time.perf_counter()
    done_before = len(writer.done_ids)

    def todo() -> Iterator[Document]:
        for document in documents:
            if document.id in writer.done_ids:
                summary.skipped += 1
                continue
            yield document

    if total is not None:
        total = max(total - done_before, 0)
    bar = progress if isinstance(progress, ProgressBar) else ProgressBar(progress, total, desc)
    try:
        for document in process(todo()):
            bar.advance()
            summary.documents += 1
            if document.failure is not None:
                summary.failed += 1
                report(f"document '{document.id}' not done: {document.failure}")
                continue
            writer.write(document)
            summary.records += document.record_count
            summary.errors += len(document.errors)
    except BaseException:
        writer.close()
        bar.close()
        raise
    bar.close()
    if summary.failed:
        writer.close()  # stays OUT.partial: the output is not whole until --resume redoes them
        summary.finished = output is None
    else:
        writer.finish()
    summary.seconds = time.perf_counter() - started
    return summary


def extract_file(extractor: Extractor, *, input_path: str | None = None,
                 texts: Iterable[str] = (), output: str | None = None, resume: bool = False,
                 progress: bool = True, on_error: ErrorCallback | None = None) -> RunSummary:
    """Run ``extractor`` over ``input_path`` (JSONL) and/or ``texts``; write records to ``output``.

    Without ``output`` records go to stdout. Bad input lines are passed to ``on_error`` and
    counted in ``RunSummary.input_errors``; the run goes on. The progress bar has a total (the
    input's lines are counted first) and shows the window reached inside a long document.
    """
    summary = RunSummary()
    problems = Problems(on_error or print_errors())
    texts = list(texts)

    def documents() -> Iterator[Document]:
        for i, text in enumerate(texts, 1):
            if not text.strip():
                problems(f"argument {i}: empty text")
                continue
            yield Document(id=f"text-{i}", text=text)
        if input_path:
            yield from read_text_inputs(input_path, problems)

    total = len(texts) + (count_lines(input_path) if input_path and progress else 0)
    bar = ProgressBar(progress, total, "extract")
    before = (extractor.stats.prompts, extractor.stats.generated_tokens)
    extractor.on_batch = lambda status: bar.status(status.describe())

    def process(docs: Iterable[Document]) -> Iterator[Document]:
        # input errors and resumed ids count as handled lines, so the bar reaches its total
        handled = problems.count + summary.skipped
        for document in extractor.extract_iter(docs):
            now = problems.count + summary.skipped
            bar.advance(now - handled)
            handled = now
            yield document
        bar.advance(problems.count + summary.skipped - handled)

    try:
        run_to_file(documents(), process, output, resume=resume, progress=bar, summary=summary)
    finally:
        extractor.on_batch = None
        summary.input_errors = problems.count
        summary.prompts = extractor.stats.prompts - before[0]
        summary.generated_tokens = extractor.stats.generated_tokens - before[1]
    return summary


def parse_file(input_path: str, task: str, schema: str | Schema, *, output: str | None = None,
               prompt_style: str = "iepile", language: str | None = None,
               on_error: ErrorCallback | None = None, trim_punctuation: bool = True) -> RunSummary:
    """Ground raw outputs of any system: lines ``{"id", "text", "output"}`` -> records.

    ``output`` may be one string or a list (one per schema chunk). IEPile test lines (no
    ``text``; an ``instruction`` JSON holding ``input``) are read too, and lines sharing an id
    are merged as IEPile's evaluator merges them.
    """
    schema = load_schema(schema)
    report = Problems(on_error or print_errors())
    task_obj, style = get_task(task), get_style(prompt_style)
    grounding = GroundingOptions(trim_punctuation=trim_punctuation)
    wanted = task_obj.iepile_name

    def documents() -> Iterator[Document]:
        # streamed: the lines of one record (IEPile schema chunks) come one after another
        entry: dict[str, Any] | None = None
        done: set[str] = set()
        for number, data in read_jsonl(input_path, report):
            where = f"{input_path}:{number}"
            if isinstance(data, dict) and str(data.get("task", wanted)).upper() != wanted:
                continue  # a line of another task in a multi-task IEPile file
            line = _raw_output_line(data, where, report)
            if line is None:
                continue
            if entry is not None and entry["id"] == line["id"]:
                entry["outputs"].extend(line["outputs"])
                continue
            if entry is not None:
                yield _parse_entry(entry, task_obj, schema, style, language, grounding)
            if line["id"] in done:
                report(f"{where}: id '{line['id']}' appeared before, not next to its other lines; "
                       "parsed as a separate record")
            done.add(line["id"])
            entry = line
        if entry is not None:
            yield _parse_entry(entry, task_obj, schema, style, language, grounding)

    summary = run_to_file(documents(), lambda docs: iter(docs), output, progress=False)
    summary.input_errors = report.count
    return summary


def _raw_output_line(data: Any, where: str, report: ErrorCallback) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        report(f"{where}: expected a JSON object")
        return None
    text = data.get("text")
    if text is None and isinstance(data.get("instruction"), str):
        try:
            text = json.loads(data["instruction"]).get("input")
        except (json.JSONDecodeError, AttributeError):
            text = None
    if not isinstance(text, str) or not text:
        report(f"{where}: missing 'text' (or an IEPile 'instruction' with 'input')")
        return None
    outputs = data.get("output", data.get("raw_output"))
    if isinstance(outputs, str):
        outputs = [outputs]
    if not isinstance(outputs, list):
        report(f"{where}: missing 'output' (a string or a list of strings)")
        return None
    doc_id = str(data.get("id", where))
    meta = {k: v for k, v in data.items()
            if k not in ("id", "text", "output", "raw_output", "instruction", "label")}
    return {"id": doc_id, "text": text, "outputs": [str(o) for o in outputs], "meta": meta}


def _parse_entry(entry: dict[str, Any], task: Task, schema: Schema, style: Style,
                 language: str | None, grounding: GroundingOptions) -> Document:
    declared = entry["meta"].get("language")
    language = document_language(entry["text"], language,
                                 declared if isinstance(declared, str) else None, schema.language)
    records: list = []
    errors: list[str] = []
    for output in entry["outputs"]:
        grounded, output_errors = parse_output(task, output, schema, entry["text"], language,
                                               style, grounding)
        records.extend(grounded)
        errors.extend(output_errors)
    document = Document(id=entry["id"], text=entry["text"], language=language,
                        raw_output=tuple(entry["outputs"]), errors=tuple(unique(errors)),
                        meta=entry["meta"])
    return task.with_records(document, unique(records))
