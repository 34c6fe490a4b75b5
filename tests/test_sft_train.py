"""End-to-end SFT on the tiny LLaMA: LoRA until greedy generation reproduces the outputs, exact
resume, full fine-tuning with packing, the eval hook, merging, QLoRA's CPU error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_helpers import iepile_lines, write_jsonl

from deepke_llm.training.sft.config import SftConfig
from deepke_llm.training.sft.run import LOG_FILENAME, SUMMARY_FILENAME, run_sft

torch = pytest.importorskip("torch")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lora_config(base: Path, train_file: Path, out: Path, **overrides) -> SftConfig:
    settings = dict(model=str(base), train_file=str(train_file), output_dir=str(out),
                    lora_r=16, lora_alpha=32, lora_dropout=0.0, learning_rate=5e-3,
                    lr_scheduler="constant", warmup=0, batch_size=4, max_steps=100,
                    logging_steps=10, save_steps=0, max_len=512)
    settings.update(overrides)
    return SftConfig(**settings)


def _adapter_weights(out: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors"))


@pytest.mark.slow
def test_lora_sft_reproduces_the_training_outputs(tiny_llama_copy, iepile_file, tmp_path):
    from deepke_llm.backends.base import GenerationConfig
    from deepke_llm.backends.hf import HFBackend
    from deepke_llm.training.sft.data import encode_response, read_sft_records

    out = tmp_path / "run"
    result = run_sft(lora_config(tiny_llama_copy, iepile_file, out))

    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json",
                 "sft_config.json", LOG_FILENAME, SUMMARY_FILENAME):
        assert (out / name).is_file(), name
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 16
    log = [json.loads(line) for line in (out / LOG_FILENAME).read_text().splitlines()]
    losses = [(e["step"], e["loss"]) for e in log if "loss" in e]
    assert [s for s, _ in losses] == [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert losses[-1][1] < losses[0][1]
    assert result.data["examples"] == 4 and result.data["dropped_too_long"] == 0
    assert result.metrics["train_tokens_per_second"] > 0

    # the extractor's backend, loading the saved adapter, generates exactly the outputs
    records = read_sft_records(iepile_file)
    backend = HFBackend(str(tiny_llama_copy), lora=str(out), chat_template="auto")
    before = backend.stats.generated_tokens
    generated = backend.generate([r.prompt for r in records], GenerationConfig(max_new_tokens=80))
    # (decoded after the prompt: a SentencePiece word start may add the space it stands for)
    assert [text.lstrip() for text in generated] == [record.output for record in records]
    # exactly the trained response tokens (EOS included), nothing after them
    assert backend.stats.generated_tokens - before == sum(
        len(encode_response(backend.tokenizer, record.output)) for record in records)
    assert [json.loads(text) for text in generated] == [json.loads(r.output) for r in records]


class StopAtStep:
    """Simulates an interruption: stops training after ``step`` optimizer steps."""

    def __new__(cls, step: int):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == step:
                    control.should_training_stop = True

        return _Stop()


@pytest.mark.slow
def test_resume_after_interruption_reproduces_the_uninterrupted_adapter(tiny_llama_copy,
                                                                        iepile_file,
                                                                        tmp_path):
    settings = dict(max_steps=6, save_steps=3, batch_size=2, lora_r=8, lora_alpha=16,
                    lora_dropout=0.1, learning_rate=3e-3, lr_scheduler="cosine", warmup=1,
                    logging_steps=1)
    straight = tmp_path / "straight"
    run_sft(lora_config(tiny_llama_copy, iepile_file, straight, **settings))

    resumed = tmp_path / "resumed"
    config = lora_config(tiny_llama_copy, iepile_file, resumed, resume="auto", **settings)
    first = run_sft(config, callbacks=[StopAtStep(3)])
    assert first.resumed_from is None and (resumed / "checkpoint-3").is_dir()
    second = run_sft(config)
    assert second.resumed_from == str(resumed / "checkpoint-3")

    expected, got = _adapter_weights(straight), _adapter_weights(resumed)
    assert expected.keys() == got.keys() and len(expected) > 0
    for name in expected:
        assert torch.allclose(expected[name], got[name], atol=1e-6), name
    # the log of the resumed run reads like the straight run's: one loss per step, no repeats
    steps = [json.loads(x)["step"] for x in (resumed / LOG_FILENAME).read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_full_finetuning_with_packing_updates_all_weights(tiny_llama_copy, iepile_file, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "full"
    result = run_sft(lora_config(tiny_llama_copy, iepile_file, out, method="full", packing=True,
                                 learning_rate=1e-3, max_steps=4, logging_steps=1, batch_size=2))
    assert not (out / "adapter_config.json").exists()
    before, after = load_file(str(tiny_llama_copy / "model.safetensors")), load_file(str(out / "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)
    assert result.data["rows"] < result.data["examples"]  # several examples per packed row


@pytest.mark.slow
def test_validation_split_logs_eval_loss_and_eval_fn_metrics(tiny_llama_copy, iepile_file, tmp_path):
    calls = []

    def extraction_eval(model, tokenizer, records):
        calls.append([r.id for r in records])
        return {"f1": 0.5}

    from transformers import TrainerCallback

    checkpointed = []

    class RecordCheckpointing(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            checkpointed.append(any(getattr(m, "gradient_checkpointing", False)
                                    for m in model.modules()))

    out = tmp_path / "eval"
    result = run_sft(lora_config(tiny_llama_copy, iepile_file, out, max_steps=4, val_size=1,
                                 eval_steps=2, gradient_checkpointing=True),
                     callbacks=[RecordCheckpointing()], eval_fn=extraction_eval)
    assert checkpointed == [True]
    # at steps 2 and 4; the final weights are the step-4 weights, so they are not scored twice
    assert len(calls) == 2 and all(len(c) == 1 for c in calls)
    assert result.data["examples"] == 3
    assert result.metrics["eval_f1"] == 0.5 and result.metrics["eval_loss"] > 0
    log = [json.loads(line) for line in (out / LOG_FILENAME).read_text().splitlines()]
    assert [e["step"] for e in log if "eval_loss" in e][:2] == [2, 4]
    assert [e["step"] for e in log if "eval_f1" in e][:2] == [2, 4]


@pytest.mark.slow
def test_builtin_generation_eval_and_merge(tiny_llama_copy, iepile_file, tmp_path, monkeypatch):
    from peft.tuners.tuners_utils import BaseTuner
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from deepke_llm.backends.hf import HFBackend
    from deepke_llm.training.weights.lora import merge_lora

    def in_memory_merge(self, *args, **kwargs):
        raise AssertionError("--merge must stream from the base checkpoint (weights.lora.merge_lora)")

    # merge_and_unload merges the in-memory (ZeRO-3 partitioned, or quantized) model: not used
    monkeypatch.setattr(BaseTuner, "merge_and_unload", in_memory_merge)
    out = tmp_path / "merge"
    val = write_jsonl(tmp_path / "val.jsonl", iepile_lines()[:1])
    result = run_sft(lora_config(tiny_llama_copy, iepile_file, out, max_steps=2, val_file=str(val),
                                 eval_fn="builtin", eval_max_new_tokens=4, merge=True))
    # 4 new tokens cannot spell the output; the NER line is scored by the IEPile evaluator
    assert result.metrics["eval_exact_match"] == 0.0 and result.metrics["eval_ner_f1"] == 0.0

    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged"))
    with_adapter = HFBackend(str(tiny_llama_copy), lora=str(out), merge_lora=False).model
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_copy))
    ids = torch.tensor([[1, 270, 295, 271, 285, 272, 30, 31]])
    with torch.no_grad():
        expected = with_adapter(input_ids=ids).logits
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5)
        assert not torch.allclose(base(input_ids=ids).logits, expected, atol=1e-3)
    reference = merge_lora(tiny_llama_copy, out, tmp_path / "reference")
    got, want = load_file(str(out / "merged" / "model.safetensors")), load_file(str(reference.out / "model.safetensors"))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert (out / "merged" / "tokenizer_config.json").is_file()


@pytest.mark.slow
def test_only_the_main_process_writes_run_files(tiny_llama_copy, iepile_file, tmp_path, monkeypatch):
    from deepke_llm.training.sft.trainer import SftTrainer

    monkeypatch.setattr(SftTrainer, "is_world_process_zero", lambda self: False)  # as on rank 1
    out = tmp_path / "rank1"
    run_sft(lora_config(tiny_llama_copy, iepile_file, out, max_steps=1, merge=True))
    for name in ("sft_config.json", SUMMARY_FILENAME, "merged"):
        assert not (out / name).exists(), name


def test_qlora_without_cuda_fails_with_one_line(tiny_llama_copy, iepile_file, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match=r"^method: qlora needs a CUDA GPU and bitsandbytes"):
        run_sft(lora_config(tiny_llama_copy, iepile_file, tmp_path / "q", method="qlora"))


@pytest.mark.slow
def test_cli_trains_and_writes_the_run_config(tiny_llama_copy, iepile_file, tmp_path):
    from click.testing import CliRunner

    from deepke_llm.cli import main

    out = tmp_path / "cli"
    result = CliRunner().invoke(main, [
        "train", "sft", "--model", str(tiny_llama_copy), "--train-file", str(iepile_file),
        "-o", str(out), "--max-steps", "2", "--lora-r", "4", "--max-len", "150",
        "--chat-template", "oneke", "--save-steps", "0"])
    assert result.exit_code == 0, result.output
    summary_line = result.stderr.strip().splitlines()[-1]  # the summary goes to stderr
    assert summary_line.startswith("train sft: ") and "longer than --max-len" in summary_line
    assert summary_line.endswith(f" -> {out}")
    saved = json.loads((out / "sft_config.json").read_text())
    assert (saved["lora_r"], saved["chat_template"], saved["max_len"]) == (4, "oneke", 150)
    summary = json.loads((out / "sft_summary.json").read_text())
    assert summary["data"]["examples"] + summary["data"]["dropped_too_long"] == 4
    # the oneke system prompt makes examples 128-175 tiny-tokenizer tokens long: 2 are over 150
    assert summary["data"]["dropped_too_long"] == 2


@pytest.mark.slow
def test_continued_training_starts_from_the_given_adapter(tiny_llama_copy, iepile_file, tmp_path):
    first = tmp_path / "first"
    run_sft(lora_config(tiny_llama_copy, iepile_file, first, max_steps=3))
    start = _adapter_weights(first)
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in start.items())
    # a negligible learning rate: the continued run saves (almost) the adapter it started from,
    # not a fresh one (whose B matrices are zero), with the first adapter's rank
    second = tmp_path / "second"
    run_sft(lora_config(tiny_llama_copy, iepile_file, second, max_steps=1, learning_rate=1e-12,
                        init_adapter=str(first), lora_r=4))
    again = _adapter_weights(second)
    assert again.keys() == start.keys()
    assert all(torch.allclose(again[k], start[k], atol=1e-6) for k in start)
    with pytest.raises(ValueError, match="init_adapter"):
        run_sft(lora_config(tiny_llama_copy, iepile_file, tmp_path / "x", method="full",
                            init_adapter=str(first)))
