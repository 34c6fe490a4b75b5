"""``deepke-llm weights diff|recover|merge-lora``: thin click wrappers over the weights library."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from deepke_llm.training.weights_io import DEFAULT_MAX_SHARD_SIZE

PATH = click.Path(path_type=Path)
max_shard_size_option = click.option(
    "--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, show_default=True,
    help="Largest output shard, in transformers' max_shard_size units: 2GB, 500MB, 1GiB (a bigger "
         "tensor gets a shard of its own).")
force_option = click.option("--force", is_flag=True, help="Overwrite --out if it exists.")


def _run(command: str, function: Callable[..., Any], **kwargs: Any) -> None:
    """Call a library function; report input errors on one line and exit 1."""
    from safetensors import SafetensorError

    from deepke_llm.cli import fail
    from deepke_llm.training.weights_io import WeightsError, return_freed_memory_promptly

    def log(message: str) -> None:
        click.echo(message, err=True)

    return_freed_memory_promptly()
    try:
        result = function(log=log, **kwargs)
    except (WeightsError, SafetensorError, OSError) as exc:
        fail(f"{command}: {exc}")
    else:
        click.echo(str(result.out))


@click.group(name="weights")
def weights() -> None:
    """Weight diff, recovery and LoRA merging, streamed shard by shard.

    Memory stays at a few blocks of rows whatever the model size (merge-lora: one adapted
    tensor); outputs are written to OUT.tmp-PID and renamed when complete, so a failed run
    leaves nothing behind.

    \b
    Example:
      deepke-llm weights diff --raw llama-13b --tuned my-13b --out my-13b-diff
      deepke-llm weights recover --raw llama-13b --diff my-13b-diff --out my-13b
    """


@weights.command()
@click.option("--raw", required=True, type=PATH, help="The base model the tuned one started from.")
@click.option("--tuned", required=True, type=PATH, help="The fine-tuned model.")
@click.option("--out", required=True, type=PATH, help="Directory for the diff shards + manifest.")
@click.option("--method", type=click.Choice(["delta", "xor"]), default="delta", show_default=True,
              help="delta: tuned-raw in a wider dtype (2x size, an arithmetic delta); "
                   "xor: XOR of bit patterns (1x size). Both recover bit-identically.")
@max_shard_size_option
@force_option
def diff(raw: Path, tuned: Path, out: Path, method: str, max_shard_size: str, force: bool) -> None:
    """Write DIFF = TUNED - RAW with a manifest (shapes, dtypes, sha256 of files and tensors).

    Config, generation config and tokenizer files of --tuned are copied into the diff.

    \b
    Example:
      deepke-llm weights diff --raw llama-13b-hf --tuned zhixi-13b --out zhixi-13b-diff
    """
    from deepke_llm.training.weights import diff_weights

    _run("diff", diff_weights, raw=raw, tuned=tuned, out=out, method=method,
         max_shard_size=max_shard_size, force=force)


@weights.command()
@click.option("--raw", required=True, type=PATH, help="The base model the diff was made against.")
@click.option("--diff", "diff_dir", required=True, type=PATH, help="The diff directory.")
@click.option("--out", required=True, type=PATH, help="Directory for the recovered model.")
@click.option("--allow-unverified", is_flag=True,
              help="Recover a diff that has no diff_manifest.json (the seed's weight_diff "
                   "layout) without any integrity check; without this flag such a diff is refused.")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default=None,
              help="Only with --allow-unverified (a diff without diff_manifest.json); "
                   "default float32.")
@max_shard_size_option
@force_option
def recover(raw: Path, diff_dir: Path, out: Path, allow_unverified: bool, dtype: str | None,
            max_shard_size: str, force: bool) -> None:
    """Rebuild the tuned model as RAW + DIFF, bit-identical, checked against the manifest.

    A missing or malformed manifest, a corrupt diff shard or a wrong --raw is an error and
    leaves no output behind.

    \b
    Example:
      deepke-llm weights recover --raw llama-13b-hf --diff zhixi-13b-diff --out zhixi-13b
    """
    from deepke_llm.training.weights_recover import recover_weights

    _run("recover", recover_weights, raw=raw, diff=diff_dir, out=out, dtype=dtype,
         allow_unverified=allow_unverified, max_shard_size=max_shard_size, force=force)


@weights.command(name="merge-lora")
@click.option("--base", required=True, type=PATH, help="The base model the adapter was trained on.")
@click.option("--lora", required=True, type=PATH,
              help="PEFT adapter directory (adapter_config.json + adapter_model.safetensors).")
@click.option("--out", required=True, type=PATH, help="Directory for the merged model.")
@max_shard_size_option
@force_option
def merge_lora(base: Path, lora: Path, out: Path, max_shard_size: str, force: bool) -> None:
    """Merge a LoRA adapter into its base model: W + scale * B @ A, as peft's merge_and_unload.

    \b
    Example:
      deepke-llm weights merge-lora --base llama-13b-hf --lora runs/sft/adapter --out merged-13b
    """
    from deepke_llm.training.weights_lora import merge_lora as merge

    _run("merge-lora", merge, base=base, lora=lora, out=out, max_shard_size=max_shard_size,
         force=force)
