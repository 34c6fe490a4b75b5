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


def test_the_openvino_backend_answers_as_transformers_in_batches(exported, tmp_path, monkeypatch):
    from deepke_llm.backends.base import GenerationConfig
    from deepke_llm.backends.hf import HFBackend
    from deepke_llm.backends.registry import load_backend
    from deepke_llm.prompts.chat import Prompt

    _, _, out = exported
    monkeypatch.setenv("DEEPKE_CACHE", str(tmp_path / "cache"))
    model, adapter = out.parent / "model", out.parent / "adapter"
    with pytest.raises(ValueError, match=r"^--engine openvino needs at least 2 CPU threads"):
        load_backend(backend="openvino", model=str(model), lora=str(adapter), threads=1)
    # float32 throughout: a random tiny model's logits are near ties that bf16 would flip
    backend = load_backend(backend="openvino", model=str(model), lora=str(adapter), threads=2,
                           precision="f32")
    assert backend.ir_dir.parent == tmp_path / "cache" / "openvino"  # exported on first use
    prompts = [Prompt(user=text) for text in PROMPTS + ["Obama visited Berlin ."]]
    config = GenerationConfig(max_new_tokens=10, batch_size=2)
    got = backend.generate(prompts, config)
    want = HFBackend(str(model), lora=str(adapter)).generate(prompts, config)
    assert got == want
    one_by_one = [backend.generate([p], config)[0] for p in prompts]
    assert one_by_one == got  # rows of different lengths batched together: padding changes nothing
    assert backend.stats.prompts == 2 * len(prompts) and backend.stats.generated_tokens > 0
    # a second backend on the same model and adapter reuses the export
    again = load_backend(backend="openvino", model=str(model), lora=str(adapter), threads=2,
                         precision="f32")
    assert again.ir_dir == backend.ir_dir


def test_extract_runs_on_openvino_from_the_command_line(exported, tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from deepke_llm.cli import main

    _, _, out = exported
    monkeypatch.setenv("DEEPKE_CACHE", str(tmp_path / "cache"))
    args = ["extract", "--task", "ner", "--schema", "conll03", "--engine", "openvino",
            "--model", str(out.parent / "model"), "--no-progress", "--max-new-tokens", "8"]
    result = CliRunner().invoke(main, [*args, "--threads", "2", "Obama visited Berlin ."])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["text"] == "Obama visited Berlin ." and len(record["raw_output"]) == 1
    assert list((tmp_path / "cache" / "openvino").iterdir())  # the model exported on first use
    refused = CliRunner().invoke(main, [*args, "--threads", "1", "Obama visited Berlin ."])
    assert refused.exit_code != 0
    assert refused.stderr.strip().startswith("error: --engine openvino needs at least 2 CPU threads")


CONSTRAINED_TEXTS = ["Japan beat Syria 2-1 in Beirut .", "Oswald killed Kennedy in Dallas .",
                     "Obama visited Berlin and Paris in June ."]


def test_constrained_answers_equal_transformers_under_the_same_constraint(exported, tmp_path,
                                                                          monkeypatch):
    """Under a decoding constraint the openvino engine runs the IR without its vocabulary head
    and computes logits for the allowed tokens only: the answers of the hf engine, which masks
    the whole vocabulary's logits; rows batched = rows alone, also with escapes."""
    from deepke_llm.backends.base import GenerationConfig
    from deepke_llm.backends.hf import HFBackend
    from deepke_llm.backends.registry import load_backend
    from deepke_llm.extractor import Extractor

    _, tokenizer, out = exported
    monkeypatch.setenv("DEEPKE_CACHE", str(tmp_path / "cache"))
    model, adapter = out.parent / "model", out.parent / "adapter"

    def answers(backend, batch_size, task, schema):
        config = GenerationConfig(max_new_tokens=40, batch_size=batch_size)
        extractor = Extractor(backend, schema, task, generation=config)
        assert extractor.constrained
        documents = extractor.extract(CONSTRAINED_TEXTS)
        assert all(d.raw_output[0].startswith("{") for d in documents)
        return [d.raw_output for d in documents]

    hf = HFBackend(str(model), lora=str(adapter))
    for task, schema in (("ner", "conll03"), ("re", "conll04")):
        backend = load_backend(backend="openvino", model=str(model), lora=str(adapter),
                               threads=2, precision="f32")
        batched = answers(backend, 3, task, schema)
        # transformers one row at a time: its own padded batches flip this random model's
        # near ties (logits 0.4768 vs 0.4790)
        assert batched == answers(hf, 1, task, schema)
        assert batched == answers(backend, 1, task, schema)
        # no row needed the whole vocabulary's logits: a small share of it was computed
        assert backend.headless.vocab_logits == 0
        share = backend.headless.allowed_logits / (backend.stats.generated_tokens * len(tokenizer))
        assert 0 < share < 0.05  # 0.4-0.5% measured
        # an escape takes tokens back (masked out of the cache): rows batched still answer as
        # they do alone
        escaping = load_backend(backend="openvino", model=str(model), lora=str(adapter),
                                threads=2, precision="f32", escape=True)
        assert answers(escaping, 3, task, schema) == answers(escaping, 1, task, schema)

def test_masked_cache_slots_and_rows_leaving_the_batch_change_no_hidden_state(exported):
    """What the constrained loop relies on: tokens masked out of attention_mask (an escape's
    taken-back tokens) and rows dropped through beam_idx leave a row's hidden state as a fresh
    run of its real tokens gives it. Within one sliding window: a masked slot still counts in
    the window, as a padding slot does in transformers' own batches."""
    from deepke_llm.backends.openvino_decode import HeadlessModel

    _, tokenizer, out = exported
    model = HeadlessModel(out, {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"})
    first, second = tokenizer("Obama")["input_ids"], tokenizer(PROMPTS[1])["input_ids"]
    tail = tokenizer("Berlin", add_special_tokens=False)["input_ids"][:1]
    assert len(first) + 2 + len(tail) <= WINDOW

    def run(request, ids, mask, positions, beam):
        return model._infer(request, np.array(ids), np.array(mask), np.array(positions),
                            np.array(beam))

    fresh = model.compiled.create_infer_request()
    fresh.reset_state()
    want = run(fresh, [first + tail], [[1] * len(first + tail)],
               [list(range(len(first + tail)))], [0])[0, -1].copy()
    request = model.compiled.create_infer_request()
    request.reset_state()
    width = len(second)  # both rows, the first left-padded
    run(request, [[0] * (width - len(first)) + first, second],
        [[0] * (width - len(first)) + [1] * len(first), [1] * width],
        [[0] * (width - len(first)) + list(range(len(first))), list(range(width))], [0, 1])
    row = [0] * (width - len(first)) + [1] * len(first)
    for step, junk in enumerate([5, 6]):  # fed to the first row alone (the second one left)
        row.append(1)
        run(request, [[junk]], [row], [[len(first) + step]], [0])
    row[-2:] = [0, 0]  # ... and taken back
    for token in tail:
        row.append(1)
        got = run(request, [[token]], [row], [[len(first) + tail.index(token)]], [0])
    np.testing.assert_allclose(got[0, -1], want, rtol=1e-4, atol=1e-4)
