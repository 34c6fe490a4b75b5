"""``deepke-llm weights diff|recover|merge-lora``: thin click wrappers over
:mod:`deepke_llm.training.weights`. Each prints a one-line summary (and any warning) on stderr and
the output directory on stdout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from deepke_llm.commands.common import ExitCode, fail, refuse_same_output
from deepke_llm.commands.options import output_option
from deepke_llm.training.weights.shards import DEFAULT_MAX_SHARD_SIZE

PATH = click.Path(path_type=Path)
# --out: the spelling before every command's output flag became -o/--output
weights_output_option = output_option("--out", required=True, file=False,
                                      help="Output directory (built beside it, renamed into "
                                           "place when complete).")
max_shard_size_option = click.option(
    "--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, show_default=True,
    help="Largest output shard, in transformers' max_shard_size units: 2GB, 500MB, 1GiB (a bigger "
         "tensor gets a shard of its own).")
force_option = click.option("--force", is_flag=True, help="Overwrite --output if it exists.")


def _run(command: str, function: Callable[..., Any], output: str, inputs: list[Path],
         **kwargs: Any) -> None:
    """Call a library function; input errors are one line and exit 1, an output that is an
    input exits 2."""
    from safetensors import SafetensorError

    from deepke_llm.training.weights.io import WeightsError, return_freed_memory_promptly

    refuse_same_output(output, inputs)
    return_freed_memory_promptly()
    try:
        result = function(out=output, **kwargs)
    except (WeightsError, SafetensorError, OSError) as exc:
        fail(f"{command}: {exc}")
    click.echo(f"weights {command}: {result.summary()}", err=True)
    click.echo(str(result.out))


@click.group(name="weights")
def weights() -> None:
    """Weight diff, recovery, LoRA merging and GGUF export, streamed tensor by tensor.

    Memory stays at a few blocks of rows whatever the model size (merge-lora: one adapted
    tensor); outputs are written to a temporary directory beside --output and renamed when
    complete, so a failed run leaves nothing behind.

    \b
    Example:
      deepke-llm weights diff --raw llama-13b --tuned my-13b -o my-13b-diff
      deepke-llm weights recover --raw llama-13b --diff my-13b-diff -o my-13b
    """


@weights.command()
@click.option("--raw", required=True, type=PATH, help="The base model the tuned one started from.")
@click.option("--tuned", required=True, type=PATH, help="The fine-tuned model.")
@weights_output_option
@click.option("--method", type=click.Choice(["delta", "xor"]), default="delta", show_default=True,
              help="delta: tuned-raw in a wider dtype (2x size, an arithmetic delta); "
                   "xor: XOR of bit patterns (1x size). Both recover bit-identically.")
@max_shard_size_option
@force_option
def diff(raw: Path, tuned: Path, output: str, method: str, max_shard_size: str,
         force: bool) -> None:
    """Write DIFF = TUNED - RAW with a manifest (shapes, dtypes, sha256 of files and tensors).

    Config, generation config and tokenizer files of --tuned are copied into the diff.

    \b
    Example:
      deepke-llm weights diff --raw llama-13b-hf --tuned zhixi-13b -o zhixi-13b-diff
    """
    from deepke_llm.training.weights.diff import diff_weights

    _run("diff", diff_weights, output, [raw, tuned], raw=raw, tuned=tuned, method=method,
         max_shard_size=max_shard_size, force=force)


@weights.command()
@click.option("--raw", required=True, type=PATH, help="The base model the diff was made against.")
@click.option("--diff", "diff_dir", required=True, type=PATH, help="The diff directory.")
@weights_output_option
@click.option("--allow-unverified", is_flag=True,
              help="Recover a diff that has no diff_manifest.json (the seed's weight_diff "
                   "layout) without any integrity check; without this flag such a diff is refused.")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default=None,
              help="Only with --allow-unverified (a diff without diff_manifest.json); "
                   "default float32.")
@max_shard_size_option
@force_option
def recover(raw: Path, diff_dir: Path, output: str, allow_unverified: bool, dtype: str | None,
            max_shard_size: str, force: bool) -> None:
    """Rebuild the tuned model as RAW + DIFF, bit-identical, checked against the manifest.

    A missing or malformed manifest, a corrupt diff shard or a wrong --raw is an error and
    leaves no output behind.

    \b
    Example:
      deepke-llm weights recover --raw llama-13b-hf --diff zhixi-13b-diff -o zhixi-13b
    """
    from deepke_llm.training.weights.recover import recover_weights

    _run("recover", recover_weights, output, [raw, diff_dir], raw=raw, diff=diff_dir, dtype=dtype,
         allow_unverified=allow_unverified, max_shard_size=max_shard_size, force=force,
         log=lambda message: click.echo(f"weights recover: {message}", err=True))


@weights.command(name="merge-lora")
@click.option("--base", required=True, type=PATH, help="The base model the adapter was trained on.")
@click.option("--lora", required=True, type=PATH,
              help="PEFT adapter directory (adapter_config.json + adapter_model.safetensors).")
@weights_output_option
@max_shard_size_option
@force_option
def merge_lora(base: Path, lora: Path, output: str, max_shard_size: str, force: bool) -> None:
    """Merge a LoRA adapter into its base model: W + scale * B @ A, as peft's merge_and_unload.

    \b
    Example:
      deepke-llm weights merge-lora --base llama-13b-hf --lora runs/sft/adapter -o merged-13b
    """
    from deepke_llm.training.weights.lora import merge_lora as merge

    _run("merge-lora", merge, output, [base, lora], base=base, lora=lora,
         max_shard_size=max_shard_size, force=force)


@weights.command(name="export-gguf")
@click.option("--base", required=True,
              help="default (the default model's Q4_K_M GGUF), a .gguf file, or a transformers "
                   "directory of a LLaMA-architecture model (safetensors + tokenizer).")
@click.option("--lora", type=PATH, help="PEFT adapter directory to merge in (or, with "
                                        "--lora-only, to export alone).")
@output_option("--out", help="The GGUF file to write [default: DIR/model.gguf with --ollama].")
@click.option("--quant", type=click.Choice(["f16", "q8_0", "q4_k_m"]), default="q8_0",
              show_default=True,
              help="Type of the weights written. f16 and q8_0 are encoded by the gguf package; "
                   "q4_k_m runs llama.cpp's own quantiser (the [llamacpp] extra), as the gguf "
                   "package cannot write k-quants. With a quantised GGUF base only the tensors "
                   "the adapter changes are written anew; the others keep their quantisation "
                   "byte for byte.")
@click.option("--lora-only", is_flag=True,
              help="Write the adapter alone as a llama.cpp LoRA GGUF for --base (run it with "
                   "--engine llamacpp --lora FILE.gguf).")
@click.option("--ollama", "ollama_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write DIR/Modelfile for `ollama create` (FROM the GGUF, our chat "
                   "template as a Go TEMPLATE, temperature 0).")
@click.option("--chat-template", default="auto", show_default=True,
              help="With --ollama: the chat template the Modelfile reproduces (auto: plain for "
                   "a model without its own; plain or oneke).")
@force_option
def export_gguf(base: str, lora: Path | None, output: str | None, quant: str, lora_only: bool,
                ollama_dir: Path | None, chat_template: str, force: bool) -> None:
    """Write a GGUF that llama.cpp and Ollama load: the base with the LoRA adapter merged in.

    \b
    Example:
      deepke-llm weights export-gguf --base default --lora deepke_llm/adapters/default \\
          --quant q8_0 --ollama ie-model
      (cd ie-model && ollama create deepke-ie -f Modelfile)
      deepke-llm extract --task ner --schema conll03 \\
          --base-url http://127.0.0.1:11434/v1 --api-model deepke-ie "Japan beat Syria."
    """
    from deepke_llm.training.weights.export_gguf import export_gguf as export
    from deepke_llm.training.weights.io import WeightsError

    if output is None and ollama_dir is None:
        fail("export-gguf: pass --out FILE.gguf or --ollama DIR", ExitCode.USAGE)
    if lora_only and ollama_dir is not None:
        fail("export-gguf: --ollama needs a whole model, not --lora-only", ExitCode.USAGE)
    from deepke_llm.training.weights.ollama import GO_TEMPLATES

    if chat_template not in ("auto", *GO_TEMPLATES):  # before minutes of export, not after
        fail(f"export-gguf: --chat-template {chat_template}: an Ollama template exists for "
             f"auto, {', '.join(GO_TEMPLATES)}", ExitCode.USAGE)
    output = output or str(ollama_dir / "model.gguf")
    inputs = [Path(base), lora] if base != "default" else [lora]
    _run("export-gguf", export, output, inputs, base=base, lora=lora, quant=quant,
         lora_only=lora_only, force=force)
    if ollama_dir is not None:
        from deepke_llm.training.weights.ollama import write_modelfile

        try:
            modelfile = write_modelfile(ollama_dir, output, chat_template)
        except WeightsError as exc:
            fail(f"export-gguf: {exc}")
        click.echo(f"weights export-gguf: wrote {modelfile}", err=True)
