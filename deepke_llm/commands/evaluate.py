"""``deepke-llm evaluate``: a benchmark end to end (extract, score, report) through
:func:`~deepke_llm.evaluation.runner.run_benchmark`."""

from __future__ import annotations

import os
import sys

import click

from deepke_llm.commands.common import ExitCode, fail
from deepke_llm.commands.options import (
    backend_from_options,
    constrained_option,
    language_option,
    model_options,
    pop_model_options,
    progress_option,
    prompt_style_option,
    show_progress,
)
from deepke_llm.commands.score import MODES, print_tables, warn
from deepke_llm.config import field_help
from deepke_llm.evaluation.runner import DEFAULT_OUTPUT_DIR, EvaluationConfig


def _help(name: str) -> str:
    """An option's help: the EvaluationConfig field's own (one text for library and CLI)."""
    return field_help(EvaluationConfig, name)


@click.command(context_settings={"show_default": True})
@click.argument("benchmark")
@model_options
@click.option("--model-name", help="Name used in result file names [default: from --model/--api-model].")
@click.option("--split", help=_help("split"))
@click.option("--limit", type=click.IntRange(min=1), help=_help("limit"))
@click.option("-o", "--output", "--output-dir", "output_dir", default=DEFAULT_OUTPUT_DIR,
              type=click.Path(file_okay=False), help=_help("output_dir"))
@click.option("--data-dir", type=click.Path(file_okay=False), help=_help("data_dir"))
@prompt_style_option(help=_help("prompt_style"))
@language_option(_help("language"))
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help=_help("batch_size"))
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=512,
              help=_help("max_new_tokens"))
@click.option("--split-num", type=click.IntRange(min=1), help=_help("split_num"))
@click.option("--mode", "modes", type=click.Choice(MODES[:3]), multiple=True, help=_help("modes"))
@click.option("--shuffle-runs", type=click.IntRange(min=0), default=0, help=_help("shuffle_runs"))
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, help=_help("bootstrap"))
@click.option("--seed", type=int, default=0, help=_help("seed"))
@click.option("--few-shot", type=click.IntRange(min=0), default=0, help=_help("few_shot"))
@click.option("--few-shot-split", help=_help("few_shot_split"))
@click.option("--resume", is_flag=True, help=_help("resume"))
@constrained_option()
@progress_option()
def evaluate(benchmark, model_name, split, limit, output_dir, data_dir, prompt_style, language,
             batch_size, max_new_tokens, split_num, modes, shuffle_runs, bootstrap, seed, few_shot,
             few_shot_split, resume, constrained, progress, **kwargs):
    """Run BENCHMARK (a bundled name or a definition JSON file) end to end: extract, score, report.

    Bundled: conll03, conll04, ace05 (+ ace05_re, ace05_ner), duee, duie, fewfc_base,
    fewfc_trans, phee, finre, peoples_daily, msra, fewrel. Writes OUTPUT_DIR/BENCHMARK/MODEL-DATE.{json,md,png} plus the gold and predicted
    records (.gold.jsonl, .pred.jsonl) that `deepke-llm score` re-scores. OUTPUT_DIR is
    runs/evaluate unless given; the README's results table only shows runs committed under
    benchmarks/results (publish with --output-dir benchmarks/results).

    \b
    Without --model or --base-url the default model (with its IE adapter) is evaluated;
    `--model default` is its base alone (use --few-shot N for a baseline).

    \b
    Examples:
      deepke-llm evaluate conll03 --limit 200
      deepke-llm evaluate conll03 --model default --few-shot 3
      deepke-llm evaluate conll03 --model ./oneke --limit 200
      deepke-llm evaluate conll04 --base-url http://127.0.0.1:8000/v1 --api-model oneke \\
          --shuffle-runs 3 --data-dir ~/data
    """
    from deepke_llm.evaluation.definitions import BenchmarkError
    from deepke_llm.evaluation.runner import BackendFailures, run_benchmark
    from deepke_llm.schema import SchemaError

    options = pop_model_options(kwargs)
    try:
        config = EvaluationConfig(
            benchmark=benchmark, split=split, limit=limit, output_dir=output_dir,
            data_dir=data_dir, prompt_style=prompt_style, language=language,
            batch_size=batch_size, max_new_tokens=max_new_tokens, split_num=split_num,
            modes=tuple(modes) or None, shuffle_runs=shuffle_runs, bootstrap=bootstrap, seed=seed,
            few_shot=few_shot, few_shot_split=few_shot_split, resume=resume,
            constrained=constrained, progress=show_progress(progress))
        _check_data(config)
        backend = backend_from_options(options, batch_size)
        result = run_benchmark(config, backend, _model_name(options, model_name, few_shot))
    except BackendFailures as exc:
        fail(str(exc), ExitCode.BACKEND)
    except (BenchmarkError, SchemaError, ValueError, OSError) as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        click.echo("interrupted: finished documents are kept; rerun with --resume to continue",
                   err=True)
        sys.exit(130)
    warn(result.score.diagnostics)
    print_tables(result.score)
    click.echo("\n" + "\n".join(f"wrote {path}" for path in result.paths.values()))


def _check_data(config: EvaluationConfig) -> None:
    """Fail before loading a model when the benchmark or its data file cannot be found."""
    from deepke_llm.evaluation.definitions import load_benchmark, resolve_data_path

    definition = load_benchmark(config.benchmark)
    resolve_data_path(definition, config.split or definition.default_split, config.data_dir)


def _model_name(options: dict, given: str | None, few_shot: int) -> str:
    """The model's name in result files: ``--model-name``, else from the model options (the
    adapter and the few-shot count appended)."""
    if given:
        return given
    model, lora, api_model = options["model"], options["lora"], options["api_model"]
    name = api_model or model or "deepke-default"
    if model == "default":
        name = "gemma-3-270m"  # the default base alone
    if lora:
        name = f"{name}+{os.path.basename(os.path.normpath(lora))}"
    if few_shot:
        name = f"{name}-{few_shot}shot"
    return name
