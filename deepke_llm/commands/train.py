"""``deepke-llm train sft``: a thin click wrapper over :func:`deepke_llm.training.sft.run.run_sft`.

Every :class:`~deepke_llm.training.sft.config.SftConfig` field is an option of the same name
(``lora_r`` -> ``--lora-r``), with the field's help and, for numbers, its lower bound, so the
command line, recipe files and saved run configs speak one vocabulary. ``--config FILE`` loads a
recipe; options given on the command line override it.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from typing import Any

import click

from deepke_llm.commands.common import fail, refuse_same_output
from deepke_llm.config import field_help
from deepke_llm.training.sft.config import SftConfig

# extra names of a field's option: the output flag every command shares, and the old spelling
EXTRA_NAMES = {"output_dir": ["-o", "--output"]}


def _default_text(field: Field) -> str:
    value = field.default if field.default is not MISSING else field.default_factory()
    if isinstance(value, list):
        value = ",".join(value)
    return f" [default: {value}]" if value not in ("", None) else ""


def _click_type(kind: Any, field: Field) -> Any:
    minimum = field.metadata.get("minimum")
    if kind is int:
        return click.IntRange(min=minimum) if minimum is not None else int
    if kind is float:
        return click.FloatRange(min=minimum) if minimum is not None else float
    return str


def config_options(func: Callable) -> Callable:
    """Add one option per SftConfig field; all default to None (= not given, keep the file's)."""
    hints = typing.get_type_hints(SftConfig)
    for field in reversed(fields(SftConfig)):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        help_text = field_help(SftConfig, field.name) + _default_text(field)
        if kind is bool:
            decl = f"{flag}/--no-{flag[2:]}"
            func = click.option(decl, field.name, default=None, help=help_text)(func)
            continue
        if kind == list[str]:
            help_text += " Comma-separated."
        names = [*EXTRA_NAMES.get(field.name, []), flag]
        func = click.option(*names, field.name, type=_click_type(kind, field), default=None,
                            help=help_text)(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def train() -> None:
    """Instruction tuning (LoRA / QLoRA / full) on IEPile or Alpaca data.

    \b
    Example:
      deepke-llm train sft --model ./Qwen2.5-0.5B-Instruct --train-file train.jsonl \\
          -o runs/qwen-lora --val-size 0.05
    """


@train.command(context_settings={"max_content_width": 100})
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Run config (YAML or JSON, e.g. training/sft/oneke.yaml); options given on "
                   "the command line override its values.")
@config_options
def sft(config_path: str | None, **options: Any) -> None:
    """Fine-tune a causal LM on instruction data; writes the LoRA adapter (or full weights),
    tokenizer, sft_config.json, train_log.jsonl and sft_summary.json to --output.

    Prompts are rendered exactly as `deepke-llm extract` renders them (same --chat-template),
    and the loss covers the response only unless --train-on-inputs. A one-line summary goes to
    stderr.

    \b
    Examples:
      deepke-llm train sft --model ./tiny-llama --train-file iepile_train.jsonl \\
          -o runs/lora --lora-r 16 --epochs 3 --val-size 0.05
      deepke-llm train sft --config training/sft/oneke.yaml --resume auto
      deepspeed --num_gpus 8 --module deepke_llm.cli train sft \\
          --config training/sft/qwen2_5.yaml --deepspeed zero2
    """
    from deepke_llm.training.sft.config import load_sft_config

    try:
        config = load_sft_config(config_path, options)
        config.check_required()
    except (OSError, ValueError, TypeError) as exc:
        fail(f"{config_path}: {exc}" if config_path else str(exc))
    # "default" names the packaged model, not a folder that --output could overwrite
    model_dir = config.model if config.model != "default" else None
    refuse_same_output(config.output_dir, [model_dir, config.train_file, config.val_file or None])
    from deepke_llm.training.deepspeed_setup import StaleBuildLockError
    from deepke_llm.training.sft.run import run_sft

    try:
        result = run_sft(config)
    except (OSError, ValueError, StaleBuildLockError) as exc:
        fail(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    metrics = result.metrics
    speed = metrics.get("train_tokens_per_second")
    click.echo(f"train sft: {result.data['examples']} examples ({result.data['dropped_too_long']} "
               f"dropped as longer than --max-len), train loss {metrics.get('train_loss', 0):.4f}"
               + (f", eval loss {metrics['eval_loss']:.4f}" if "eval_loss" in metrics else "")
               + (f", {speed:.0f} tokens/s" if speed else "")
               + f" -> {result.output_dir}", err=True)
