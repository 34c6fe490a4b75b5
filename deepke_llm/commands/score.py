"""``deepke-llm score``: predicted records (or an IEPile file with outputs) against gold, no
model needed; also the table printing ``evaluate`` shares."""

from __future__ import annotations

import json
import os
import sys

import click

from deepke_llm.commands.common import ExitCode, fail
from deepke_llm.commands.options import task_option

MODES = ["strict", "boundary", "string", "all"]


def print_tables(score, iepile: dict | None = None) -> None:
    from deepke_llm.evaluation.report import overall_rows, text_table, type_column

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


def warn(diagnostics) -> None:
    for line in diagnostics.lines():
        click.echo(f"warning: {line}", err=True)


@click.command(context_settings={"show_default": True})
@task_option(required=True, help="Which records to score.")
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
        from deepke_llm.evaluation.iepile_eval import score_iepile

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
    warn(result.diagnostics)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print_tables(result, result.extra.get("iepile"))
    if result.diagnostics.counts.get("unreadable_line"):
        sys.exit(ExitCode.INPUT)  # lines that are not records: scored without them, exit 1


def _score_records(task: str, gold: str, pred: str, mode: str, schema_name: str | None):
    from deepke_llm.evaluation.diagnostics import Diagnostics
    from deepke_llm.evaluation.scoring import score_documents
    from deepke_llm.evaluation.spans import MODES as ALL_MODES
    from deepke_llm.records import read_documents
    from deepke_llm.schema import SchemaError, load_schema

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
    diagnostics = Diagnostics()  # unreadable lines are counted as such (``append``)
    gold_docs = list(read_documents(gold, diagnostics))
    if not gold_docs:
        problems = diagnostics.examples.get("unreadable_line")
        fail(f"{gold}: no readable documents" + (f" ({problems[0]})" if problems else ""))
    pred_docs = list(read_documents(pred, diagnostics))
    modes = ALL_MODES if mode == "all" else (mode,)
    return score_documents(task, gold_docs, pred_docs, modes, schema=schema, gold_name=gold,
                           pred_name=pred, diagnostics=diagnostics)
