"""``deepke-llm convert``: a dataset file -> records JSONL (one Document per line)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from itertools import chain, islice

import click

from deepke_llm.commands.common import ExitCode, fail, refuse_same_output
from deepke_llm.commands.options import output_option
from deepke_llm.datasets import READERS, DatasetError, read_dataset
from deepke_llm.io import Problems, print_errors, write_jsonl_atomic
from deepke_llm.records import Document
from deepke_llm.schema import SchemaError


class _Counts:
    """Counts documents and their records as they stream past."""

    def __init__(self) -> None:
        self.documents = self.entities = self.relations = self.events = 0

    def through(self, documents: Iterable[Document]) -> Iterator[Document]:
        for document in documents:
            self.documents += 1
            self.entities += len(document.entities)
            self.relations += len(document.relations)
            self.events += len(document.events)
            yield document


@click.command(name="convert")
@click.option("--format", "format_", required=True, type=click.Choice(sorted(READERS)),
              help="Input format: conll03 (CoNLL-2003 columns), spert (CoNLL04), oneie "
                   "(OneIE/TextEE ACE05), duee, duie, bio (character BIO), bmes (character "
                   "BMES, e.g. MSRA train), fewrel, fewfc (FewFC events), phee (PHEE events, "
                   "flat roles), finre (FinRE relations, one record per sentence).")
@click.option("-i", "--input", "input_path", required=True, metavar="PATH", help="Dataset file.")
@output_option(required=True, help="Records file to write (DOCS.jsonl, replaced atomically).")
@click.option("--schema", default=None, metavar="NAME|PATH",
              help="Map dataset labels to this schema's type names (default: keep raw labels).")
@click.option("--split", default=None, help="Split name for ids: {schema}-{split}-{n}.")
@click.option("--id-prefix", default=None, help="Id prefix (default: from --split or file name).")
@click.option("--unit", type=click.Choice(["sentence", "document"]), default=None,
              help="conll03/bio/bmes: one record per sentence (default) or per -DOCSTART- document.")
@click.option("--qualifiers", type=click.Choice(["auto", "relations", "drop"]), default=None,
              help="duie: complex-object qualifiers as extra '<predicate>_<slot>' relations: "
                   "auto (default: unless --schema lacks that label), relations, drop.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Stop after N documents.")
def convert(format_: str, input_path: str, output: str, schema: str | None, split: str | None,
            id_prefix: str | None, unit: str | None, qualifiers: str | None,
            limit: int | None) -> None:
    """Convert a dataset file into records JSONL with character offsets.

    Bad records are reported on stderr as FILE:LINE: problem, counted, and skipped; the
    summary line (documents, entities, relations, events, errors) goes to stderr.

    \b
    Example:
      deepke-llm convert --format conll03 --input eng.testb --schema conll03 \\
          --split test --output conll03-test.jsonl
    """
    refuse_same_output(output, [input_path, schema])
    opts = {k: v for k, v in (("unit", unit), ("qualifiers", qualifiers), ("id_prefix", id_prefix))
            if v is not None}
    errors = Problems(print_errors(show=50))
    counts = _Counts()
    try:
        documents = read_dataset(format_, input_path, schema, split, errors=errors, **opts)
        if limit is not None:
            documents = islice(documents, limit)
        first = next(documents, None)
        # an input that yields only errors must not replace an earlier good output
        if first is None and errors:
            fail(f"no document could be read from {input_path}; {output} not written")
        head = [first] if first is not None else []
        write_jsonl_atomic(output, counts.through(chain(head, documents)))
    except (DatasetError, SchemaError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or output}: {exc.strerror or exc}")
    click.echo(f"convert: {counts.documents} documents, {counts.entities} entities, "
               f"{counts.relations} relations, {counts.events} events, {len(errors)} errors "
               f"-> {output}", err=True)
    if errors:
        sys.exit(ExitCode.INPUT)
