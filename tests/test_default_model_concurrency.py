"""Default model setup under concurrency: two processes at once, a killed build, an unusable cache.

The real setup converts a 250 MB GGUF (about a minute); these tests run the same code path
(``ensure_default_model`` -> ``assemble_gguf`` -> ``convert_gguf``) on chunks of a tiny GGUF
written from the tiny LLaMA, in real subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import deepke_llm.default_model as dm

# Runs the setup with the tiny chunks: argv = chunk dir, sha256, go file, ready file.
# torch and transformers are imported before "ready" so that both processes reach the setup
# itself at the same moment (the race is there, not in start-up).
SETUP = """
import sys, time
from pathlib import Path
import torch, transformers
import deepke_llm.default_model as dm
chunks = sorted(Path(sys.argv[1]).glob("part*"))
dm.chunk_paths = lambda: chunks
dm.GGUF_SHA256 = sys.argv[2]
Path(sys.argv[4]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.01)
print(dm.ensure_default_model())
"""


def write_tiny_gguf(model_dir: Path, tokenizer_model: Path, out: Path) -> Path:
    """The tiny LLaMA (float32 tensors) and its sentencepiece vocabulary as a GGUF file."""
    import gguf
    import numpy as np
    import sentencepiece as spm
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    layers = config["num_hidden_layers"]
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_dimension_count(config["hidden_size"] // config["num_attention_heads"])
    writer.add_vocab_size(config["vocab_size"])
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    ids = range(sp.get_piece_size())
    # llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1
             for i in ids]
    writer.add_tokenizer_model("llama")
    writer.add_token_list([sp.id_to_piece(i) for i in ids])
    writer.add_token_scores([sp.get_score(i) for i in ids])
    writer.add_token_types(types)
    writer.add_bos_token_id(sp.bos_id())
    writer.add_eos_token_id(sp.eos_id())
    writer.add_unk_token_id(sp.unk_id())
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    for name, tensor in load_file(str(model_dir / "model.safetensors")).items():
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight",)), tensor.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.fixture(scope="module")
def tiny_chunks(tmp_path_factory, tiny_llama_dir, tiny_tokenizer_dir) -> tuple[Path, str]:
    """(dir holding part0..part2 of a tiny GGUF, sha256 of the whole file)."""
    work = tmp_path_factory.mktemp("tiny-gguf")
    data = write_tiny_gguf(tiny_llama_dir, tiny_tokenizer_dir / "tokenizer.model",
                           work / "tiny.gguf").read_bytes()
    chunks = work / "chunks"
    chunks.mkdir()
    third = len(data) // 3 + 1
    for i in range(3):
        (chunks / f"part{i}").write_bytes(data[i * third:(i + 1) * third])
    return chunks, hashlib.sha256(data).hexdigest()


def start_setup(chunks: tuple[Path, str], cache: Path, go: Path, ready: Path) -> subprocess.Popen:
    env = {**os.environ, "DEEPKE_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", SETUP, str(chunks[0]), chunks[1], str(go),
                             str(ready)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(paths: list[Path], processes: list[subprocess.Popen], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, "setup processes did not start"
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        time.sleep(0.05)


def leftovers(cache: Path) -> list[str]:
    """What is in the cache besides the results (checkpoint, the kept GGUF) and the lock."""
    kept = {dm.CHECKPOINT_NAME, dm.GGUF_NAME, f".{dm.CHECKPOINT_NAME}.lock"}
    return sorted(p.name for p in cache.iterdir() if p.name not in kept)


@pytest.mark.slow
def test_two_processes_set_up_at_once_both_succeed_and_one_builds(tiny_chunks, tmp_path):
    cache, go = tmp_path / "cache", tmp_path / "go"
    ready = [tmp_path / "ready0", tmp_path / "ready1"]
    processes = [start_setup(tiny_chunks, cache, go, r) for r in ready]
    try:
        wait_for(ready, processes)
        go.touch()
        results = [p.communicate(timeout=120) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == str(cache / dm.CHECKPOINT_NAME)
    stderr = [err for _, err in results]
    # exactly one process converted; the other waited and reused its checkpoint
    assert sum("converting it to a transformers checkpoint" in err for err in stderr) == 1, stderr
    assert sum("set up by another process" in err for err in stderr) == 1, stderr
    checkpoint = cache / dm.CHECKPOINT_NAME
    assert json.loads((checkpoint / dm.MARKER).read_text())["sha256"] == tiny_chunks[1]
    # the model class named, as vLLM and ONNX Runtime GenAI's builder need
    assert json.loads((checkpoint / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert leftovers(cache) == [], "no temp files"
    assert (cache / dm.GGUF_NAME).is_file()  # kept for the llama.cpp engine


@pytest.mark.slow
def test_a_build_killed_midway_neither_blocks_nor_poisons_the_next_one(tiny_chunks, tmp_path,
                                                                       monkeypatch):
    cache, go = tmp_path / "cache", tmp_path / "go"
    go.touch()
    victim = start_setup(tiny_chunks, cache, go, tmp_path / "ready")
    try:
        for line in victim.stderr:  # killed while it holds the lock, mid-conversion
            if "converting" in line:
                break
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        victim.kill()
    assert not (cache / dm.CHECKPOINT_NAME).exists(), "the victim died with its build half done"
    # what a kill during the checkpoint's write leaves (the kill above may land before it)
    (cache / f".{dm.CHECKPOINT_NAME}.tmp-99999").mkdir(exist_ok=True)
    # the rerun: a lock that outlived its holder would make it wait (and fail after 20 s here)
    monkeypatch.setenv("DEEPKE_CACHE", str(cache))
    monkeypatch.setattr(dm, "LOCK_TIMEOUT_S", 20)
    monkeypatch.setattr(dm, "chunk_paths", lambda: sorted(tiny_chunks[0].glob("part*")))
    monkeypatch.setattr(dm, "GGUF_SHA256", tiny_chunks[1])
    messages: list[str] = []
    assert dm.ensure_default_model(messages.append) == cache / dm.CHECKPOINT_NAME
    assert not any("waiting" in m for m in messages), messages
    assert leftovers(cache) == [], "the killed build's temp files are cleaned up"


def test_unwritable_cache_dir_is_one_line_naming_it_and_deepke_cache(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = blocker / "deepke-llm"  # below a regular file: cannot be created, even as root
    monkeypatch.setenv("DEEPKE_CACHE", str(cache))
    monkeypatch.setattr(dm, "chunk_paths", lambda: [blocker])
    with pytest.raises(dm.DefaultModelError) as info:
        dm.ensure_default_model(lambda message: None)
    message = str(info.value)
    assert str(cache) in message and "DEEPKE_CACHE" in message and "\n" not in message
    assert isinstance(info.value, ValueError)  # the commands print ValueErrors as one line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_cache_dir_is_one_line_naming_it(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    monkeypatch.setenv("DEEPKE_CACHE", str(cache))
    monkeypatch.setattr(dm, "chunk_paths", lambda: [])
    try:
        with pytest.raises(dm.DefaultModelError, match=r"cache dir .*cache is not writable.*"
                                                       r"DEEPKE_CACHE"):
            dm.ensure_default_model(lambda message: None)
    finally:
        cache.chmod(0o755)


def test_unwritable_cache_fails_extract_with_one_line_and_exit_1(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from deepke_llm.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DEEPKE_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(dm, "chunk_paths", lambda: [blocker])
    result = CliRunner().invoke(main, ["extract", "--task", "ner", "--schema", "conll03",
                                       "--no-progress", "Alice went to Paris."])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "not writable" in line and "DEEPKE_CACHE" in line and str(blocker / "cache") in line
