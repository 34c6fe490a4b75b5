"""The pretraining run config: one dataclass, one field per key of a recipe such as
``training/pretrain/pretrain.yaml``.

Fields carry their help (and lower bounds) in their metadata, as every training config does
(:func:`deepke_llm.config.config_field`); ``training/pretrain/README.md`` documents each
one (a test keeps it complete). The resolved config is saved as ``pretrain_config.json`` next to
the outputs with the package version; unknown keys in an old config warn instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepke_llm.config import check_ranges, config_field

__all__ = ["CONFIG_FILENAME", "PretrainConfig"]

CONFIG_FILENAME = "pretrain_config.json"


@dataclass
class PretrainConfig:
    """A pretraining run; saved as ``pretrain_config.json`` in the output directory."""

    model: str = config_field(help="base model directory or hub id (weights, or only its config with from_scratch)")
    data: str = config_field(help="indexed dataset prefix written by `pretrain prepare` / `merge`")
    output_dir: str = config_field("runs/pretrain", help="checkpoints, final model and logs go here")
    mix: dict = config_field({}, help="source name -> mixing weight; empty = natural proportions; "
                                      "sources left out are not used")
    samples_per_epoch: int = config_field(0, minimum=0, help="samples drawn per epoch (0 = dataset size)")
    seed: int = config_field(42, help="seed of the data order and of model init")
    max_steps: int = config_field(-1, help="optimizer steps to train (-1 = num_epochs)")
    num_epochs: float = config_field(1.0, help="epochs to train when max_steps is -1")
    per_device_batch_size: int = config_field(4, minimum=1, help="samples per device per micro-batch")
    gradient_accumulation_steps: int = config_field(1, minimum=1, help="micro-batches per optimizer step")
    learning_rate: float = config_field(3e-4, help="peak learning rate")
    weight_decay: float = config_field(0.0, help="AdamW weight decay")
    warmup_steps: int = config_field(0, help="linear warm-up steps")
    lr_scheduler: str = config_field("cosine", help="transformers scheduler name (cosine, linear, constant, ...)")
    max_grad_norm: float = config_field(1.0, help="gradient clipping norm")
    logging_steps: int = config_field(10, minimum=1, help="log loss every N steps")
    save_steps: int = config_field(500, minimum=1, help="checkpoint every N steps")
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
        check_ranges(self)  # the lower bounds in the fields' metadata
        if self.bf16 and self.fp16:
            raise ValueError("pretrain config: choose one of bf16 and fp16")
        if not isinstance(self.mix, dict) or any(not isinstance(w, int | float) or w < 0
                                                 for w in self.mix.values()):
            raise ValueError("pretrain config: mix must map source names to non-negative weights")
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]
