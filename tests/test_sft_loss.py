"""The response-only LM-head loss equals full-logits cross-entropy (peft, packing, softcapping).

How much faster it is with a big vocabulary is measured by benchmarks/perf/sft_loss_throughput.py."""

from __future__ import annotations

import pytest

from deepke_llm.training.sft import loss as sft_loss
from deepke_llm.training.sft.data import (
    SftCollator,
    pack_examples,
    read_sft_records,
    tokenize_records,
)
from deepke_llm.training.sft.loss import full_logits_loss, response_only_loss, unwrap_causal_lm

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def examples(tiny_tokenizer, iepile_file):
    return tokenize_records(read_sft_records(iepile_file), tiny_tokenizer, "plain", 4096)


@pytest.fixture()
def lora_model(tiny_llama_dir):
    """The tiny LLaMA with non-zero LoRA weights on attention and on the LM head itself."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    torch.manual_seed(0)
    config = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, init_lora_weights=False,
                        target_modules=["q_proj", "v_proj", "down_proj", "lm_head"])
    return get_peft_model(model, config)


def _lora_grads(model) -> dict[str, object]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_response_only_loss_and_grads_equal_full_cross_entropy(lora_model, examples):
    batch = SftCollator(pad_token_id=0)(examples)
    reference = lora_model(**batch).loss  # transformers' own masked CE over all logits
    reference.backward()
    ref_grads = _lora_grads(lora_model)
    lora_model.zero_grad()
    loss = response_only_loss(lora_model, batch)
    loss.backward()
    grads = _lora_grads(lora_model)
    assert torch.allclose(loss, reference, atol=1e-5)
    assert torch.allclose(full_logits_loss(lora_model, batch), reference, atol=1e-5)
    assert ref_grads.keys() == grads.keys() and any("lm_head" in n for n in grads)
    for name, grad in grads.items():
        assert torch.allclose(grad, ref_grads[name], atol=1e-5), name
    # with the token count of a whole accumulated batch the sum is divided by that count
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    halved = response_only_loss(lora_model, batch, num_items_in_batch=2 * labelled)
    assert torch.allclose(halved * 2, reference, atol=1e-5)


def test_fallback_without_logits_slicing_gathers_hidden_states(lora_model, examples):
    batch = SftCollator(pad_token_id=0)(examples)
    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    with torch.no_grad():
        logits = sft_loss._gathered_logits(lora_model, unwrap_causal_lm(lora_model), batch, keep)
        targets = labels[:, 1:][labels[:, 1:] != -100]
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
        assert logits.shape[0] == int(keep.sum()) < labels.numel() // 4
        assert torch.allclose(loss, lora_model(**batch).loss, atol=1e-5)


def test_final_logit_softcapping_is_applied(tiny_tokenizer, examples):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(vocab_size=len(tiny_tokenizer), hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=16, final_logit_softcapping=2.0, pad_token_id=0)
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config)
    model.lm_head.weight.data.normal_(0, 1.0)  # large logits, so the cap changes the loss
    batch = SftCollator(pad_token_id=0)(examples)
    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    targets = labels[:, 1:][labels[:, 1:] != -100]
    with torch.no_grad():
        reference = model(**batch).loss
        manual = torch.nn.functional.cross_entropy(
            sft_loss._gathered_logits(model, model, batch, keep).float(), targets)
        hidden = model.get_decoder()(**{k: batch[k] for k in ("input_ids", "attention_mask")})[0]
        uncapped = torch.nn.functional.cross_entropy(model.lm_head(hidden[keep]), targets)
        assert torch.allclose(response_only_loss(model, batch), reference, atol=1e-5)
        assert torch.allclose(manual, reference, atol=1e-5)
        assert not torch.allclose(uncapped, reference, atol=1e-2)


def test_packed_rows_give_the_unpacked_loss(lora_model, examples):
    unpacked = SftCollator(pad_token_id=0)(examples)
    packed = SftCollator(pad_token_id=0)(pack_examples(examples, 4096))
    assert packed["input_ids"].shape[0] == 1
    with torch.no_grad():
        reference = lora_model(**unpacked).loss
        assert torch.allclose(response_only_loss(lora_model, packed), reference, atol=1e-5)
        assert torch.allclose(full_logits_loss(lora_model, packed), reference, atol=1e-5)
        # without the position ids restarting, examples would attend to each other
        leaky = {"input_ids": packed["input_ids"], "labels": packed["labels"]}
        assert not torch.allclose(response_only_loss(lora_model, leaky), reference, atol=1e-3)
