"""Instruction tuning (``deepke-llm train sft``): LoRA, QLoRA or full fine-tuning on IEPile or
Alpaca JSON lines, with the prompts the extractor uses, loss on the response only, optional
packing, DeepSpeed and resume.

Read top to bottom, :func:`run_sft` is the recipe: check the inputs, read and split the data,
tokenize it (:mod:`.data`), load the model and wrap it with LoRA (:mod:`.model`), train with
:class:`~deepke_llm.training.sft.trainer.SftTrainer`, then save the adapter (or full weights),
tokenizer, run config, a JSON-lines training log and a summary (and, asked to, the merged model).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from deepke_llm.training.common import (
    find_resume_checkpoint,
    resolve_deepspeed_config,
    save_run_config,
    write_json,
)
from deepke_llm.training.sft.config import CONFIG_FILENAME, SftConfig
from deepke_llm.training.sft.data import (
    DataStats,
    SftCollator,
    SftRecord,
    pack_examples,
    read_sft_records,
    split_validation,
    tokenize_records,
)
from deepke_llm.training.sft.model import load_model, load_tokenizer, resolve_precision

__all__ = ["LOG_FILENAME", "SUMMARY_FILENAME", "SftResult", "check_packing_support", "run_sft"]

logger = logging.getLogger(__name__)

LOG_FILENAME = "train_log.jsonl"
SUMMARY_FILENAME = "sft_summary.json"
EvalFn = Callable[[Any, Any, Sequence[SftRecord]], dict[str, float]]
Rows = list[dict[str, list[int]]]


@dataclass
class SftResult:
    """Where the run wrote its outputs and what it measured."""

    output_dir: str
    metrics: dict[str, float] = field(default_factory=dict)
    data: dict[str, int] = field(default_factory=dict)
    resumed_from: str | None = None


def run_sft(config: SftConfig, callbacks: Sequence[Any] = (),
            eval_fn: EvalFn | None = None) -> SftResult:
    """Train one model as ``config`` says and write everything under ``config.output_dir``.

    ``eval_fn(model, tokenizer, records) -> metrics`` runs at each evaluation on the validation
    records (overrides ``config.eval_fn``); ``callbacks`` are extra transformers callbacks.
    """
    config.check_required()
    _resolve_default_model(config)
    # inputs are checked before anything heavy is imported or loaded
    deepspeed = _check_inputs(config)
    eval_fn = eval_fn or _load_eval_fn(config.eval_fn, config)
    train_records, val_records = _read_records(config)

    from transformers import set_seed

    out = Path(config.output_dir)
    resume = find_resume_checkpoint(out, config.resume)
    precision = resolve_precision(config.precision)
    set_seed(config.seed)
    tokenizer = load_tokenizer(config)
    train_rows, val_rows, stats = _tokenize(config, tokenizer, train_records, val_records)

    # TrainingArguments come first: with ZeRO-3 they make from_pretrained load the weights
    # already partitioned across ranks instead of whole on every one.
    if deepspeed:
        from deepke_llm.training.deepspeed_setup import prepare_deepspeed

        prepare_deepspeed()
    args = _training_args(config, precision, deepspeed, has_val=bool(val_rows))
    model = load_model(config, precision)
    out.mkdir(parents=True, exist_ok=True)
    hooks = [*callbacks, *_eval_callbacks(eval_fn, model, tokenizer, val_records, val_rows,
                                          config, out)]
    trainer, throughput = _build_trainer(config, model, tokenizer, args, train_rows, val_rows, hooks)
    if trainer.is_world_process_zero():  # one writer per run, not one per rank
        save_run_config(config, out, CONFIG_FILENAME)
    train_output = trainer.train(resume_from_checkpoint=resume)

    metrics = dict(train_output.metrics)
    if throughput.tokens_per_second is not None:
        metrics["train_tokens_per_second"] = round(throughput.tokens_per_second, 2)
    if val_rows:
        metrics.update(_final_eval_metrics(trainer))
    trainer.save_model(str(out))  # adapter (or full weights) + tokenizer, on the main process
    if trainer.is_world_process_zero():
        _finish_on_main_process(config, out, metrics, stats, resume)
    return SftResult(str(out), metrics, asdict(stats), resume)


def _resolve_default_model(config: SftConfig) -> None:
    """``model: default`` / ``init_adapter: default``: the packaged base model and its adapter."""
    if config.model == "default":  # converted on first use
        from deepke_llm.default_model import ensure_default_model

        config.model = str(ensure_default_model())
    if config.init_adapter == "default":
        from deepke_llm.default_model import default_adapter_path

        config.init_adapter = default_adapter_path() or ""


def _check_inputs(config: SftConfig) -> str | None:
    """Refuse what cannot run; return the resolved DeepSpeed config path (or None)."""
    if config.init_adapter and config.method == "full":
        raise ValueError("init_adapter continues a LoRA adapter: use method lora or qlora")
    deepspeed = resolve_deepspeed_config(config.deepspeed)
    if config.packing:
        check_packing_support(config.attn_implementation)
    return deepspeed


def _read_records(config: SftConfig) -> tuple[list[SftRecord], list[SftRecord]]:
    """(train, validation) records: the validation file, or lines held out of the training file."""
    train_records = read_sft_records(config.train_file, config.data_format)
    if config.val_file:
        return train_records, read_sft_records(config.val_file, config.data_format)
    return split_validation(train_records, config.val_size, config.seed)


def _tokenize(config: SftConfig, tokenizer: Any, train_records: list[SftRecord],
              val_records: list[SftRecord]) -> tuple[Rows, Rows, DataStats]:
    """Training and validation rows (packed when asked) and what tokenization dropped."""
    stats = DataStats()
    train_rows = tokenize_records(train_records, tokenizer, config.chat_template, config.max_len,
                                  config.train_on_inputs, stats)
    if not train_rows:
        raise ValueError(f"train_file: all {stats.dropped_too_long} examples are longer than "
                         f"max_len {config.max_len}; raise --max-len")
    val_rows = tokenize_records(val_records, tokenizer, config.chat_template, config.max_len,
                                config.train_on_inputs) if val_records else []
    if config.packing:
        train_rows = pack_examples(train_rows, config.max_len)
        val_rows = pack_examples(val_rows, config.max_len) if val_rows else []
        stats.rows = len(train_rows)
    logger.info("sft: %d training examples in %d rows (%d dropped as too long), %d validation",
                stats.examples, stats.rows, stats.dropped_too_long, len(val_rows))
    return train_rows, val_rows, stats


def _load_eval_fn(spec: str, config: SftConfig) -> EvalFn | None:
    if not spec:
        return None
    if spec == "builtin":
        from deepke_llm.training.sft.evaluation import generation_eval

        return lambda model, tokenizer, records: generation_eval(
            model, tokenizer, records, config.chat_template, config.eval_max_new_tokens)
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"eval_fn: cannot import '{spec}' (expected 'module:function')") from None


def _eval_callbacks(eval_fn: EvalFn | None, model: Any, tokenizer: Any,
                    val_records: list[SftRecord], val_rows: Rows, config: SftConfig,
                    out: Path) -> list[Any]:
    """The extraction eval hook, when there is an ``eval_fn`` and validation data to run it on."""
    if eval_fn is None or not val_rows:
        return []
    from deepke_llm.training.sft.trainer import EvalFnCallback

    return [EvalFnCallback(eval_fn, model, tokenizer, val_records[:config.eval_max_records],
                           out / LOG_FILENAME)]


def _build_trainer(config: SftConfig, model: Any, tokenizer: Any, args: Any, train_rows: Rows,
                   val_rows: Rows, callbacks: list[Any]) -> tuple[Any, Any]:
    """The SftTrainer with the log and throughput callbacks first (the throughput one returned)."""
    from deepke_llm.training.sft.trainer import JsonlLogCallback, SftTrainer, ThroughputCallback

    throughput = ThroughputCallback()
    trainer = SftTrainer(model=model, args=args, train_dataset=train_rows,
                         eval_dataset=val_rows or None,
                         data_collator=SftCollator(tokenizer.pad_token_id),
                         processing_class=tokenizer,
                         callbacks=[JsonlLogCallback(Path(config.output_dir) / LOG_FILENAME),
                                    throughput, *callbacks],
                         response_only_head=config.response_only_head)
    return trainer, throughput


def _final_eval_metrics(trainer: Any) -> dict[str, float]:
    """Eval metrics of the final weights: reused when the schedule just evaluated them (an
    extraction eval_fn generates, so running it twice is not free), else computed now."""
    step = trainer.state.global_step
    logged = [e for e in trainer.state.log_history if e.get("step") == step]
    if any("eval_loss" in e for e in logged):
        return {k: v for e in logged for k, v in e.items() if k.startswith("eval_")}
    return trainer.evaluate()


def _finish_on_main_process(config: SftConfig, out: Path, metrics: dict[str, float],
                            stats: DataStats, resume: str | None) -> None:
    """The merged model (when asked) and the run summary, written once per run."""
    if config.merge:
        # streamed from the base checkpoint, shard by shard: no gathered (ZeRO-3) or
        # quantized (QLoRA) in-memory model is merged, and peak memory is about one tensor
        from deepke_llm.training.weights.lora import merge_lora

        merged = merge_lora(_local_model_dir(config.model), out, out / "merged", force=True)
        logger.info("merged: %s", merged.summary())
    write_json(out / SUMMARY_FILENAME,
               {"metrics": metrics, "data": asdict(stats), "resumed_from": resume})


def _training_args(config: SftConfig, precision: str, deepspeed: str | None,
                   has_val: bool) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        **_renamed_args(config),
        output_dir=config.output_dir, seed=config.seed,
        num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm,
        bf16=precision == "bf16", fp16=precision == "fp16",
        logging_steps=config.logging_steps, logging_first_step=True,
        save_strategy="steps" if config.save_steps else "no", save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit or None,
        eval_strategy=("steps" if config.eval_steps else "epoch") if has_val else "no",
        eval_steps=config.eval_steps or None,
        deepspeed=deepspeed, report_to="none", label_names=["labels"],
        remove_unused_columns=False, prediction_loss_only=True, disable_tqdm=True,
        use_cpu=not _has_cuda(),
    )


def _renamed_args(config: SftConfig, arg_fields: Sequence[Any] | None = None) -> dict[str, Any]:
    """Arguments whose names or values differ between transformers 4.x and 5.x.

    ``arg_fields`` defaults to ``dataclasses.fields(TrainingArguments)`` (a parameter for tests).
    """
    if arg_fields is None:
        from transformers import TrainingArguments

        arg_fields = fields(TrainingArguments)
    names = {f.name for f in arg_fields}
    args: dict[str, Any] = {}
    seen = next((f for f in arg_fields if f.name == "include_num_input_tokens_seen"), None)
    if seen is not None:
        # "non_padding" (count real tokens, for the tokens/s figure) exists since transformers
        # 4.57; before, the argument is a bool and True counts padding too
        args["include_num_input_tokens_seen"] = "non_padding" if "str" in str(seen.type) else True
    if "warmup_ratio" in names:  # 4.x: the ratio has its own argument, warmup_steps is an int
        args.update({"warmup_ratio": config.warmup} if config.warmup < 1 else
                    {"warmup_steps": int(config.warmup)})
    else:
        args["warmup_steps"] = config.warmup
    if config.group_by_length and not config.packing:  # packed rows are all max_len already
        args.update({"train_sampling_strategy": "group_by_length"}
                    if "train_sampling_strategy" in names else {"group_by_length": True})
    if config.gradient_checkpointing:
        prefix = "activation" if "activation_checkpointing" in names else "gradient"
        # non-reentrant checkpointing needs no input grads, so frozen embeddings (LoRA) are fine
        args.update({f"{prefix}_checkpointing": True,
                     f"{prefix}_checkpointing_kwargs": {"use_reentrant": False}})
    return args


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _local_model_dir(model: str) -> Path:
    """The directory holding ``model``'s files (a hub id resolves to its local cache)."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    # from_pretrained fetched these already; weights as safetensors (or .bin for old repos)
    return Path(snapshot_download(model, allow_patterns=[
        "*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja", "*.tiktoken"]))


def check_packing_support(attn_implementation: str) -> None:
    """Packed rows keep examples apart only if attention sees where each example starts.

    flash_attention_2 reads the restarting position ids directly; every other kernel relies on
    transformers building a block-diagonal mask from them (``masking_utils.
    find_packed_sequence_indices``, absent from older transformers, where packed examples would
    silently attend to each other).
    """
    if attn_implementation == "flash_attention_2":
        return
    try:
        from transformers.masking_utils import find_packed_sequence_indices  # noqa: F401
    except ImportError:
        import transformers

        raise ValueError(
            f"packing: transformers {transformers.__version__} cannot keep packed examples apart "
            "(no masking_utils.find_packed_sequence_indices); upgrade transformers, set "
            "attn_implementation: flash_attention_2, or turn packing off") from None
