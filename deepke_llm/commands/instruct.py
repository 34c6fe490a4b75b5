"""``deepke-llm instruct``: records + schema -> IEPile instruction lines (train or test)."""

from __future__ import annotations

import sys

import click

from deepke_llm.commands.common import ExitCode, fail, refuse_same_output
from deepke_llm.commands.options import prompt_style_option, task_option


@click.command(context_settings={"show_default": True})
@click.option("--schema", "schema_name", required=True, help="Schema name or path.")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="Records JSONL (e.g. from `deepke-llm convert`).")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="Instruction JSONL.")
@task_option("Tasks to write (repeatable) [default: every task the schema defines].",
             multiple=True)
@click.option("--split", type=click.Choice(["train", "test"]), default="train",
              help="train: lines with output; test: lines with label.")
@click.option("--split-num", type=int, help="Schema types per instruction [default: NER 6, RE/EE 4].")
@click.option("--neg-ratio", type=float, default=1.0,
              help="Chance that each absent type is asked too (1 = whole schema).")
@click.option("--seed", type=int, default=42, help="Seed of negative sampling and shuffling.")
@click.option("--shuffle-schema", is_flag=True, help="Shuffle type order inside each instruction.")
@click.option("--hard-negatives", is_flag=True,
              help="Relation hard negatives (train only): self-relations left out, typed absent "
                   "relations always asked, a twin with head and tail names swapped.")
@click.option("--language", type=click.Choice(["en", "zh"]),
              help="Instruction language [default: each document's, else the schema's].")
@prompt_style_option()
@click.option("--source", help="Value of the 'source' field [default: schema name].")
@click.option("--limit", type=int, help="Use only the first N documents.")
def instruct(schema_name, input_path, output, task, split, split_num, neg_ratio, seed,
             shuffle_schema, hard_negatives, language, prompt_style, source, limit):
    """Turn records + schema into IEPile-format instruction data.

    \b
    Example:
      deepke-llm convert --format conll03 --input eng.train --output train.docs.jsonl --schema conll03
      deepke-llm instruct --schema conll03 --input train.docs.jsonl --output train.iepile.jsonl
    """
    import itertools
    import os

    from deepke_llm.instructions import documents_to_instructions
    from deepke_llm.io import write_jsonl_atomic
    from deepke_llm.problems import Problems, print_errors
    from deepke_llm.records import read_documents
    from deepke_llm.schema import SchemaError, load_schema

    if not os.path.isfile(input_path):
        fail(f"input file {input_path} does not exist")
    refuse_same_output(output, [input_path, schema_name])
    try:
        schema = load_schema(schema_name)
    except SchemaError as exc:
        fail(str(exc))
    errors = Problems(print_errors(show=50))
    documents = read_documents(input_path, errors)
    if limit is not None:
        documents = itertools.islice(documents, limit)
    try:
        lines = documents_to_instructions(documents, schema, list(task) or None, split=split,
                                          language=language, split_num=split_num,
                                          neg_ratio=neg_ratio, seed=seed,
                                          shuffle_schema=shuffle_schema,
                                          prompt_style=prompt_style, source=source,
                                          on_error=errors.append,
                                          hard_negatives=hard_negatives)
        count = write_jsonl_atomic(output, lines)
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"instructions: {count}, input errors: {errors.count} -> {output}", err=True)
    if errors.count:
        sys.exit(ExitCode.INPUT)
