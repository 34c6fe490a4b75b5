"""``deepke-llm evaluate``: a benchmark end to end (extract, score, report) through
:func:`~deepke_llm.evaluation.runner.run_benchmark`."""

from __future__ import annotations

import os
import sys

import click

from deepke_llm.commands.common import ExitCode, fail
from deepke_llm.commands.options import (
    backend_from_options,
    language_option,
    model_options,
    pop_model_options,
    progress_option,
    prompt_style_option,
    show_progress,
)
from deepke_llm.commands.score import MODES, print_tables, warn
from deepke_llm.evaluation.runner import DEFAULT_OUTPUT_DIR


@click.command(context_settings={"show_default": True})
@click.argument("benchmark")
@model_options
@click.option("--model-name", help="Name used in result file names [default: from --model/--api-model].")
@click.option("--split", help="Dataset split [default: the benchmark's, usually test].")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N documents.")
@click.option("-o", "--output", "--output-dir", "output_dir", default=DEFAULT_OUTPUT_DIR,
              type=click.Path(file_okay=False),
              help="Results go to OUTPUT/BENCHMARK/ (runs to publish in the README: "
              "benchmarks/results).")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Root of dataset paths [default: $DEEPKE_DATA, else ../shared/data].")
@prompt_style_option(help="Prompt style.")
@language_option("Prompt language [default: the benchmark's].")
@click.option("--batch-size", type=click.IntRange(min=1), default=8,
              help="Prompts per forward pass / concurrent requests.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=512,
              help="Generation limit per prompt.")
@click.option("--split-num", type=click.IntRange(min=1), help="Schema types per prompt.")
@click.option("--mode", "modes", type=click.Choice(MODES[:3]), multiple=True,
              help="Scoring mode (repeatable) [default: the benchmark's].")
@click.option("--shuffle-runs", type=click.IntRange(min=0), default=0,
              help="Repeat with N shuffled schema orders and report F1 mean ± std.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000,
              help="Bootstrap samples for the 95% CI of F1 (0 = none).")
@click.option("--seed", type=int, default=0, help="Seed of the bootstrap and the error sample.")
@click.option("--few-shot", type=click.IntRange(min=0), default=0,
              help="Gold demonstrations shown before each prompt (from the train or dev split).")
@click.option("--few-shot-split", help="Split the demonstrations come from [default: train, else dev].")
@click.option("--resume", is_flag=True, help="Continue this model's interrupted run.")
@progress_option()
def evaluate(benchmark, model_name, split, limit, output_dir, data_dir, prompt_style, language,
             batch_size, max_new_tokens, split_num, modes, shuffle_runs, bootstrap, seed, few_shot,
             few_shot_split, resume, progress, **kwargs):
    """Run BENCHMARK (a bundled name or a definition JSON file) end to end: extract, score, report.

    Bundled: conll03, conll04, ace05 (+ ace05_re, ace05_ner), duee, duie, peoples_daily, msra,
    fewrel. Writes OUTPUT_DIR/BENCHMARK/MODEL-DATE.{json,md,png} plus the gold and predicted
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
    from deepke_llm.evaluation.definitions import BenchmarkError, load_benchmark
    from deepke_llm.evaluation.runner import BackendFailures, EvaluationConfig, run_benchmark
    from deepke_llm.schema import SchemaError

    try:
        definition = load_benchmark(benchmark)
        config = EvaluationConfig(
            benchmark=benchmark, split=split, limit=limit, output_dir=output_dir,
            data_dir=data_dir, prompt_style=prompt_style, language=language,
            batch_size=batch_size, max_new_tokens=max_new_tokens, split_num=split_num,
            modes=tuple(modes) or None, shuffle_runs=shuffle_runs, bootstrap=bootstrap, seed=seed,
            few_shot=few_shot, few_shot_split=few_shot_split, resume=resume,
            progress=show_progress(progress))
        from deepke_llm.evaluation.definitions import resolve_data_path

        resolve_data_path(definition, split or definition.default_split, data_dir)  # fail early
        options = pop_model_options(kwargs)
        backend = backend_from_options(options, batch_size)
        model, lora, api_model = options["model"], options["lora"], options["api_model"]
        name = model_name or api_model or model or "deepke-default"
        if model == "default" and not model_name:
            name = "gemma-3-270m"  # the default base alone
        if lora and not model_name:
            name = f"{name}+{os.path.basename(os.path.normpath(lora))}"
        if few_shot and not model_name:
            name = f"{name}-{few_shot}shot"
        result = run_benchmark(config, backend, name)
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
