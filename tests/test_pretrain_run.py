"""Pretraining end to end on the tiny LLaMA: loss falls, and an interrupted run resumes exactly.

The resume test runs two ranks (torchrun, gloo): one process alone would not show that the order
survives accelerate's per-rank sharding and its skipping of trained batches (it did not, when the
order depended on ``set_epoch``).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")

from deepke_llm.training.pretrain.config import PretrainConfig  # noqa: E402
from deepke_llm.training.pretrain.prepare import PrepareOptions, prepare_corpus  # noqa: E402
from deepke_llm.training.pretrain.run import run_pretraining  # noqa: E402

NAMES = ["Japan", "Syria", "Oracle", "Thomas Edison", "John Smith", "Acme Corp", "Australia"]
VERBS = ["beat", "met", "hired", "visited", "praised"]


def synthetic_documents(count: int, seed: int = 0) -> list[str]:
    """Short English + Chinese documents from templates: learnable, all distinct."""
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        sentences = [f"{rng.choice(NAMES)} {rng.choice(VERBS)} {rng.choice(NAMES)} in {1990 + i % 30}."
                     for _ in range(rng.randint(2, 5))]
        if i % 3 == 0:
            sentences.append("你是专门进行实体抽取的专家。请从input中抽取出符合schema定义的实体！")
        docs.append(" ".join(sentences) + f" Document {i}.")
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_tokenizer_dir) -> str:
    root = tmp_path_factory.mktemp("pretrain-corpus")
    news, web = root / "news.jsonl", root / "web.txt"
    docs = synthetic_documents(240)
    news.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs[:160]),
                    encoding="utf-8")
    web.write_text("\n\n".join(docs[160:]) + "\n", encoding="utf-8")
    prefix = str(root / "corpus")
    prepare_corpus([str(news), f"web={web}"], str(tiny_tokenizer_dir), prefix,
                   PrepareOptions(max_len=48, min_len=4))
    return prefix


def _config(model: str, data: str, out: Path, **overrides) -> PretrainConfig:
    fields = dict(model=model, data=data, output_dir=str(out), per_device_batch_size=4,
                  learning_rate=1e-3, lr_scheduler="cosine", warmup_steps=2, logging_steps=1,
                  save_steps=1000, use_cpu=True, resume="none", seed=7)
    fields.update(overrides)
    return PretrainConfig(**fields)


@pytest.mark.slow
def test_loss_falls_over_a_few_dozen_steps(tiny_llama_copy, corpus, tmp_path):
    metrics = run_pretraining(_config(str(tiny_llama_copy), corpus, tmp_path / "run", max_steps=30,
                                      logging_steps=5, per_device_batch_size=8))
    assert metrics["global_step"] == 30
    losses = metrics["losses"]
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 1.0, losses  # from random init (~ln(vocab)); learns the templates
    assert (tmp_path / "run" / "model.safetensors").is_file()
    saved = json.loads((tmp_path / "run" / "pretrain_config.json").read_text())
    assert saved["max_steps"] == 30 and saved["deepke_llm_version"]


def _read_sample_log(out: Path, rank: int = 0) -> list[tuple[int, list[int]]]:
    lines = (out / f"sample_ids.rank{rank}.jsonl").read_text().splitlines()
    return [(r["step"], r["ids"]) for r in map(json.loads, lines)]


def _weights(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "model.safetensors"))


def test_from_scratch_needs_only_a_config_and_takes_the_datasets_tokenizer(tiny_llama_dir, corpus, tmp_path):
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(Path(tiny_llama_dir) / "config.json", config_only / "config.json")
    metrics = run_pretraining(_config(str(config_only), corpus, tmp_path / "run", max_steps=2,
                                      from_scratch=True))
    assert metrics["global_step"] == 2 and 4.0 < metrics["first_loss"] < 9.0  # ~ln(vocab)
    assert (tmp_path / "run" / "tokenizer_config.json").is_file()


def _torchrun_pretrain(config: dict, path: Path, extra: list[str] = ()) -> None:
    import os
    import socket
    import subprocess
    import sys

    path.write_text(json.dumps(config))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
         "127.0.0.1", "--master_port", str(port), "-m", "deepke_llm.cli", "pretrain", "run",
         "--config", str(path), *extra], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_two_process_run_resumes_exactly_on_every_rank(tiny_llama_copy, corpus, tmp_path):
    """Two ranks (gloo): each resumes on exactly its own next batches, across a data epoch bound."""
    full_dir, split_dir = tmp_path / "full", tmp_path / "split"
    # global batch 2 x 2 ranks = 4, 12 samples per data epoch: epochs end after steps 3 and 6
    config = dict(model=str(tiny_llama_copy), data=corpus, output_dir=str(full_dir), max_steps=8,
                  samples_per_epoch=12, per_device_batch_size=2, logging_steps=1, save_steps=4,
                  learning_rate=1e-3, use_cpu=True, resume="auto", log_sample_ids=True, seed=7,
                  mix={"news": 1.0, "web": 3.0})
    _torchrun_pretrain(config, tmp_path / "run.json")
    # a run killed after its step-4 checkpoint, restarted with the same command
    split_dir.mkdir()
    shutil.copytree(full_dir / "checkpoint-4", split_dir / "checkpoint-4")
    _torchrun_pretrain(config, tmp_path / "run.json", ["--output-dir", str(split_dir)])

    logs = {}
    for rank in (0, 1):
        full_log, resumed_log = _read_sample_log(full_dir, rank), _read_sample_log(split_dir, rank)
        assert [s for s, _ in full_log] == list(range(8))
        assert resumed_log == full_log[4:]
        logs[rank] = full_log
    # the ranks split each step's global batch between them, and the first data epoch (steps
    # 0-2, 12 samples) holds news and web 1:3
    for (_, ids0), (_, ids1) in zip(logs[0], logs[1], strict=True):
        assert not set(ids0) & set(ids1)
    from deepke_llm.training.pretrain.indexed_dataset import IndexedDataset

    sources = IndexedDataset(corpus).source_ids
    epoch0 = [i for rank in (0, 1) for _, ids in logs[rank][:3] for i in ids]
    assert sorted(sources[epoch0].tolist()) == [0] * 3 + [1] * 9
    full_w, resumed_w = _weights(full_dir), _weights(split_dir)
    for name, tensor in full_w.items():
        assert (tensor - resumed_w[name]).abs().max().item() < 1e-6, name
