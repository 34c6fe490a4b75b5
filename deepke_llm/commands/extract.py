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
@click.option("-i", "--input", "input_path", type=click.Path(),
              help='JSONL file of {"id", "text"} lines (with --ray: a folder or glob of '
                   '.jsonl/.parquet shards).')
# not output_option(): its path type is a file or a folder, and with --ray this is a folder
@click.option("-o", "--output", "output", type=click.Path(),
              help="Records JSONL [default: stdout] (with --ray: a folder, one output shard per "
                   "input shard + _manifest.json).")
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
@click.option("--ray", "use_ray", is_flag=True,
              help="Extract input shards on a Ray actor pool, each actor loading its engine "
                   "once (pip install 'deepke-llm[ray]'); --resume skips finished shards.")
@click.option("--ray-address", help="Ray cluster to join (auto, ray://HOST:10001) [default: "
              "$RAY_ADDRESS, else a local cluster].")
@click.option("--ray-actors", type=click.IntRange(min=1), default=1,
              help="Actors (engines) with --ray; with a local engine give --threads too, so "
                   "actors x threads fit the cores (each actor reserves --threads CPUs).")
@click.argument("texts", nargs=-1)
def extract(task, schema_name, prompt_style, language, input_path, output, batch_size,
            max_new_tokens, split_num, few_shot, few_shot_file, resume, progress,
            keep_punctuation, constrained, use_ray, ray_address, ray_actors, texts, **kwargs):
    """Extract entities (ner), relations (re) or events (ee) from TEXTS or --input.

    \b
    Examples:
      deepke-llm extract --task ner --schema conll03 "Japan beat Syria 2-1."   # default model
      deepke-llm extract --task ner --schema conll03 --model ./my-model "Japan beat Syria 2-1."
      deepke-llm extract --task ner --schema conll03 --model default --few-shot 3 \\
          --few-shot-file train.docs.jsonl "Japan beat Syria 2-1."
      deepke-llm extract --task re --schema conll04 --base-url http://127.0.0.1:8000/v1 \\
          --api-model oneke --input docs.jsonl --output relations.jsonl --resume
      deepke-llm extract --task ner --schema conll03 --ray --ray-actors 2 --threads 1 \\
          --input 'shards/*.jsonl' --output out/ --resume
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
    if use_ray:
        _extract_on_ray(kwargs, input_path, output, ray_address, ray_actors, texts, progress,
                        ExtractConfig(task=task, schema=load_schema_or_fail(schema_name),
                                      prompt_style=prompt_style, language=language,
                                      batch_size=batch_size, max_new_tokens=max_new_tokens,
                                      split_num=split_num, few_shot=few_shot,
                                      few_shot_file=few_shot_file,
                                      keep_punctuation=keep_punctuation,
                                      constrained=constrained), resume)
        return
    if ray_address or ray_actors != 1:
        raise click.UsageError("--ray-address and --ray-actors need --ray")
    for path in (input_path, few_shot_file):
        if path and not os.path.isfile(path):
            if os.path.isdir(path):
                raise click.UsageError(f"{path} is a folder: give a JSONL file (or shards "
                                       "with --ray)")
            fail(f"input file {path} does not exist")
    if output and os.path.isdir(output):
        raise click.UsageError(f"--output {output} is a folder: give a file (or use --ray)")
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


def _extract_on_ray(model_kwargs: dict, input_path: str, output: str | None,
                    address: str | None, actors: int, texts: tuple, progress: bool | None,
                    config, resume: bool) -> None:
    """``extract --ray``: shards of --input -> shards in the --output folder, on Ray actors."""
    from deepke_llm.distributed import ShardError, extract_shards, require_ray
    from deepke_llm.io import OutputBusy

    if texts or not input_path or not output:
        raise click.UsageError("--ray needs --input SHARDS (folder or glob) and --output FOLDER, "
                               "no TEXT arguments")
    if os.path.isfile(output):
        raise click.UsageError(f"--output {output} is a file: with --ray give a folder")
    if config.few_shot_file and not os.path.isfile(config.few_shot_file):
        fail(f"input file {config.few_shot_file} does not exist")
    require_ray()  # a missing extra is one line naming the pip install (exit 2)
    try:
        summary = extract_shards(config, pop_model_options(model_kwargs), input_path, output,
                                 actors=actors, address=address, resume=resume,
                                 progress=show_progress(progress))
    except OutputBusy as exc:
        fail(str(exc), ExitCode.USAGE)
    except ShardError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished shards are listed in {output}/_manifest.json; rerun "
                   "with --resume to continue", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    click.echo(summary.line(), err=True)
    if summary.shards_unfinished:
        fail(f"{len(summary.shards_unfinished)} shards not finished (their documents so far are "
             f"kept as .partial); rerun with --resume to redo them", ExitCode.BACKEND)
    exit_for(summary, output)
