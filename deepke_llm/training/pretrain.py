"""Pretraining (continued or from scratch) of a causal LM on an indexed dataset with HF Trainer.

Data order is a pure function of ``(seed, position in the run)``: :class:`MixtureSampler` draws
each data epoch's samples from every source according to the mixing weights, shuffled with
generators seeded by ``(seed, epoch)`` only, and spans the whole run as one Trainer epoch.
Trainer's own resume (``ignore_data_skip=False``: skip the batches already trained) therefore
continues exactly where a run stopped, on one process or many, with no script to skip seen data.
Trainer's logged ``epoch`` is thus the fraction of the run done, not the data epoch."""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepke_llm.training.common import (
    config_field,
    find_resume_checkpoint,
    resolve_deepspeed_config,
    save_run_config,
)
from deepke_llm.training.indexed_dataset import IndexedDataset

logger = logging.getLogger(__name__)

CONFIG_FILENAME = "pretrain_config.json"
SAMPLE_LOG = "sample_ids.rank{rank}.jsonl"


@dataclass
class PretrainConfig:
    """A pretraining run; saved as ``pretrain_config.json`` in the output directory."""

    model: str = config_field(help="base model directory or hub id (weights, or only its config with from_scratch)")
    data: str = config_field(help="indexed dataset prefix written by `pretrain prepare` / `merge`")
    output_dir: str = config_field("runs/pretrain", help="checkpoints, final model and logs go here")
    mix: dict = config_field({}, help="source name -> mixing weight; empty = natural proportions; "
                                      "sources left out are not used")
    samples_per_epoch: int = config_field(0, help="samples drawn per epoch (0 = dataset size)")
    seed: int = config_field(42, help="seed of the data order and of model init")
    max_steps: int = config_field(-1, help="optimizer steps to train (-1 = num_epochs)")
    num_epochs: float = config_field(1.0, help="epochs to train when max_steps is -1")
    per_device_batch_size: int = config_field(4, help="samples per device per micro-batch")
    gradient_accumulation_steps: int = config_field(1, help="micro-batches per optimizer step")
    learning_rate: float = config_field(3e-4, help="peak learning rate")
    weight_decay: float = config_field(0.0, help="AdamW weight decay")
    warmup_steps: int = config_field(0, help="linear warm-up steps")
    lr_scheduler: str = config_field("cosine", help="transformers scheduler name (cosine, linear, constant, ...)")
    max_grad_norm: float = config_field(1.0, help="gradient clipping norm")
    logging_steps: int = config_field(10, help="log loss every N steps")
    save_steps: int = config_field(500, help="checkpoint every N steps")
    save_total_limit: int = config_field(3, help="keep at most N checkpoints (0 = all)")
    resume: str = config_field("auto", help="'auto' (latest checkpoint in output_dir), 'none' or a checkpoint dir")
    deepspeed: str = config_field("", help="zero2, zero3, zero3_offload or a DeepSpeed JSON path; empty = off")
    bf16: bool = config_field(False, help="bfloat16 mixed precision")
    fp16: bool = config_field(False, help="float16 mixed precision")
    gradient_checkpointing: bool = config_field(False, help="trade compute for activation memory")
    use_cpu: bool = config_field(False, help="train on CPU even when a GPU is present")
    from_scratch: bool = config_field(False, help="random init from the model's config instead of its weights")
    dataloader_num_workers: int = config_field(0, help="DataLoader worker processes")
    report_to: list = config_field([], help="trackers for transformers (e.g. ['tensorboard']); empty = none")
    log_sample_ids: bool = config_field(False, help="write the sample ids of every step to "
                                                    "sample_ids.rank<R>.jsonl (audit the data order)")

    def __post_init__(self) -> None:
        for name in ("model", "data"):
            if not getattr(self, name):
                raise ValueError(f"pretrain config: '{name}' is required")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"pretrain config: max_steps must be positive or -1, got {self.max_steps}")
        if self.max_steps == -1 and self.num_epochs <= 0:
            raise ValueError("pretrain config: num_epochs must be positive when max_steps is -1")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"pretrain config: {name} must be >= 1, got {getattr(self, name)}")
        if self.samples_per_epoch < 0:
            raise ValueError("pretrain config: samples_per_epoch must be >= 0")
        if self.bf16 and self.fp16:
            raise ValueError("pretrain config: choose one of bf16 and fp16")
        if not isinstance(self.mix, dict) or any(not isinstance(w, int | float) or w < 0
                                                 for w in self.mix.values()):
            raise ValueError("pretrain config: mix must map source names to non-negative weights")
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]


def source_quotas(counts: np.ndarray, weights: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` samples over sources in proportion to ``weights`` (largest remainder)."""
    weights = np.where(counts > 0, weights, 0.0).astype(np.float64)
    if weights.sum() <= 0:
        raise ValueError("mixing weights select no source that has samples")
    exact = total * weights / weights.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = total - int(quotas.sum())
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[:remainder]] += 1
    return quotas


class MixtureSampler:
    """The run's sample order, mixing sources by weight; a pure function of ``(seed, position)``.

    Data epochs of ``samples_per_epoch`` samples follow each other: each source is read as an
    endless sequence of seeded permutations of its samples, so an up-weighted source repeats only
    after all its samples were seen and a down-weighted one shows new samples every epoch; an
    epoch's picks from all sources are shuffled together with a generator seeded by the epoch.

    The sampler spans the whole run (``total_samples``), so the Trainer sees a single epoch and
    its resume (skip the batches already trained) lands exactly, on every rank: nothing depends
    on ``set_epoch`` reaching the sampler, which accelerate does not guarantee once the sampler is
    wrapped for several processes and for skipping.
    """

    def __init__(self, source_ids: np.ndarray, weights: np.ndarray, seed: int,
                 samples_per_epoch: int, total_samples: int | None = None) -> None:
        source_ids = np.asarray(source_ids)
        num_sources = len(weights)
        self.by_source = [np.flatnonzero(source_ids == s) for s in range(num_sources)]
        counts = np.array([len(ix) for ix in self.by_source], dtype=np.int64)
        self.quotas = source_quotas(counts, np.asarray(weights, dtype=np.float64), samples_per_epoch)
        self.seed = seed
        self.samples_per_epoch = int(samples_per_epoch)
        self.num_samples = int(total_samples if total_samples is not None else samples_per_epoch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Trainer epoch (one per pass over this sampler); only 0 in runs built by build_trainer."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        # a Trainer epoch after the first continues the sequence instead of replaying it
        start = self.epoch * self.num_samples
        stop = start + self.num_samples
        data_epoch, offset = divmod(start, self.samples_per_epoch)
        position = start
        while position < stop:
            order = self.epoch_order(data_epoch)[offset:offset + stop - position]
            yield from order.tolist()
            position += len(order)
            data_epoch, offset = data_epoch + 1, 0

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Dataset indices of epoch ``epoch``, in training order."""
        picks = []
        for source, (indices, quota) in enumerate(zip(self.by_source, self.quotas, strict=True)):
            if quota:
                picks.append(self._stream_slice(source, indices, epoch * int(quota), int(quota)))
        order = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
        return order[np.random.default_rng([self.seed, 1, epoch]).permutation(len(order))]

    def _stream_slice(self, source: int, indices: np.ndarray, start: int, count: int) -> np.ndarray:
        size = len(indices)
        out = []
        while count > 0:
            sweep, offset = divmod(start, size)
            perm = np.random.default_rng([self.seed, 0, source, sweep]).permutation(size)
            take = min(count, size - offset)
            out.append(indices[perm[offset:offset + take]])
            start += take
            count -= take
        return np.concatenate(out)


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


def mixing_weights(indexed: IndexedDataset, mix: dict[str, float]) -> np.ndarray:
    """Weights per source id: the configured ones, or natural proportions (sample counts)."""
    names = indexed.source_names
    if not mix:
        return indexed.samples_per_source().astype(np.float64)
    unknown = sorted(set(mix) - set(names))
    if unknown:
        raise ValueError(f"mix: unknown sources {unknown}; the dataset has {names}")
    left_out = [n for n in names if n not in mix]
    if left_out:
        logger.info("mix: sources %s are not used (weight 0)", left_out)
    return np.array([float(mix.get(n, 0.0)) for n in names])


def build_trainer(config: PretrainConfig, callbacks: list | None = None):
    """Model, data, sampler and TrainingArguments of a run, wired into a Trainer (not started)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    indexed = IndexedDataset(config.data)
    samples_per_epoch = config.samples_per_epoch or len(indexed)

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model)
    except (OSError, ValueError):
        # a from-scratch model dir may hold only a config: use the tokenizer the data was made with
        recorded = indexed.metadata.get("tokenizer")
        if not recorded:
            raise
        tokenizer = AutoTokenizer.from_pretrained(recorded)
    deepspeed = resolve_deepspeed_config(config.deepspeed)
    if deepspeed:
        from deepke_llm.training.deepspeed_setup import prepare_deepspeed

        prepare_deepspeed()
    args = TrainingArguments(
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
        ignore_data_skip=False,
        # renamed in transformers 5 (the old name warns)
        **{("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
            else "gradient_checkpointing"): config.gradient_checkpointing},
    )
    global_batch = config.per_device_batch_size * config.gradient_accumulation_steps * args.world_size
    total = (config.max_steps * global_batch if config.max_steps > 0
             else math.ceil(config.num_epochs * samples_per_epoch))
    sampler = MixtureSampler(indexed.source_ids, mixing_weights(indexed, config.mix), config.seed,
                             samples_per_epoch, total_samples=total)
    # built after TrainingArguments so that ZeRO-3 can partition the weights while loading
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
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        pad_id = 0

    trainer = _trainer_class()(
        model=model, args=args, train_dataset=PackedSamples(indexed), processing_class=tokenizer,
        data_collator=functools.partial(collate_packed, pad_id=pad_id), callbacks=callbacks,
        sampler=sampler, sample_log=Path(config.output_dir) if config.log_sample_ids else None,
    )
    return trainer


@functools.cache
def _trainer_class():
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


def __getattr__(name: str):
    # the Trainer subclass is built on first use so importing this module does not import torch
    if name == "PretrainTrainer":
        return _trainer_class()
    raise AttributeError(name)


def run_pretraining(config: PretrainConfig, callbacks: list | None = None) -> dict[str, Any]:
    """Train per ``config`` (resuming per ``config.resume``); returns the final train metrics."""
    trainer = build_trainer(config, callbacks)
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
