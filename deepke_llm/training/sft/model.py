"""The model side of SFT: precision, tokenizer, and the base model wrapped for LoRA / QLoRA / full
fine-tuning (or continued from a trained adapter)."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from deepke_llm.training.sft.config import SftConfig

__all__ = ["FAMILY_TARGET_MODULES", "default_target_modules", "load_model", "load_tokenizer",
           "resolve_precision"]

_ATTENTION_MLP = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# LoRA targets per model_type: every linear projection of attention and MLP (QLoRA paper's
# finding: adapting all of them matters more than the rank).
FAMILY_TARGET_MODULES: dict[str, list[str]] = {
    **{name: _ATTENTION_MLP for name in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma",
                                          "gemma2", "gemma3", "gemma3_text", "internlm2")},
    "baichuan": ["W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "chatglm": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
}


def default_target_modules(model_type: str) -> list[str] | str:
    """LoRA target modules for a model family; ``"all-linear"`` (peft) for unknown families."""
    return FAMILY_TARGET_MODULES.get(model_type, "all-linear")


def resolve_precision(precision: str) -> str:
    """``auto`` -> bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def load_tokenizer(config: SftConfig) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.model,
                                              trust_remote_code=config.trust_remote_code)
    if tokenizer.pad_token is None:
        # Padding is masked out of attention and labels, so any existing token will do.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_model(config: SftConfig, precision: str) -> Any:
    """The base model, quantized for QLoRA and wrapped with LoRA unless ``method`` is full."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(config.model, **_load_kwargs(config, precision))
    model.config.use_cache = False  # the KV cache is useless (and costly) in training
    if config.method == "full":
        return model
    return _with_lora(model, config)


def _load_kwargs(config: SftConfig, precision: str) -> dict[str, Any]:
    import torch
    import transformers

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    # full fine-tuning keeps fp32 master weights (autocast or DeepSpeed does the rest)
    dtype = torch.float32 if config.method == "full" else dtypes[precision]
    major = int(transformers.__version__.split(".")[0])
    kwargs: dict[str, Any] = {"trust_remote_code": config.trust_remote_code,
                              ("dtype" if major >= 5 else "torch_dtype"): dtype}
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    if config.method == "qlora":
        kwargs["quantization_config"] = _qlora_quantization(dtypes[precision])
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    return kwargs


def _with_lora(model: Any, config: SftConfig) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.init_adapter:
        # continued training (e.g. OneKE on in-domain data): start from a trained adapter; its
        # own adapter_config decides rank and target modules
        from peft import PeftModel

        return PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
    targets = config.target_modules or default_target_modules(model.config.model_type)
    if targets == ["all-linear"]:
        targets = "all-linear"
    lora = LoraConfig(task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=targets,
                      modules_to_save=config.modules_to_save or None)
    return get_peft_model(model, lora)


def _qlora_quantization(compute_dtype: Any) -> Any:
    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("method: qlora needs a CUDA GPU and bitsandbytes (pip install "
                         "'deepke-llm[quant]'); use --method lora on this machine")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)
