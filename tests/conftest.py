"""Shared fixtures: data location, tiny tokenizer and model built on the spot."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DEEPKE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (or $DEEPKE_DATA); tests needing it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    from tiny_models import train_tokenizer

    return train_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A randomly initialised 2-layer LLaMA with the tiny tokenizer, saved as a HF model dir."""
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tiny_tokenizer_dir)


# ---- training tests (sft, weights): heavy imports stay inside the fixtures ---------------------

@pytest.fixture()
def tiny_llama_copy(tiny_llama_dir, tmp_path) -> Path:
    """A private copy of the tiny LLaMA (tests never touch the session fixture)."""
    import shutil

    return Path(shutil.copytree(tiny_llama_dir, tmp_path / "tiny-llama"))


@pytest.fixture()
def tiny_tokenizer(tiny_llama_dir):
    """The tiny LLaMA's tokenizer, loaded with transformers."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


@pytest.fixture()
def iepile_file(tmp_path) -> Path:
    """IEPile training lines (NER + RE, English + Chinese) as a JSON-lines file."""
    from training_helpers import iepile_lines, write_jsonl

    return write_jsonl(tmp_path / "train.jsonl", iepile_lines())


@pytest.fixture(scope="module")
def tiny_llama_state(tiny_llama_dir: Path) -> dict:
    """The tiny LLaMA's tensors (name -> torch tensor)."""
    from safetensors.torch import load_file

    return load_file(str(tiny_llama_dir / "model.safetensors"))


@pytest.fixture()
def diff_setup(tmp_path, tiny_llama_state, tiny_llama_dir) -> tuple[Path, Path]:
    """A bfloat16 raw/tuned pair and their diff (``root/diff``, 100 KB shards): (root, raw)."""
    import torch
    from weights_helpers import make_pair

    from deepke_llm.training.weights.diff import diff_weights

    raw, tuned, _ = make_pair(tmp_path, tiny_llama_state, tiny_llama_dir, torch.bfloat16)
    diff_weights(raw, tuned, tmp_path / "diff", max_shard_size="100KB")
    return tmp_path, raw


@pytest.fixture()
def one_torch_thread():
    """One intra-op torch thread: the test machine's cores are shared, and one thread is several
    times faster there for the tiny models."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
