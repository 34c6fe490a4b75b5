"""``deepke-llm score`` and ``deepke-llm evaluate``: thin click wrappers over the evaluation library."""

from __future__ import annotations

import json
import os
import sys

import click

from deepke_llm.commands.common import ExitCode, fail
from deepke_llm.commands.model_options import backend_from_options, model_options, pop_model_options

from .runner import DEFAULT_OUTPUT_DIR

TASKS = ["ner", "re", "ee"]
MODES = ["strict", "boundary", "string", "all"]


def _print_tables(score, iepile: dict | None = None) -> None:
    from .report import overall_rows, text_table, type_column

    headers, rows = overall_rows(score)
    click.echo(f"{score.task}: {score.documents} documents (micro P/R/F1 in percent)")
    click.echo(text_table(headers, rows))
    for mode, scores in score.modes.items():
        for level, level_score in scores.items():
            if level_score.type_index is None or not level_score.per_type:
                continue
            title = mode if level is None else f"{mode} {level.replace('_', ' ')}"
            rows = [[name, f"{c.precision * 100:.2f}", f"{c.recall * 100:.2f}",
                     f"{c.f1 * 100:.2f}", str(c.tp), str(c.fp), str(c.fn)]
                    for name, c in sorted(level_score.per_type.items())]
            click.echo(f"\nper type ({title})")
            click.echo(text_table([type_column(score.task, level), "P", "R", "F1", "TP", "FP", "FN"],
                                  rows))
    if iepile:
        shown = ", ".join(f"{k}={v}" for k, v in iepile.items())
        click.echo(f"\nIEPile evaluator numbers (rounded as IEPile rounds): {shown}")


def _warn(diagnostics) -> None:
    for line in diagnostics.lines():
        click.echo(f"warning: {line}", err=True)


@click.command(context_settings={"show_default": True})
@click.option("--task", type=click.Choice(TASKS), required=True, help="Which records to score.")
@click.option("--gold", type=click.Path(dir_okay=False), help="Gold records JSONL.")
@click.option("--pred", type=click.Path(dir_okay=False), help="Predicted records JSONL.")
@click.option("--format", "file_format", type=click.Choice(["records", "iepile"]),
              default="records", help="records: --gold/--pred files; iepile: one IEPile test file "
              "with label and output (--input).")
@click.option("--input", "input_path", type=click.Path(dir_okay=False),
              help="IEPile-format file (with --format iepile).")
@click.option("--mode", type=click.Choice(MODES), default="all", help="Scoring mode(s).")
@click.option("--match", type=click.Choice(["normal", "set"]),
              help="IEPile matching: normal = multisets (a duplicated prediction is a false "
              "positive), set = de-duplicated [default: normal]. Record files always use sets.")
@click.option("--schema", "schema_name", help="Schema name or path: report types it does not know.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
def score(task, gold, pred, file_format, input_path, mode, match, schema_name, as_json):
    """Score predicted records against gold records (no model needed).

    Problems in the input (missing or extra ids, offsets that do not fit the text, unknown
    types, unparseable outputs) are counted and reported on stderr as warnings.

    \b
    Examples:
      deepke-llm score --task ner --gold gold.jsonl --pred pred.jsonl
      deepke-llm score --task re --gold gold.jsonl --pred pred.jsonl --mode boundary --json
      deepke-llm score --task ee --format iepile --input test_with_outputs.json --match set
    """
    if file_format == "iepile":
        if not input_path or gold or pred:
            raise click.UsageError("--format iepile takes --input FILE (not --gold/--pred)")
        if mode not in ("all", "string"):
            raise click.UsageError("IEPile files carry no offsets: only --mode string applies")
        if not os.path.isfile(input_path):
            fail(f"input file {input_path} does not exist")
        from .iepile_eval import score_iepile

        result = score_iepile(input_path, task, match or "normal")
        if not result.documents:
            fail(f"{input_path}: no scorable IEPile lines ({'; '.join(result.diagnostics.lines())})")
    else:
        if not gold or not pred or input_path:
            raise click.UsageError("give --gold FILE and --pred FILE (or --format iepile --input FILE)")
        if match:
            raise click.UsageError("--match applies to --format iepile; record files are scored "
                                   "as per-document sets")
        result = _score_records(task, gold, pred, mode, schema_name)
    _warn(result.diagnostics)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        _print_tables(result, result.extra.get("iepile"))
    if result.diagnostics.counts.get("unreadable_line"):
        sys.exit(ExitCode.INPUT)  # lines that are not records: scored without them, exit 1


def _score_records(task: str, gold: str, pred: str, mode: str, schema_name: str | None):
    from deepke_llm.records import read_documents
    from deepke_llm.schema import SchemaError, load_schema

    from .diagnostics import Diagnostics
    from .scoring import score_documents
    from .spans import MODES as ALL_MODES

    for path in (gold, pred):
        if not os.path.isfile(path):
            fail(f"file {path} does not exist")
    schema = None
    if schema_name:
        try:
            schema = load_schema(schema_name)
            schema.types_for(task)
        except SchemaError as exc:
            fail(str(exc))
    diagnostics = Diagnostics()
    problems: list[str] = []
    gold_docs = list(read_documents(gold, problems))
    if not gold_docs:
        fail(f"{gold}: no readable documents" + (f" ({problems[0]})" if problems else ""))
    pred_docs = list(read_documents(pred, problems))
    for message in problems:
        diagnostics.add("unreadable_line", message)
    modes = ALL_MODES if mode == "all" else (mode,)
    return score_documents(task, gold_docs, pred_docs, modes, schema=schema, gold_name=gold,
                           pred_name=pred, diagnostics=diagnostics)


@click.command(context_settings={"show_default": True})
@click.argument("benchmark")
@model_options
@click.option("--model-name", help="Name used in result file names [default: from --model/--api-model].")
@click.option("--split", help="Dataset split [default: the benchmark's, usually test].")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N documents.")
@click.option("--output-dir", default=DEFAULT_OUTPUT_DIR, type=click.Path(file_okay=False),
              help="Results go to OUTPUT_DIR/BENCHMARK/ (runs to publish in the README: "
              "benchmarks/results).")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Root of dataset paths [default: $DEEPKE_DATA, else ../shared/data].")
@click.option("--prompt-style", type=click.Choice(["iepile", "knowlm"]), default="iepile",
              help="Prompt style.")
@click.option("--language", type=click.Choice(["en", "zh"]),
              help="Prompt language [default: the benchmark's].")
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
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def evaluate(benchmark, model_name, split, limit, output_dir, data_dir, prompt_style, language,
             batch_size, max_new_tokens, split_num, modes, shuffle_runs, bootstrap, seed, few_shot,
             few_shot_split, resume, no_progress, **kwargs):
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
    from deepke_llm.schema import SchemaError

    from .definitions import BenchmarkError, load_benchmark
    from .runner import BackendFailures, EvaluationConfig, run_benchmark

    try:
        definition = load_benchmark(benchmark)
        config = EvaluationConfig(
            benchmark=benchmark, split=split, limit=limit, output_dir=output_dir,
            data_dir=data_dir, prompt_style=prompt_style, language=language,
            batch_size=batch_size, max_new_tokens=max_new_tokens, split_num=split_num,
            modes=tuple(modes) or None, shuffle_runs=shuffle_runs, bootstrap=bootstrap, seed=seed,
            few_shot=few_shot, few_shot_split=few_shot_split, resume=resume,
            progress=not no_progress)
        from .definitions import resolve_data_path

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
    _warn(result.score.diagnostics)
    _print_tables(result.score)
    click.echo("\n" + "\n".join(f"wrote {path}" for path in result.paths.values()))
