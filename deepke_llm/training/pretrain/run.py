"""Pretraining (continued or from scratch) of a causal LM on an indexed dataset with HF Trainer.

Read top to bottom, :func:`run_pretraining` is the recipe: :func:`build_trainer` opens the indexed
dataset, loads the tokenizer, sets up DeepSpeed and the TrainingArguments, draws the run's data
order (:mod:`.mixing`) and loads the model; then the run config is saved, the latest checkpoint
resumed, the model trained and saved. The sampler spans the whole run as one Trainer epoch, so
Trainer's logged ``epoch`` is the fraction of the run done, not the data epoch.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from deepke_llm.training.common import (
    find_resume_checkpoint,
    resolve_deepspeed_config,
    save_run_config,
)
from deepke_llm.training.pretrain.config import CONFIG_FILENAME, PretrainConfig
from deepke_llm.training.pretrain.indexed_dataset import IndexedDataset
from deepke_llm.training.pretrain.mixing import MixtureSampler, mixing_weights

__all__ = ["PackedSamples", "build_trainer", "collate_packed", "run_pretraining"]

logger = logging.getLogger(__name__)

SAMPLE_LOG = "sample_ids.rank{rank}.jsonl"


class PackedSamples:
    """Torch-style map dataset over an indexed dataset: item ``i`` -> input ids + its index."""

    def __init__(self, indexed: IndexedDataset) -> None:
        self.indexed = indexed

    def __len__(self) -> int:
        return len(self.indexed)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        return {"input_ids": torch.from_numpy(self.indexed[i].astype(np.int64)), "sample_index": i}


def collate_packed(features: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-pad to the longest sample; padding masked in attention and labels.

    Hand-written because DataCollatorForLanguageModeling masks labels by *token id*, which would
    also hide every real EOS when the pad id is the EOS id (common for LLaMA-family tokenizers).
    """
    import torch

    longest = max(len(f["input_ids"]) for f in features)
    input_ids = torch.full((len(features), longest), pad_id, dtype=torch.long)
    attention = torch.zeros((len(features), longest), dtype=torch.long)
    for row, feature in enumerate(features):
        ids = feature["input_ids"]
        input_ids[row, : len(ids)] = ids
        attention[row, : len(ids)] = 1
    labels = input_ids.masked_fill(attention == 0, -100)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
            "sample_index": torch.tensor([f["sample_index"] for f in features], dtype=torch.long)}


def build_trainer(config: PretrainConfig, callbacks: list | None = None,
                  progress: bool = True) -> Any:
    """Model, data, sampler and TrainingArguments of a run, wired into a Trainer (not started).

    ``progress=False`` hides the Trainer's progress bar.
    """
    indexed = IndexedDataset(config.data)
    tokenizer = _load_tokenizer(config, indexed)
    deepspeed = resolve_deepspeed_config(config.deepspeed)
    if deepspeed:
        from deepke_llm.training.deepspeed_setup import prepare_deepspeed

        prepare_deepspeed()
    args = _training_args(config, deepspeed, progress)
    sampler = _run_sampler(config, indexed, args.world_size)
    # built after TrainingArguments so that ZeRO-3 can partition the weights while loading
    model = _load_model(config, indexed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return _trainer_class()(
        model=model, args=args, train_dataset=PackedSamples(indexed), processing_class=tokenizer,
        data_collator=functools.partial(collate_packed, pad_id=pad_id if pad_id is not None else 0),
        callbacks=callbacks, sampler=sampler,
        sample_log=Path(config.output_dir) if config.log_sample_ids else None,
    )


def _load_tokenizer(config: PretrainConfig, indexed: IndexedDataset) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(config.model)
    except (OSError, ValueError):
        # a from-scratch model dir may hold only a config: use the tokenizer the data was made with
        recorded = indexed.metadata.get("tokenizer")
        if not recorded:
            raise
        return AutoTokenizer.from_pretrained(recorded)


def _training_args(config: PretrainConfig, deepspeed: str | None, progress: bool) -> Any:
    from transformers import TrainingArguments

    # renamed in transformers 5 (the old name warns)
    checkpointing = ("activation_checkpointing"
                     if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
                     else "gradient_checkpointing")
    return TrainingArguments(
        output_dir=config.output_dir, per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate, weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps, lr_scheduler_type=config.lr_scheduler,
        max_grad_norm=config.max_grad_norm, max_steps=config.max_steps,
        num_train_epochs=1, logging_steps=config.logging_steps,  # one pass over the run's sampler
        save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=config.save_total_limit or None, seed=config.seed, data_seed=config.seed,
        bf16=config.bf16, fp16=config.fp16,
        use_cpu=config.use_cpu, deepspeed=deepspeed, report_to=config.report_to or "none",
        dataloader_num_workers=config.dataloader_num_workers, remove_unused_columns=False,
        ignore_data_skip=False, disable_tqdm=not progress,
        **{checkpointing: config.gradient_checkpointing},
    )


def _run_sampler(config: PretrainConfig, indexed: IndexedDataset, world_size: int) -> MixtureSampler:
    """The order of every sample the run will see, across all ranks."""
    samples_per_epoch = config.samples_per_epoch or len(indexed)
    global_batch = config.per_device_batch_size * config.gradient_accumulation_steps * world_size
    total = (config.max_steps * global_batch if config.max_steps > 0
             else math.ceil(config.num_epochs * samples_per_epoch))
    return MixtureSampler(indexed.source_ids, mixing_weights(indexed, config.mix), config.seed,
                          samples_per_epoch, total_samples=total)


def _load_model(config: PretrainConfig, indexed: IndexedDataset) -> Any:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(config.seed)
    if config.from_scratch:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config.model))
    else:
        model = AutoModelForCausalLM.from_pretrained(config.model)
    vocab = indexed.metadata.get("vocab_size")
    if vocab and vocab > model.get_input_embeddings().num_embeddings:
        raise ValueError(f"{config.data}: dataset vocabulary ({vocab}) is larger than the model's "
                         f"embedding table ({model.get_input_embeddings().num_embeddings}); "
                         "prepare the corpus with the model's tokenizer")
    return model


@functools.cache
def _trainer_class() -> type:
    # built on first use so that importing this module does not import torch
    from transformers import Trainer

    class _PretrainTrainer(Trainer):
        """Trainer with the mixture sampler and an optional per-step log of sample ids."""

        def __init__(self, *args, sampler: MixtureSampler, sample_log: Path | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self._mixture_sampler = sampler
            self._sample_log = sample_log

        def _get_train_sampler(self, train_dataset=None):
            return self._mixture_sampler

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            sample_index = inputs.pop("sample_index", None)
            if self._sample_log is not None and sample_index is not None and model.training:
                path = self._sample_log / SAMPLE_LOG.format(rank=self.args.process_index)
                with open(path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"step": self.state.global_step,
                                             "ids": sample_index.tolist()}) + "\n")
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return _PretrainTrainer


def run_pretraining(config: PretrainConfig, callbacks: list | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Train per ``config`` (resuming per ``config.resume``); returns the final train metrics."""
    trainer = build_trainer(config, callbacks, progress)
    if trainer.is_world_process_zero():
        save_run_config(config, config.output_dir, CONFIG_FILENAME)
    checkpoint = find_resume_checkpoint(config.output_dir, config.resume)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(config.output_dir)
    trainer.save_state()
    metrics = dict(result.metrics)
    metrics["global_step"] = trainer.state.global_step
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    metrics["losses"] = losses
    metrics["first_loss"] = losses[0] if losses else math.nan
    metrics["last_loss"] = losses[-1] if losses else math.nan
    return metrics
