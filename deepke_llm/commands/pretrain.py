"""``deepke-llm pretrain prepare|merge|inspect|run``: thin click wrappers over the library
(:mod:`deepke_llm.training.pretrain`). Summaries go to stderr, one line per command (prepare and
merge add a line per source); ``inspect`` prints what it was asked for on stdout."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

import click

from deepke_llm.commands.common import fail, refuse_same_output
from deepke_llm.commands.options import output_option, progress_option, show_progress
from deepke_llm.config import field_help
from deepke_llm.training.pretrain.prepare import PrepareOptions

_PREPARE_FIELDS = {f.name: f for f in fields(PrepareOptions)}


def _help(name: str) -> str:
    """An option's help: the PrepareOptions field's own (one text for library and CLI)."""
    return field_help(PrepareOptions, name)


def _default(name: str) -> Any:
    return _PREPARE_FIELDS[name].default


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def pretrain() -> None:
    """Prepare a pretraining corpus (indexed dataset) and pretrain on it.

    \b
    Example:
      deepke-llm pretrain prepare -i wiki=wiki.jsonl -i news.txt -t ./llama -o data/corpus --workers 8
      deepke-llm pretrain run --config training/pretrain/pretrain.yaml
    """


@pretrain.command()
@click.option("-i", "--input", "inputs", multiple=True, required=True, metavar="[NAME=]PATH",
              help="input file (JSON lines with a text field, or plain text; UTF-8, .gz/.bz2 ok). NAME groups "
                   "files into a source for mixing (default: the file name). Repeatable.")
@click.option("-t", "--tokenizer", required=True, help="Hugging Face tokenizer directory or hub id.")
@output_option(required=True, help="Dataset prefix OUT: writes OUT.bin, OUT.idx and OUT.json.")
@click.option("--max-len", type=click.IntRange(min=1), default=_default("max_len"),
              show_default=True, help=_help("max_len"))
@click.option("--min-len", type=click.IntRange(min=0), default=_default("min_len"),
              show_default=True, help=_help("min_len"))
@click.option("--text-field", default=_default("text_field"), show_default=True,
              help=_help("text_field"))
@click.option("--text-mode", type=click.Choice(["paragraph", "line"]),
              default=_default("text_mode"), show_default=True, help=_help("text_mode"))
@click.option("--workers", type=click.IntRange(min=1), default=_default("workers"),
              show_default=True, help=_help("workers"))
@click.option("--dedup/--no-dedup", default=_default("dedup"), show_default=True,
              help=_help("dedup"))
@click.option("--bos/--no-bos", default=_default("add_bos"), show_default=True,
              help=_help("add_bos"))
@click.option("--eos/--no-eos", default=_default("add_eos"), show_default=True,
              help=_help("add_eos"))
@click.option("--vocab-size", type=click.IntRange(min=1), default=None, help=_help("vocab_size"))
@progress_option()
def prepare(inputs, tokenizer, output, max_len, min_len, text_field, text_mode, workers, dedup,
            bos, eos, vocab_size, progress) -> None:
    """Split, tokenize and pack documents into an indexed dataset.

    \b
    Example:
      deepke-llm pretrain prepare -i wiki=dump/wiki.jsonl -i news=news.txt.gz \\
          -t ./llama-7b -o data/corpus --max-len 2048 --workers 8
    """
    from deepke_llm.training.pretrain.corpus import SourceSpec
    from deepke_llm.training.pretrain.prepare import prepare_corpus

    _refuse_overwriting(output, [SourceSpec.parse(spec).path for spec in inputs])
    try:
        options = PrepareOptions(max_len=max_len, min_len=min_len, text_field=text_field,
                                 text_mode=text_mode, workers=workers, dedup=dedup, add_bos=bos,
                                 add_eos=eos, vocab_size=vocab_size)
        with _PrepareProgress(show_progress(progress)) as report:
            meta = prepare_corpus(list(inputs), tokenizer, output, options, report)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    _print_summary("pretrain prepare", meta, output)


class _PrepareProgress:
    """The ``prepare_corpus`` progress callback, shown as the one progress bar (documents)."""

    def __init__(self, enabled: bool) -> None:
        from deepke_llm.io import ProgressBar

        self.bar = ProgressBar(enabled, desc="prepare", unit="doc")
        self.seen: dict[str, int] = {}

    def __call__(self, info: dict[str, Any]) -> None:
        # documents are counted per source: advance by what this source gained since last time
        before = self.seen.get(info["source"], 0)
        self.seen[info["source"]] = info["documents"]
        self.bar.advance(info["documents"] - before)
        self.bar.status(f"{info['source']}, {info['tokens']:,} tokens written")

    def __enter__(self) -> _PrepareProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


@pretrain.command()
@click.argument("datasets", nargs=-1, required=True)
@output_option(required=True, help="Merged dataset prefix OUT: writes OUT.bin, OUT.idx and "
                                    "OUT.json.")
def merge(datasets, output) -> None:
    """Concatenate indexed datasets (same tokenizer); sources with one name are merged.

    \b
    Example:
      deepke-llm pretrain merge data/wiki data/news -o data/all
    """
    from deepke_llm.training.pretrain.indexed_dataset import dataset_paths, merge_datasets

    _refuse_overwriting(output, [path for prefix in datasets for path in dataset_paths(prefix)])
    try:
        meta = merge_datasets(list(datasets), output)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    _print_summary("pretrain merge", meta, output)


def _refuse_overwriting(prefix: str, inputs: list) -> None:
    """Exit 2 when one of the dataset files PREFIX.bin/.idx/.json is one of ``inputs``."""
    from deepke_llm.training.pretrain.indexed_dataset import dataset_paths

    for path in dataset_paths(prefix):
        refuse_same_output(path, inputs)


@pretrain.command()
@click.argument("dataset")
@click.option("--show", type=click.IntRange(min=0), default=0, show_default=True,
              help="also decode the first N samples")
@click.option("--tokenizer", default=None, help="tokenizer for --show (default: the one recorded)")
@click.option("--json", "as_json", is_flag=True, help="print the metadata as JSON")
def inspect(dataset, show, tokenizer, as_json) -> None:
    """Show an indexed dataset's per-source counts (and optionally decoded samples) on stdout.

    \b
    Example:
      deepke-llm pretrain inspect data/corpus --show 2
    """
    from deepke_llm.training.pretrain.indexed_dataset import IndexedDataset

    try:
        ds = IndexedDataset(dataset)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps(ds.metadata, indent=2, ensure_ascii=False))
    else:
        samples, tokens = ds.samples_per_source(), ds.tokens_per_source()
        click.echo(f"{ds.prefix}: {len(ds):,} samples, {int(tokens.sum()):,} tokens ({ds.dtype.name})")
        for sid, name in enumerate(ds.source_names):
            click.echo(f"  {name}: {int(samples[sid]):,} samples, {int(tokens[sid]):,} tokens")
    if show:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer or ds.metadata.get("tokenizer"))
        for i in range(min(show, len(ds))):
            click.echo(f"--- sample {i} (source {ds.source_names[ds.source_ids[i]]}, {len(ds[i])} tokens)")
            click.echo(tok.decode(ds[i].tolist()))


def _print_summary(command: str, meta: dict, output: str) -> None:
    """The command's summary on stderr: totals, then one line per source and skipped record."""
    click.echo(f"{command}: {meta['num_samples']:,} samples, {meta['num_tokens']:,} tokens "
               f"({meta['dtype']}) -> {output}", err=True)
    for source in meta.get("sources", []):
        undecodable = source.get("undecodable_lines", 0)
        not_utf8 = f", {undecodable:,} lines not UTF-8" if undecodable else ""
        click.echo(f"  {source['name']}: {source.get('documents', 0):,} documents "
                   f"({source.get('duplicates', 0):,} duplicates, {source.get('bad_records', 0):,} bad"
                   f"{not_utf8}), "
                   f"{source.get('samples', 0):,} samples, {source.get('tokens', 0):,} tokens",
                   err=True)
    for error in meta.get("errors", []):
        click.echo(f"skipped: {error}", err=True)


@pretrain.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="run config (YAML or JSON); fields: see training/pretrain/README.md")
@output_option("--output-dir", file=False, help="override the config's output_dir")
@click.option("--max-steps", type=click.IntRange(min=-1), default=None,
              help="override the config's max_steps (-1: num_epochs)")
@click.option("--resume", default=None, help="override resume: auto, none or a checkpoint dir")
@click.option("--deepspeed", default=None, help="override deepspeed: zero2, zero3, zero3_offload or a JSON path")
@progress_option()
def run(config_path, output, max_steps, resume, deepspeed, progress) -> None:
    """Pretrain a causal LM on an indexed dataset (HF Trainer, optional DeepSpeed ZeRO).

    \b
    Example:
      deepke-llm pretrain run --config training/pretrain/pretrain.yaml --max-steps 100
      deepspeed --num_gpus 8 --module deepke_llm.cli pretrain run \\
          --config training/pretrain/pretrain.yaml --deepspeed zero3
      bash training/pretrain/launch.sh training/pretrain/pretrain.yaml   # DeepSpeed, multi-node
    """
    from deepke_llm.training.common import load_run_config
    from deepke_llm.training.pretrain.config import PretrainConfig

    overrides = {"output_dir": output, "max_steps": max_steps, "resume": resume,
                 "deepspeed": deepspeed}
    try:
        config = load_run_config(config_path, PretrainConfig, overrides)
    except (OSError, ValueError, TypeError) as exc:
        fail(f"{config_path}: {exc}")
    refuse_same_output(config.output_dir, [config.model])
    from deepke_llm.training.deepspeed_setup import StaleBuildLockError
    from deepke_llm.training.pretrain.run import run_pretraining

    try:
        metrics = run_pretraining(config, progress=show_progress(progress))
    except (FileNotFoundError, ValueError, StaleBuildLockError) as exc:
        fail(str(exc))
    click.echo(f"pretrain run: {metrics['global_step']} steps, loss {metrics['first_loss']:.4f} "
               f"to {metrics['last_loss']:.4f} -> {config.output_dir}", err=True)
