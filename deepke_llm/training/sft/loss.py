"""The SFT loss, computed only where it is needed.

Only positions whose next token is labelled (the response, by default) go through the LM head.
With 150k-260k vocabularies the head's logits dominate memory and time, and an IE prompt (schema
+ text) is usually much longer than its JSON answer, so most of the head's work would be thrown
away by the label mask anyway. The loss is the same token-summed cross-entropy the full-logits
path computes, so the two agree to float precision.

How the positions are selected: transformers' causal LMs slice hidden states before the head with
``logits_to_keep``, which accepts a boolean (batch, seq) mask; passing it keeps the computation
inside the model's own forward, so peft (LoRA on the head or not), DeepSpeed / DDP wrappers and
model-specific head extras (Gemma's final logit softcapping) all apply unchanged. Models whose
forward cannot slice (remote code) fall back to running the decoder, gathering the hidden states
and applying the output embedding (+ softcapping) here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from deepke_llm.training.sft.data import IGNORE_INDEX

__all__ = ["causal_lm_loss", "full_logits_loss", "response_only_loss",
           "unwrap_causal_lm"]

logger = logging.getLogger(__name__)


def unwrap_causal_lm(model: Any) -> Any:
    """The transformers causal LM inside DDP / DeepSpeed / peft wrappers."""
    while hasattr(model, "module") and not hasattr(model, "get_output_embeddings"):
        model = model.module  # DDP and DeepSpeed engines keep the model in .module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()  # peft: the base model, with LoRA layers injected in place
    return model


def _model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    keys = ("input_ids", "attention_mask", "position_ids")
    return {k: batch[k] for k in keys if batch.get(k) is not None}


def _reduce(losses_sum: Any, count: Any, num_items_in_batch: Any) -> Any:
    # Summed over tokens, divided by the labelled tokens of the whole accumulated batch when the
    # Trainer knows it (so gradient accumulation weighs every token equally), else of this batch.
    divisor = num_items_in_batch if num_items_in_batch is not None else max(int(count), 1)
    return losses_sum / divisor


def _cross_entropy_sum(logits: Any, targets: Any) -> Any:
    import torch.nn.functional as F

    return F.cross_entropy(logits.float(), targets, reduction="sum")


def full_logits_loss(model: Any, batch: dict[str, Any], num_items_in_batch: Any = None) -> Any:
    """Masked next-token cross-entropy from logits at every position (the standard way)."""
    labels = batch["labels"]
    logits = model(**_model_inputs(batch), use_cache=False).logits
    shift_logits = logits[:, :-1, :].reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    keep = shift_labels != IGNORE_INDEX
    return _reduce(_cross_entropy_sum(shift_logits[keep], shift_labels[keep]), keep.sum(),
                   num_items_in_batch)


def _slices_before_head(causal_lm: Any) -> bool:
    """Whether the model's forward takes a boolean ``logits_to_keep`` mask (transformers >= 5)."""
    module = sys.modules.get(type(causal_lm).__module__)
    return module is not None and hasattr(module, "slice_logits_to_keep")


def response_only_loss(model: Any, batch: dict[str, Any], num_items_in_batch: Any = None) -> Any:
    """The same loss as :func:`full_logits_loss`, projecting only labelled positions."""
    import torch

    labels = batch["labels"]
    target_mask = labels[:, 1:] != IGNORE_INDEX
    targets = labels[:, 1:][target_mask]
    # keep[b, t]: position t predicts a labelled token labels[b, t + 1]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = target_mask
    causal_lm = unwrap_causal_lm(model)
    if _slices_before_head(causal_lm):
        logits = model(**_model_inputs(batch), use_cache=False, logits_to_keep=keep).logits
    else:
        logits = _gathered_logits(model, causal_lm, batch, keep)
    logits = logits.reshape(-1, logits.shape[-1])
    return _reduce(_cross_entropy_sum(logits, targets), targets.numel(), num_items_in_batch)


def _gathered_logits(model: Any, causal_lm: Any, batch: dict[str, Any], keep: Any) -> Any:
    """Decoder -> hidden states at ``keep`` -> output embedding -> softcapping, done here."""
    import torch

    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        # Calling submodules would bypass DDP's forward and with it the gradient all-reduce.
        logger.warning("response-only head: %s cannot slice logits under DDP; using full logits",
                       type(causal_lm).__name__)
        full = model(**_model_inputs(batch), use_cache=False).logits
        return full[keep]
    decoder = causal_lm.get_decoder()
    hidden = decoder(**_model_inputs(batch), use_cache=False)[0]
    logits = causal_lm.get_output_embeddings()(hidden[keep])
    config = causal_lm.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    cap = getattr(text_config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def causal_lm_loss(model: Any, batch: dict[str, Any], num_items_in_batch: Any = None,
                   response_only_head: bool = True) -> Any:
    """Response-only-head loss by default; ``response_only_head=False`` computes all logits."""
    if response_only_head:
        return response_only_loss(model, batch, num_items_in_batch)
    return full_logits_loss(model, batch, num_items_in_batch)
