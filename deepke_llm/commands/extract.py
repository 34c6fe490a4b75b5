"""``deepke-llm extract``: options -> :class:`~deepke_llm.batch.ExtractConfig` + a backend ->
:func:`~deepke_llm.batch.run_extract`."""

from __future__ import annotations

import os
import sys

import click

from deepke_llm.commands.common import (
    ExitCode,
    exit_for,
    fail,
    load_schema_or_fail,
    refuse_same_output,
)
from deepke_llm.commands.options import (
    backend_from_options,
    constrained_option,
    keep_punctuation_option,
    language_option,
    model_options,
    output_option,
    pop_model_options,
    progress_option,
    prompt_style_option,
    resume_option,
    show_progress,
    task_option,
)


@click.command(context_settings={"show_default": True})
@task_option(required=True)
@click.option("--schema", "schema_name", required=True,
              help="Bundled schema name (see `deepke-llm schemas`) or path to a schema JSON file.")
@model_options
@prompt_style_option()
@language_option("Prompt language [default: the document's, else the schema's].")
@click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False),
              help='JSONL file of {"id", "text"} lines.')
@output_option()
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
@resume_option()
@progress_option()
@keep_punctuation_option()
@constrained_option()
@click.argument("texts", nargs=-1)
def extract(task, schema_name, prompt_style, language, input_path, output, batch_size,
            max_new_tokens, split_num, few_shot, few_shot_file, resume, progress,
            keep_punctuation, constrained, texts, **kwargs):
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
    from deepke_llm.backends.base import BackendUnavailable
    from deepke_llm.batch import ExtractConfig, run_extract
    from deepke_llm.io import output_lock

    if not texts and not input_path:
        raise click.UsageError("give TEXT arguments or --input FILE.jsonl")
    if resume and not output:
        raise click.UsageError("--resume needs --output")
    if few_shot and not few_shot_file:
        raise click.UsageError("--few-shot needs --few-shot-file RECORDS.jsonl")
    for path in (input_path, few_shot_file):
        if path and not os.path.isfile(path):
            fail(f"input file {path} does not exist")
    refuse_same_output(output, [input_path, few_shot_file])
    config = ExtractConfig(task=task, schema=load_schema_or_fail(schema_name),
                           prompt_style=prompt_style, language=language, batch_size=batch_size,
                           max_new_tokens=max_new_tokens, split_num=split_num, few_shot=few_shot,
                           few_shot_file=few_shot_file, keep_punctuation=keep_punctuation,
                           constrained=constrained, input=input_path, output=output, resume=resume,
                           progress=show_progress(progress))
    # taken before the model loads: a busy or unwritable output fails in a second, not a minute
    lock = output_lock(output) if output else None
    try:
        try:
            backend = backend_from_options(pop_model_options(kwargs), batch_size)
            summary = run_extract(config, backend, texts)
        except ValueError as exc:  # a model that does not load, a bad few-shot file
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            if output:
                click.echo(f"interrupted: finished documents are in {output}.partial; "
                           "rerun with --resume to continue", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except BackendUnavailable as exc:
            click.echo(f"error: {str(exc).splitlines()[0]}", err=True)
            where = f" in {output}.partial; rerun with --resume when it is back" if output else ""
            fail(f"stopped: the backend is unavailable; finished documents are kept{where}",
                 ExitCode.BACKEND)
    finally:
        if lock is not None:
            lock.release()
    click.echo(summary.line(), err=True)
    exit_for(summary, output)
