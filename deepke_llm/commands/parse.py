"""``deepke-llm parse``: raw outputs of any system -> grounded records
(:func:`~deepke_llm.batch.parse_file`)."""

from __future__ import annotations

import os

import click

from deepke_llm.commands.common import exit_for, fail, load_schema_or_fail, refuse_same_output
from deepke_llm.commands.options import (
    keep_punctuation_option,
    language_option,
    output_option,
    prompt_style_option,
    task_option,
)


@click.command(context_settings={"show_default": True})
@task_option(help="Task the outputs answer.", required=True)
@click.option("--schema", "schema_name", required=True, help="Schema name or path.")
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help='JSONL of {"id", "text", "output"} (output: string or list), or IEPile test lines.')
@output_option()
@prompt_style_option(help="Format of the outputs.")
@language_option("Language of type names [default: the document's, else the schema's].")
@keep_punctuation_option()
def parse(task, schema_name, input_path, output, prompt_style, language, keep_punctuation):
    """Turn raw model outputs from any system into grounded records.

    \b
    Example:
      deepke-llm parse --task ner --schema conll03 --input raw.jsonl --output records.jsonl
    """
    from deepke_llm.batch import parse_file

    if not os.path.isfile(input_path):
        fail(f"input file {input_path} does not exist")
    refuse_same_output(output, [input_path])
    schema = load_schema_or_fail(schema_name)
    summary = parse_file(input_path, task, schema, output=output, prompt_style=prompt_style,
                         language=language, trim_punctuation=not keep_punctuation)
    click.echo(summary.line(), err=True)
    exit_for(summary, output)
