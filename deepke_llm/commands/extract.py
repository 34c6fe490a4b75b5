"""``deepke-llm extract``, ``parse`` and ``schemas``: thin click wrappers over the library."""

from __future__ import annotations

import json
import sys

import click

from deepke_llm.commands.common import ExitCode, fail, refuse_same_output
from deepke_llm.commands.model_options import backend_from_options, model_options, pop_model_options

TASKS = ["ner", "re", "ee"]
STYLES = ["iepile", "knowlm"]


def _schema_or_fail(name: str):
    from deepke_llm.schema import SchemaError, load_schema

    try:
        return load_schema(name)
    except SchemaError as exc:
        fail(str(exc))


@click.command(context_settings={"show_default": True})
@click.option("--task", type=click.Choice(TASKS), required=True, help="What to extract.")
@click.option("--schema", "schema_name", required=True,
              help="Bundled schema name (see `deepke-llm schemas`) or path to a schema JSON file.")
@model_options
@click.option("--prompt-style", type=click.Choice(STYLES), default="iepile",
              help="iepile: OneKE/IEPile JSON; knowlm: ZhiXi free text.")
@click.option("--language", type=click.Choice(["en", "zh"]),
              help="Prompt language [default: the document's, else the schema's].")
@click.option("--input", "input_path", type=click.Path(dir_okay=False),
              help='JSONL file of {"id", "text"} lines.')
@click.option("--output", type=click.Path(dir_okay=False), help="Records JSONL [default: stdout].")
@click.option("--batch-size", type=click.IntRange(min=1), default=8,
              help="Prompts per forward pass / concurrent requests.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=512,
              help="Generation limit per prompt.")
@click.option("--split-num", type=click.IntRange(min=1),
              help="Schema types per prompt [default: NER 6, RE/EE 4].")
@click.option("--few-shot", type=click.IntRange(min=0), default=0,
              help="Show N gold examples from --few-shot-file before each prompt.")
@click.option("--few-shot-file", type=click.Path(dir_okay=False),
              help="Records JSONL to take the first N documents with records from.")
@click.option("--resume", is_flag=True, help="Skip ids already in --output (or its .partial).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--keep-punctuation", is_flag=True,
              help="Keep punctuation a model copies at a mention's end ('Syria.'); by default "
                   "a clause/sentence-final mark is left out of the span.")
@click.argument("texts", nargs=-1)
def extract(task, schema_name, prompt_style, language, input_path, output, batch_size,
            max_new_tokens, split_num, few_shot, few_shot_file, resume, no_progress,
            keep_punctuation, texts, **kwargs):
    """Extract entities (ner), relations (re) or events (ee) from TEXTS or --input.

    \b
    Examples:
      deepke-llm extract --task ner --schema conll03 "Japan beat Syria 2-1."   # default model
      deepke-llm extract --task ner --schema conll03 --model ./my-model "Japan beat Syria 2-1."
      deepke-llm extract --task ner --schema conll03 --model default --few-shot 3 \\
          --few-shot-file train.docs.jsonl "Japan beat Syria 2-1."
      deepke-llm extract --task re --schema conll04 --base-url http://127.0.0.1:8000/v1 \\
          --api-model oneke --input docs.jsonl --output relations.jsonl --resume
    """
    from deepke_llm.io import output_lock

    options = pop_model_options(kwargs)
    if not texts and not input_path:
        raise click.UsageError("give TEXT arguments or --input FILE.jsonl")
    if resume and not output:
        raise click.UsageError("--resume needs --output")
    if input_path:
        import os

        if not os.path.isfile(input_path):
            fail(f"input file {input_path} does not exist")
    refuse_same_output(output, [input_path, few_shot_file])
    # taken before the model loads: a busy or unwritable output fails in a second, not a minute
    lock = output_lock(output) if output else None
    try:
        summary = _extract(task, schema_name, options, prompt_style, language, input_path, output,
                           batch_size, max_new_tokens, split_num, few_shot, few_shot_file, resume,
                           no_progress, keep_punctuation, texts)
    finally:
        if lock is not None:
            lock.release()
    click.echo(summary.line(), err=True)
    _exit_for(summary, output)


def _extract(task, schema_name, options, prompt_style, language, input_path, output, batch_size,
             max_new_tokens, split_num, few_shot, few_shot_file, resume, no_progress,
             keep_punctuation, texts):
    from deepke_llm.backends.base import BackendUnavailable, GenerationConfig
    from deepke_llm.batch import extract_file
    from deepke_llm.extractor import Extractor

    schema = _schema_or_fail(schema_name)
    demonstrations = _demonstrations(few_shot, few_shot_file, task)
    try:
        generation = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
        backend = backend_from_options(options, batch_size)
        extractor = Extractor(backend, schema, task, language=language, prompt_style=prompt_style,
                              generation=generation, split_num=split_num,
                              demonstrations=demonstrations,
                              trim_punctuation=not keep_punctuation)
    except (ValueError, OSError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    try:
        return extract_file(extractor, input_path=input_path, texts=texts, output=output,
                            resume=resume, progress=not no_progress)
    except KeyboardInterrupt:
        if output:
            click.echo(f"interrupted: finished documents are in {output}.partial; "
                       "rerun with --resume to continue", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except BackendUnavailable as exc:
        click.echo(f"error: {str(exc).splitlines()[0]}", err=True)
        where = f" in {output}.partial" if output else ""
        fail(f"stopped: the backend is unavailable; finished documents are kept{where}"
             + ("; rerun with --resume when it is back" if output else ""), ExitCode.BACKEND)


def _exit_for(summary, output: str | None) -> None:
    """Exit 3 when documents failed (the output stays .partial), 1 for input errors."""
    if summary.failed:
        where = f"; the output stays {output}.partial: rerun with --resume to redo them" \
            if output else ""
        fail(f"{summary.failed} documents failed in the backend and were not written{where}",
             ExitCode.BACKEND)
    if summary.input_errors:
        sys.exit(ExitCode.INPUT)


def _demonstrations(count: int, path: str | None, task: str) -> list:
    if not count:
        return []
    if not path:
        raise click.UsageError("--few-shot needs --few-shot-file RECORDS.jsonl")
    from deepke_llm.extractor import pick_demonstrations
    from deepke_llm.records import RecordError, read_documents

    try:
        picked = pick_demonstrations(read_documents(path), task, count)
    except (OSError, RecordError) as exc:
        fail(str(exc))
    if len(picked) < count:
        fail(f"{path} has only {len(picked)} documents with {task} records; --few-shot {count} "
             "needs that many")
    return picked


@click.command(context_settings={"show_default": True})
@click.option("--task", type=click.Choice(TASKS), required=True, help="Task the outputs answer.")
@click.option("--schema", "schema_name", required=True, help="Schema name or path.")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help='JSONL of {"id", "text", "output"} (output: string or list), or IEPile test lines.')
@click.option("--output", type=click.Path(dir_okay=False), help="Records JSONL [default: stdout].")
@click.option("--prompt-style", type=click.Choice(STYLES), default="iepile",
              help="Format of the outputs.")
@click.option("--language", type=click.Choice(["en", "zh"]), help="Language of type names.")
@click.option("--keep-punctuation", is_flag=True,
              help="Keep punctuation a model copies at a mention's end ('Syria.'); by default "
                   "a clause/sentence-final mark is left out of the span.")
def parse(task, schema_name, input_path, output, prompt_style, language, keep_punctuation):
    """Turn raw model outputs from any system into grounded records.

    \b
    Example:
      deepke-llm parse --task ner --schema conll03 --input raw.jsonl --output records.jsonl
    """
    import os

    from deepke_llm.batch import parse_file

    if not os.path.isfile(input_path):
        fail(f"input file {input_path} does not exist")
    refuse_same_output(output, [input_path])
    schema = _schema_or_fail(schema_name)
    summary = parse_file(input_path, task, schema, output=output, prompt_style=prompt_style,
                         language=language, trim_punctuation=not keep_punctuation)
    click.echo(summary.line(), err=True)
    _exit_for(summary, output)


@click.command()
@click.argument("name", required=False)
def schemas(name):
    """List bundled schemas, or print one as JSON.

    \b
    Example:
      deepke-llm schemas conll04
    """
    from deepke_llm.schema import bundled_schemas

    if name is None:
        for item in bundled_schemas():
            schema = _schema_or_fail(item)
            counts = [f"{len(v)} {k}" for k, v in (("entity types", schema.entity_types),
                                                    ("relation types", schema.relation_types),
                                                    ("event types", schema.event_types)) if v]
            click.echo(f"{item:15s} {schema.language}  {', '.join(counts)}")
        return
    click.echo(json.dumps(_schema_or_fail(name).to_dict(), ensure_ascii=False, indent=1))
