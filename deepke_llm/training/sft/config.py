"""The instruction-tuning run config: one dataclass, one field per ``deepke-llm train sft`` option.

Recipes under ``training/sft/`` are files of these fields; ``--config FILE`` loads one and command
line flags override it. The resolved config is saved next to the outputs with the package version
(``sft_config.json``), and loading an older config ignores keys it no longer knows, with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepke_llm.config import check_ranges, config_field
from deepke_llm.training.common import config_from_dict, load_run_config

__all__ = ["CONFIG_FILENAME", "METHODS", "PRECISIONS", "SftConfig", "load_sft_config"]

CONFIG_FILENAME = "sft_config.json"
METHODS = ("lora", "qlora", "full")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DATA_FORMATS = ("auto", "iepile", "alpaca")
TEMPLATES = ("auto", "tokenizer", "oneke", "llama2_zh", "alpaca", "plain")


@dataclass
class SftConfig:
    """Everything one instruction-tuning run needs; validated on construction."""

    model: str = config_field("", help="Base model: a Hugging Face model dir or hub id.")
    train_file: str = config_field("", help="Training data, JSON lines in IEPile layout "
                                   "(id, task, source, instruction, output) or Alpaca "
                                   "(instruction, input, output).")
    output_dir: str = config_field("", help="Where the adapter (or full weights), tokenizer, run "
                                   "config, training log and checkpoints are written.")
    data_format: str = config_field("auto", help="iepile, alpaca, or auto (a line with an 'input' "
                                    "field is Alpaca, any other line IEPile).")
    chat_template: str = config_field("auto", help="How prompts are rendered, exactly as the "
                                      "extractor renders them: auto (the tokenizer's chat template "
                                      "if it has one, else plain), tokenizer, oneke, alpaca, plain. "
                                      "Alpaca lines always use the alpaca template.")
    method: str = config_field("lora", help="lora, qlora (4-bit base via bitsandbytes, CUDA only) "
                               "or full (all weights trained).")
    init_adapter: str = config_field("", help="Continue training this LoRA adapter dir instead "
                                     "of starting a new one (its rank and target modules apply).")
    lora_r: int = config_field(8, minimum=1, help="LoRA rank.")
    lora_alpha: int = config_field(16, minimum=1, help="LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = config_field(0.05, minimum=0, help="Dropout on the LoRA input.")
    target_modules: list[str] = config_field([], help="Modules that get LoRA adapters; empty picks "
                                             "the model family's projections (llama, mistral, "
                                             "qwen2, gemma, baichuan, chatglm), 'all-linear' "
                                             "every linear layer but the head.")
    modules_to_save: list[str] = config_field([], help="Modules trained in full and saved with the "
                                              "adapter (e.g. embed_tokens, lm_head after adding "
                                              "tokens).")
    max_len: int = config_field(1024, minimum=1, help="Longest prompt + response in tokens; "
                                "longer examples are dropped (and counted), never truncated.")
    train_on_inputs: bool = config_field(False, help="Also train on the prompt tokens (default: "
                                         "loss on the response only).")
    response_only_head: bool = config_field(True, help="Project only the positions that predict "
                                            "a labelled token through the LM head (same loss, "
                                            "much less work with big vocabularies).")
    packing: bool = config_field(False, help="Pack several examples into each row of max_len "
                                 "tokens; attention stays within each example (position ids "
                                 "restart per example).")
    group_by_length: bool = config_field(False, help="Batch examples of similar length "
                                         "(transformers' LengthGroupedSampler, shuffled in "
                                         "groups of 50 batches): far less padding when lengths "
                                         "vary; no effect with packing.")
    gradient_checkpointing: bool = config_field(False, help="Recompute activations in the "
                                                "backward pass to save memory.")
    epochs: float = config_field(3.0, minimum=0, help="Passes over the training data.")
    max_steps: int = config_field(-1, help="Stop after this many optimizer steps (-1: use epochs).")
    learning_rate: float = config_field(2e-4, minimum=0, help="Peak learning rate.")
    lr_scheduler: str = config_field("cosine", help="Learning-rate schedule (transformers "
                                     "scheduler name: cosine, linear, constant, ...).")
    warmup: float = config_field(0.03, minimum=0, help="Warmup: a fraction of the steps if < 1, "
                                 "else steps.")
    weight_decay: float = config_field(0.0, minimum=0, help="AdamW weight decay.")
    max_grad_norm: float = config_field(1.0, help="Gradient clipping norm.")
    batch_size: int = config_field(4, minimum=1, help="Examples (or packed rows) per device per "
                                   "step.")
    grad_accum: int = config_field(1, minimum=1, help="Gradient accumulation steps.")
    precision: str = config_field("auto", help="auto (bf16 on GPUs that support it, else fp16 "
                                  "on GPU, fp32 on CPU), bf16, fp16 or fp32.")
    deepspeed: str = config_field("", help="DeepSpeed config: zero2, zero3, zero3_offload "
                                  "(training/configs/ds_*.json) or a JSON path; empty: no "
                                  "DeepSpeed.")
    val_file: str = config_field("", help="Validation data (same layout as train_file).")
    val_size: float = config_field(0.0, minimum=0, help="Hold out this many training lines for "
                                   "validation (a fraction if < 1); ignored when val_file is "
                                   "given.")
    eval_steps: int = config_field(0, minimum=0, help="Evaluate every N steps (0: once per epoch).")
    eval_fn: str = config_field("", help="'module:function' called as fn(model, tokenizer, "
                                "records) -> metrics at each evaluation, e.g. extraction F1; "
                                "'builtin' generates greedily and scores the outputs.")
    eval_max_records: int = config_field(200, minimum=1, help="Validation lines eval_fn "
                                         "generates for.")
    eval_max_new_tokens: int = config_field(512, minimum=1, help="Generation budget per record "
                                            "in eval_fn.")
    logging_steps: int = config_field(10, minimum=1, help="Log loss every N steps.")
    save_steps: int = config_field(500, minimum=0, help="Checkpoint every N steps (0: only at "
                                   "the end).")
    save_total_limit: int = config_field(2, minimum=0, help="Checkpoints kept (oldest deleted).")
    resume: str = config_field("", help="auto (latest checkpoint in output_dir, if any), a "
                               "checkpoint dir, or empty to start fresh.")
    merge: bool = config_field(False, help="Also save the base model with the adapter merged in "
                               "(output_dir/merged), streamed shard by shard from the base "
                               "checkpoint like `deepke-llm weights merge-lora` (LoRA and QLoRA).")
    seed: int = config_field(42, help="Seed for initialisation, shuffling and the val split.")
    attn_implementation: str = config_field("", help="Attention kernel (sdpa, eager, "
                                            "flash_attention_2); empty: transformers' default.")
    trust_remote_code: bool = config_field(False, help="Run model code shipped with the "
                                           "checkpoint (Baichuan, ChatGLM).")

    def __post_init__(self) -> None:
        self.target_modules = _as_list(self.target_modules)
        self.modules_to_save = _as_list(self.modules_to_save)
        choices = {"method": METHODS, "precision": PRECISIONS, "data_format": DATA_FORMATS,
                   "chat_template": TEMPLATES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: '{getattr(self, name)}' is not one of "
                                 f"{', '.join(allowed)}")
        # the lower bounds are in each field's metadata (shared with the command line); what a
        # single bound cannot say is checked here
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if self.val_size < 0 or (self.val_size >= 1 and self.val_size != int(self.val_size)):
            raise ValueError(f"val_size: a fraction in [0, 1) or a whole number of lines, "
                             f"got {self.val_size}")
        check_ranges(self)
        if self.max_steps < 1 and self.epochs <= 0:
            raise ValueError("epochs: must be > 0 unless max_steps is set")
        if self.merge and self.method == "full":
            raise ValueError("merge: method full trains the whole model, there is no adapter to "
                             "merge; drop --merge")

    def check_required(self) -> None:
        """Raise for the fields a run cannot start without (checked at run time, not on load)."""
        for name in ("model", "train_file", "output_dir"):
            if not getattr(self, name):
                raise ValueError(f"{name}: required (pass --{name.replace('_', '-')} or set it "
                                 "in the --config file)")


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value]


def load_sft_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> SftConfig:
    """A config from a recipe file (JSON/YAML; unknown keys warn) with ``overrides`` on top.

    ``None`` values in ``overrides`` mean "not given" and leave the file's value in place.
    """
    if path:
        return load_run_config(path, SftConfig, overrides)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return config_from_dict(given, SftConfig, source="command line")
