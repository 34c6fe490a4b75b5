"""HFBackend on the tiny random LLaMA: batching, ordering, limits, stops, LoRA, load errors."""

from __future__ import annotations

import pytest

from deepke_llm.backends.base import GenerationConfig
from deepke_llm.backends.registry import load_backend
from deepke_llm.prompts.chat import Prompt

PROMPTS = [
    Prompt(user="Japan began the defence of their Asian Cup title."),
    Prompt(user="Oracle laid off 300 workers in March. " * 6),
    Prompt(user="person"),
    Prompt(user="Thomas Edison died in West Orange, New Jersey. " * 3, system="extract"),
    Prompt(user="你是专门进行实体抽取的专家。"),
]


@pytest.fixture(scope="module")
def backend(tiny_llama_dir):
    from deepke_llm.backends.hf import HFBackend

    return HFBackend(tiny_llama_dir)


def test_batched_greedy_outputs_equal_one_at_a_time_in_input_order(backend):
    one_by_one = [backend.generate([p], GenerationConfig(max_new_tokens=10, batch_size=1))[0]
                  for p in PROMPTS]
    batched = backend.generate(PROMPTS, GenerationConfig(max_new_tokens=10, batch_size=3))
    assert batched == one_by_one
    assert len(set(batched)) > 1  # distinct outputs, so a reordering would be caught
    # reversed input gives reversed output: outputs follow the input, not the length sort
    assert backend.generate(PROMPTS[::-1], GenerationConfig(max_new_tokens=10)) == batched[::-1]


def test_max_new_tokens_bounds_generated_tokens_and_stats(backend):
    counts = []
    for prompt in PROMPTS:  # one prompt per call: the stats delta is that prompt's tokens
        before = backend.stats.generated_tokens
        outputs = backend.generate([prompt], GenerationConfig(max_new_tokens=7))
        counts.append(backend.stats.generated_tokens - before)
        assert len(outputs) == 1
    assert all(1 <= n <= 7 for n in counts)
    assert max(counts) == 7  # a random model rarely stops early
    batch_before = backend.stats.generated_tokens
    backend.generate(PROMPTS, GenerationConfig(max_new_tokens=7, batch_size=2))
    assert backend.stats.generated_tokens - batch_before == sum(counts)  # batching changes nothing


def test_stop_strings_truncate_at_first_occurrence(backend):
    config = GenerationConfig(max_new_tokens=12, batch_size=4)
    full = backend.generate(PROMPTS, config)
    # a readable two-character stop from the middle of some output (not a byte-fallback U+FFFD)
    stop = next(t[i:i + 2] for t in full for i in range(2, len(t) - 1)
                if t[i:i + 2].isprintable() and "\ufffd" not in t[i:i + 2])
    stopped = backend.generate(PROMPTS, GenerationConfig(max_new_tokens=12, batch_size=4,
                                                         stop=(stop, "never-generated")))
    for before, after in zip(full, stopped, strict=True):
        expected = before[:before.index(stop)] if stop in before else before
        assert after == expected
    assert stop not in "".join(stopped)


def test_count_tokens_and_context_length_come_from_the_tokenizer_and_config(backend):
    text = "Thomas Edison died in West Orange. 你好"
    expected = len(backend.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert backend.count_tokens(text) == expected > 5
    assert backend.context_length == 2048
    # the rendered prompt is tokenized once with a single BOS in front
    ids = backend.encode_prompt(PROMPTS[0])
    assert ids[0] == backend.tokenizer.bos_token_id and ids.count(ids[0]) == 1


def test_sampling_is_reproducible_with_a_seed(backend):
    config = GenerationConfig(max_new_tokens=8, temperature=1.0, seed=3, batch_size=8)
    first = backend.generate(PROMPTS, config)
    assert backend.generate(PROMPTS, config) == first


def test_lora_adapter_changes_outputs(tiny_llama_dir, tmp_path, backend):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    # init_lora_weights=False gives a non-zero B, so the adapter is not a no-op
    lora = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"],
                      init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(base, lora).save_pretrained(tmp_path / "adapter")
    tuned = load_backend(model=str(tiny_llama_dir), lora=str(tmp_path / "adapter"))
    config = GenerationConfig(max_new_tokens=8)
    assert not isinstance(tuned.model, PeftModel)  # merged into the weights for inference
    base_out, tuned_out = backend.generate(PROMPTS, config), tuned.generate(PROMPTS, config)
    assert sum(a != b for a, b in zip(base_out, tuned_out, strict=True)) >= 3
    unmerged = load_backend(model=str(tiny_llama_dir), lora=str(tmp_path / "adapter"),
                            merge_lora=False)
    assert isinstance(unmerged.model, PeftModel)
    assert unmerged.generate(PROMPTS, config) == tuned_out


def test_load_errors_are_one_line_and_name_the_path(tmp_path):
    from deepke_llm.backends.hf import HFBackend

    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match=r"no-such-model does not exist: pass --model DIR"):
        HFBackend(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty is not a Hugging Face model directory"):
        HFBackend(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"GGUF file .*absent.gguf does not exist"):
        HFBackend(tmp_path / "absent.gguf")


def test_quantization_flags_fail_clearly_without_cuda(tiny_llama_dir):
    import torch

    from deepke_llm.backends.hf import HFBackend

    if torch.cuda.is_available():
        pytest.skip("CUDA present: 8-bit loading may work here")
    with pytest.raises(ValueError, match=r"--load-in-8bit needs (a CUDA GPU|the bitsandbytes)"):
        HFBackend(tiny_llama_dir, load_in_8bit=True)
    with pytest.raises(ValueError, match=r"unknown dtype 'fp8'"):
        HFBackend(tiny_llama_dir, dtype="fp8")


def test_lora_errors_name_the_adapter_dir(tiny_llama_dir, tmp_path):
    with pytest.raises(ValueError, match=r"not a LoRA adapter dir \(no adapter_config.json\)"):
        load_backend(model=str(tiny_llama_dir), lora=str(tmp_path))


def test_load_backend_picks_by_options_and_rejects_missing_model(monkeypatch):
    from deepke_llm.backends import registry
    from deepke_llm.backends.openai import OpenAIBackend
    from deepke_llm.backends.registry import register_backend

    monkeypatch.setattr(registry, "default_model_path", lambda: None)  # no default installed
    monkeypatch.setattr(registry, "default_gguf_path", lambda: None)  # (either engine)
    with pytest.raises(ValueError, match=r"^no model given.*: pass --model DIR\|HUB_ID or --base-url"):
        load_backend()
    served = load_backend(base_url="http://127.0.0.1:9", api_model="m", max_concurrency=None)
    assert isinstance(served, OpenAIBackend) and served.url == "http://127.0.0.1:9/v1/chat/completions"
    with pytest.raises(ValueError, match="--lora applies to local models only"):
        load_backend(base_url="http://127.0.0.1:9/v1", api_model="m", lora="adapter")
    with pytest.raises(ValueError, match="already registered"):
        register_backend("hf")(lambda **kw: None)


def test_shared_prefix_cache_gives_the_same_outputs(tiny_llama_dir):
    from deepke_llm.backends.hf import HFBackend
    from deepke_llm.extractor import Extractor

    cached = HFBackend(tiny_llama_dir)
    plain = HFBackend(tiny_llama_dir, prefix_cache=False)
    extractor = Extractor(cached, "conll03", "ner")
    texts = ["Alice flew to Paris.", "Acme hired Bob in Rome on a Monday.", "Rome.",
             "The European Commission said on Thursday it disagreed."]
    prompts = [extractor._build(0, t, "en") for t in texts]
    rows = [cached.encode_prompt(p) for p in prompts]
    from deepke_llm.backends.base import MIN_SHARED_PREFIX, common_prefix_length

    assert common_prefix_length(rows) > MIN_SHARED_PREFIX  # the IEPile instruction is shared
    config = GenerationConfig(max_new_tokens=12, batch_size=4)
    assert cached.generate(prompts, config) == plain.generate(prompts, config)
    inputs = cached._batch_inputs(rows)
    assert inputs["input_ids"].shape[1] == max(len(r) for r in rows)
    assert inputs["attention_mask"].sum().item() == sum(len(r) for r in rows)


def test_finished_rows_leave_the_batch_and_answers_stay_the_same(tiny_llama_dir):
    """Generating in stages of a few tokens (finished rows leave, waiting prompts join, rows that
    go on keep their constraint's state) gives the answers of one call per batch, in fewer
    row-steps when answers end at different lengths."""
    from deepke_llm.backends.hf import HFBackend
    from deepke_llm.extractor import Extractor

    staged, whole = HFBackend(tiny_llama_dir, stage_tokens=4), \
        HFBackend(tiny_llama_dir, stage_tokens=None)
    full = whole.generate(PROMPTS, GenerationConfig(max_new_tokens=24, batch_size=3))
    stop = next(t[i:i + 2] for t in full for i in range(2, 8)  # ends some rows early
                if t[i:i + 2].isprintable() and "\ufffd" not in t[i:i + 2])
    config = GenerationConfig(max_new_tokens=24, batch_size=3, stop=(stop,))
    whole.row_steps = 0
    assert staged.generate(PROMPTS, config) == whole.generate(PROMPTS, config)
    assert staged.row_steps < whole.row_steps
    texts = ["Alice flew to Paris.", "Acme hired Bob in Rome on a Monday.", "Rome.",
             "The European Commission said on Thursday it disagreed.", "Japan beat Syria."]
    generation = GenerationConfig(max_new_tokens=40, batch_size=2)
    answers = [[d.raw_output for d in Extractor(b, "conll03", "ner", generation=generation,
                                                 constrained=True).extract(texts)]
               for b in (staged, whole)]
    assert answers[0] == answers[1]
    assert any(len(a[0]) > 8 for a in answers[0])  # rows went on past the first stage


def test_local_models_never_probe_the_hub(tiny_llama_dir, monkeypatch):
    from deepke_llm.backends import hf_hub

    def boom(endpoint):
        raise AssertionError("a local model dir must load without any network probe")

    monkeypatch.setattr(hf_hub, "_hub_unreachable", boom)
    assert hf_hub.resolve_model_path(str(tiny_llama_dir), None) == str(tiny_llama_dir)


def closed_endpoint() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed once the block ends


def test_a_hub_lora_id_without_a_hub_fails_at_once_in_one_line(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from deepke_llm.backends import hf

    endpoint = closed_endpoint()
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ValueError) as info:
        hf._attach_lora(None, "some-org/some-adapter")
    message = str(info.value)
    assert message.startswith("--lora some-org/some-adapter is not a local directory")
    assert f"hub {endpoint} is unreachable" in message and "\n" not in message


def test_a_cached_hub_lora_loads_without_the_hub(tiny_llama_dir, monkeypatch, tmp_path):
    from huggingface_hub import constants
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    from deepke_llm.backends import hf

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--some-org--adapter"  # the hub cache layout huggingface_hub writes
    lora = LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), lora).save_pretrained(
        repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "ENDPOINT", closed_endpoint())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    tuned = hf._attach_lora(AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
                            "some-org/adapter")
    assert isinstance(tuned, PeftModel)


def test_the_cancel_event_stops_a_call_in_progress_and_the_next_call_runs(backend):
    import threading

    from deepke_llm.backends.base import GenerationCancelled

    started, outcome = threading.Event(), {}
    seen = backend._cancelled

    def watch(input_ids, scores, **kwargs):  # the stopping check, once per step
        started.set()
        outcome["steps"] = outcome.get("steps", 0) + 1
        return seen(input_ids, scores, **kwargs)

    backend._cancelled = watch
    config = GenerationConfig(max_new_tokens=5000, stop=())

    def call():
        try:
            backend.generate([Prompt(user="count to one million")], config)
        except GenerationCancelled as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=call)
    worker.start()
    started.wait(60)
    backend.cancel.set()
    worker.join(120)
    del backend._cancelled
    assert isinstance(outcome.get("error"), GenerationCancelled)
    assert outcome["steps"] < 5000
    backend.cancel.clear()
    assert len(backend.generate([Prompt(user="hi")], GenerationConfig(max_new_tokens=3))) == 1
