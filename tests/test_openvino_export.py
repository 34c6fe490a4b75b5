"""The OpenVINO export of a tiny Gemma 3 (sliding and full attention layers, a LoRA merged in):
the IR's logits equal transformers' step by step, past the sliding window, and
openvino_genai.LLMPipeline runs the exported directory with transformers' greedy tokens."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from tiny_models import train_tokenizer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("openvino_genai") is None
    or importlib.util.find_spec("openvino_tokenizers") is None,
    reason="openvino-genai is not installed (pip install deepke-llm[openvino])")

WINDOW = 8
PROMPTS = ["Japan began the defence of their Asian Cup title with a lucky win against Syria .",
           "Edison died in West Orange ."]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    from deepke_llm.backends.openvino_export import export_openvino

    root = tmp_path_factory.mktemp("ov")
    tokenizer = AutoTokenizer.from_pretrained(str(train_tokenizer(root / "tokenizer")))
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=1, head_dim=32, sliding_window=WINDOW,
        query_pre_attn_scalar=32, layer_types=["sliding_attention"] * 3 + ["full_attention"],
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id or 0)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    adapter = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"],
                                               init_lora_weights=False))
    adapter.save_pretrained(root / "adapter")
    merged = adapter.merge_and_unload().eval()
    out = export_openvino(root / "model", root / "ir", lora=root / "adapter")
    return merged, tokenizer, out


def test_the_ir_has_the_ports_and_state_llm_pipeline_reads(exported):
    import openvino as ov

    _, _, out = exported
    model = ov.Core().read_model(str(out / "openvino_model.xml"))
    assert [p.get_any_name() for p in model.inputs] == [
        "input_ids", "attention_mask", "position_ids", "beam_idx"]
    assert [p.get_any_name() for p in model.outputs] == ["logits"]
    assert len(model.get_sinks()) == 2 * 4  # keys and values of 4 layers are the model's state
    assert {"openvino_tokenizer.xml", "openvino_detokenizer.xml", "config.json"} <= {
        p.name for p in out.iterdir()}
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))  # written beside, renamed into place


def test_logits_equal_transformers_step_by_step_past_the_sliding_window(exported):
    import openvino as ov
    import torch
    from transformers.cache_utils import DynamicCache

    merged, tokenizer, out = exported
    compiled = ov.Core().compile_model(str(out / "openvino_model.xml"), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"})
    for text in PROMPTS:
        ids = tokenizer(text)["input_ids"]
        request = compiled.create_infer_request()
        request.reset_state()
        cache = DynamicCache(config=merged.config)
        feed, seen = ids, 0
        for _ in range(4):  # the prompt, then 3 greedy tokens one at a time
            seen += len(feed)
            positions = np.arange(seen - len(feed), seen)[None]
            request.infer({"input_ids": np.array([feed]), "attention_mask": np.ones((1, seen), np.int64),
                           "position_ids": positions, "beam_idx": np.array([0], np.int32)})
            got = request.get_tensor("logits").data[0, -1]
            with torch.no_grad():
                want = merged(input_ids=torch.tensor([feed]), past_key_values=cache, use_cache=True,
                              position_ids=torch.tensor(positions)).logits[0, -1].numpy()
            np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)
            feed = [int(want.argmax())]
        assert seen > WINDOW  # the sliding layers had to drop tokens


def test_llm_pipeline_generates_transformers_greedy_tokens(exported):
    import openvino as ov
    import openvino_genai
    import torch

    merged, tokenizer, out = exported
    pipeline = openvino_genai.LLMPipeline(str(out), "CPU", INFERENCE_PRECISION_HINT="f32",
                                          KV_CACHE_PRECISION="f32")
    settings = openvino_genai.GenerationConfig()
    settings.max_new_tokens, settings.do_sample, settings.ignore_eos = 12, False, True
    for text in PROMPTS:
        ids = tokenizer(text)["input_ids"]
        got = list(pipeline.generate(ov.Tensor(np.array([ids], dtype=np.int64)), settings).tokens[0])
        with torch.no_grad():
            want = merged.generate(torch.tensor([ids]), max_new_tokens=12, min_new_tokens=12,
                                   do_sample=False)[0, len(ids):].tolist()
        assert got == want, text
