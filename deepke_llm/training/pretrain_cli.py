"""``deepke-llm pretrain prepare|merge|inspect|run``: thin click wrappers over the library."""

from __future__ import annotations

import json
import sys

import click


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


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
@click.option("-o", "--output", required=True, metavar="PREFIX",
              help="writes PREFIX.bin, PREFIX.idx and PREFIX.json")
@click.option("--max-len", default=1024, show_default=True, help="max tokens per packed sample")
@click.option("--min-len", default=16, show_default=True, help="drop samples shorter than this")
@click.option("--text-field", default="text", show_default=True, help="JSON field holding the text")
@click.option("--text-mode", type=click.Choice(["paragraph", "line"]), default="paragraph",
              show_default=True, help="plain text: documents are blank-line separated paragraphs, or lines")
@click.option("--workers", default=1, show_default=True, help="worker processes (output is identical for any N)")
@click.option("--dedup/--no-dedup", default=True, show_default=True,
              help="drop exact-duplicate documents (memory ~100 bytes per distinct document)")
@click.option("--bos/--no-bos", default=True, show_default=True, help="BOS token before each document")
@click.option("--eos/--no-eos", default=True, show_default=True, help="EOS token after each document")
@click.option("--vocab-size", type=int, default=None,
              help="vocabulary size deciding the token dtype (default: the tokenizer's)")
def prepare(inputs, tokenizer, output, max_len, min_len, text_field, text_mode, workers, dedup,
            bos, eos, vocab_size) -> None:
    """Split, tokenize and pack documents into an indexed dataset.

    \b
    Example:
      deepke-llm pretrain prepare -i wiki=dump/wiki.jsonl -i news=news.txt.gz \\
          -t ./llama-7b -o data/corpus --max-len 2048 --workers 8
    """
    from deepke_llm.training.corpus_prepare import PrepareOptions, prepare_corpus

    try:
        options = PrepareOptions(max_len=max_len, min_len=min_len, text_field=text_field,
                                 text_mode=text_mode, workers=workers, dedup=dedup, add_bos=bos,
                                 add_eos=eos, vocab_size=vocab_size)
        last = [0.0]

        def progress(info: dict) -> None:
            if info["seconds"] - last[0] >= 10:
                last[0] = info["seconds"]
                click.echo(f"{info['source']}: {info['documents']:,} documents, "
                           f"{info['tokens']:,} tokens, {info['seconds']:.0f}s", err=True)

        meta = prepare_corpus(list(inputs), tokenizer, output, options, progress)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    _print_summary(meta)


@pretrain.command()
@click.argument("datasets", nargs=-1, required=True)
@click.option("-o", "--output", required=True, metavar="PREFIX", help="merged dataset prefix")
def merge(datasets, output) -> None:
    """Concatenate indexed datasets (same tokenizer); sources with one name are merged.

    \b
    Example:
      deepke-llm pretrain merge data/wiki data/news -o data/all
    """
    from deepke_llm.training.indexed_dataset import merge_datasets

    try:
        meta = merge_datasets(list(datasets), output)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    _print_summary(meta)


@pretrain.command()
@click.argument("dataset")
@click.option("--show", default=0, show_default=True, help="also decode the first N samples")
@click.option("--tokenizer", default=None, help="tokenizer for --show (default: the one recorded)")
@click.option("--json", "as_json", is_flag=True, help="print the metadata as JSON")
def inspect(dataset, show, tokenizer, as_json) -> None:
    """Show an indexed dataset's per-source counts (and optionally decoded samples).

    \b
    Example:
      deepke-llm pretrain inspect data/corpus --show 2
    """
    from deepke_llm.training.indexed_dataset import IndexedDataset

    try:
        ds = IndexedDataset(dataset)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
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


def _print_summary(meta: dict) -> None:
    click.echo(f"{meta['num_samples']:,} samples, {meta['num_tokens']:,} tokens ({meta['dtype']})")
    for source in meta.get("sources", []):
        undecodable = source.get("undecodable_lines", 0)
        not_utf8 = f", {undecodable:,} lines not UTF-8" if undecodable else ""
        click.echo(f"  {source['name']}: {source.get('documents', 0):,} documents "
                   f"({source.get('duplicates', 0):,} duplicates, {source.get('bad_records', 0):,} bad"
                   f"{not_utf8}), "
                   f"{source.get('samples', 0):,} samples, {source.get('tokens', 0):,} tokens")
    for error in meta.get("errors", []):
        click.echo(f"skipped: {error}", err=True)


@pretrain.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="run config (YAML or JSON); fields: see training/pretrain/README.md")
@click.option("--output-dir", default=None, help="override the config's output_dir")
@click.option("--max-steps", type=int, default=None, help="override the config's max_steps")
@click.option("--resume", default=None, help="override resume: auto, none or a checkpoint dir")
@click.option("--deepspeed", default=None, help="override deepspeed: zero2, zero3, zero3_offload or a JSON path")
def run(config_path, output_dir, max_steps, resume, deepspeed) -> None:
    """Pretrain a causal LM on an indexed dataset (HF Trainer, optional DeepSpeed ZeRO).

    \b
    Example:
      deepke-llm pretrain run --config training/pretrain/pretrain.yaml --max-steps 100
      deepspeed --num_gpus 8 --module deepke_llm.cli pretrain run \\
          --config training/pretrain/pretrain.yaml --deepspeed zero3
      bash training/pretrain/launch.sh training/pretrain/pretrain.yaml   # DeepSpeed, multi-node
    """
    from deepke_llm.training.common import load_run_config
    from deepke_llm.training.pretrain import PretrainConfig, run_pretraining

    overrides = {"output_dir": output_dir, "max_steps": max_steps, "resume": resume,
                 "deepspeed": deepspeed}
    try:
        config = load_run_config(config_path, PretrainConfig, overrides)
    except (OSError, ValueError, TypeError) as exc:
        _fail(f"{config_path}: {exc}")
    from deepke_llm.training.deepspeed_setup import StaleBuildLockError

    try:
        metrics = run_pretraining(config)
    except (FileNotFoundError, ValueError, StaleBuildLockError) as exc:
        _fail(str(exc))
    click.echo(f"done: {metrics['global_step']} steps, loss {metrics['first_loss']:.4f} -> "
               f"{metrics['last_loss']:.4f}; model in {config.output_dir}")
