"""``deepke-llm train sft``: a thin click wrapper over :func:`deepke_llm.training.sft.run_sft`.

Every :class:`~deepke_llm.training.sft_config.SftConfig` field is an option of the same name
(``lora_r`` -> ``--lora-r``), so the command line, recipe files and saved run configs speak one
vocabulary. ``--config FILE`` loads a recipe; options given on the command line override it.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

import click

from deepke_llm.training.sft_config import SftConfig


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _default_text(field: Any) -> str:
    value = field.default if field.default is not MISSING else field.default_factory()
    if isinstance(value, list):
        value = ",".join(value)
    return f" [default: {value}]" if value not in ("", None) else ""


def config_options(func: Callable) -> Callable:
    """Add one option per SftConfig field; all default to None (= not given, keep the file's)."""
    hints = typing.get_type_hints(SftConfig)
    for field in reversed(fields(SftConfig)):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        help_text = field.metadata.get("help", "") + _default_text(field)
        if kind is bool:
            decl = f"{flag}/--no-{flag[2:]}"
            func = click.option(decl, field.name, default=None, help=help_text)(func)
        else:
            click_type = {int: int, float: float}.get(kind, str)
            if kind == list[str]:
                help_text += " Comma-separated."
            func = click.option(flag, field.name, type=click_type, default=None,
                                help=help_text)(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def train() -> None:
    """Instruction tuning (LoRA / QLoRA / full) on IEPile or Alpaca data.

    \b
    Example:
      deepke-llm train sft --model ./Qwen2.5-0.5B-Instruct --train-file train.jsonl \\
          --output-dir runs/qwen-lora --val-size 0.05
    """


@train.command(context_settings={"max_content_width": 100})
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Run config (YAML or JSON, e.g. training/sft/oneke.yaml); options given on "
                   "the command line override its values.")
@config_options
def sft(config_path: str | None, **options: Any) -> None:
    """Fine-tune a causal LM on instruction data; writes the LoRA adapter (or full weights),
    tokenizer, sft_config.json, train_log.jsonl and sft_summary.json to --output-dir.

    Prompts are rendered exactly as `deepke-llm extract` renders them (same --chat-template),
    and the loss covers the response only unless --train-on-inputs.

    \b
    Examples:
      deepke-llm train sft --model ./tiny-llama --train-file iepile_train.jsonl \\
          --output-dir runs/lora --lora-r 16 --epochs 3 --val-size 0.05
      deepke-llm train sft --config training/sft/oneke.yaml --resume auto
      deepspeed --num_gpus 8 --module deepke_llm.cli train sft \\
          --config training/sft/qwen2_5.yaml --deepspeed zero2
    """
    from deepke_llm.training.sft_config import load_sft_config

    try:
        config = load_sft_config(config_path, options)
        config.check_required()
    except (OSError, ValueError, TypeError) as exc:
        _fail(f"{config_path}: {exc}" if config_path else str(exc))
    from deepke_llm.training.deepspeed_setup import StaleBuildLockError
    from deepke_llm.training.sft import run_sft

    try:
        result = run_sft(config)
    except (OSError, ValueError, StaleBuildLockError) as exc:
        _fail(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    metrics = result.metrics
    speed = metrics.get("train_tokens_per_second")
    click.echo(f"done: {result.data['examples']} examples ({result.data['dropped_too_long']} "
               f"dropped as longer than --max-len), train loss {metrics.get('train_loss', 0):.4f}"
               + (f", eval loss {metrics['eval_loss']:.4f}" if "eval_loss" in metrics else "")
               + (f", {speed:.0f} tokens/s" if speed else "")
               + f"; outputs in {result.output_dir}")
