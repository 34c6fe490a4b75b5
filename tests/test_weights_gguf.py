"""PEFT LoRA adapters -> llama.cpp LoRA GGUF files (deepke_llm/training/weights/gguf.py)."""

from __future__ import annotations

import json
import os

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from deepke_llm.training.weights.gguf import lora_gguf_for, lora_to_gguf
from deepke_llm.training.weights.io import WeightsError

HEADS, KV_HEADS, HIDDEN, HEAD_DIM = 4, 2, 32, 8


def base_gguf(path, arch: str = "gemma3") -> str:
    """A GGUF with only the metadata the conversion reads (architecture, blocks, heads)."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(2)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_tensor("token_embd.weight", np.zeros((4, HIDDEN), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def adapter(tmp_path, config: dict | None = None, extra: dict | None = None) -> tuple[str, dict]:
    """A PEFT adapter dir (bf16 factors, as PEFT saves them) on q/k/v/down of two layers."""
    torch.manual_seed(0)
    tensors = {}
    outs = {"self_attn.q_proj": HEADS * HEAD_DIM, "self_attn.k_proj": KV_HEADS * HEAD_DIM,
            "self_attn.v_proj": KV_HEADS * HEAD_DIM, "mlp.down_proj": HIDDEN}
    for layer in range(2):
        for module, out in outs.items():
            stem = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{stem}.lora_A.weight"] = torch.randn(4, HIDDEN).to(torch.bfloat16)
            tensors[f"{stem}.lora_B.weight"] = torch.randn(out, 4).to(torch.bfloat16)
    tensors.update(extra or {})
    directory = tmp_path / "adapter"
    directory.mkdir()
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    settings = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": list(outs)}
    settings.update(config or {})
    (directory / "adapter_config.json").write_text(json.dumps(settings))
    return str(directory), {k: v.float().numpy() for k, v in tensors.items()}


def read(path) -> tuple[dict, dict]:
    reader = gguf.GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items()}
    return fields, {t.name: np.array(t.data) for t in reader.tensors}


def test_factors_land_under_the_base_names_with_peft_scaling_folded_into_b(tmp_path):
    lora, source = adapter(tmp_path)
    out = lora_to_gguf(lora, base_gguf(tmp_path / "base.gguf"), tmp_path / "lora.gguf")
    fields, tensors = read(out)
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "gemma3"
    assert len(tensors) == 16
    stem = "base_model.model.model.layers.1"
    a = tensors["blk.1.attn_q.weight.lora_a"]
    b = tensors["blk.1.attn_q.weight.lora_b"]
    np.testing.assert_array_equal(a, source[f"{stem}.self_attn.q_proj.lora_A.weight"])
    # llama.cpp applies s = alpha / rank; with PEFT's scaling (8 / 4) folded into B, the
    # update it computes is PEFT's: s * B' @ A == (lora_alpha / r) * B @ A
    applied = fields["adapter.lora.alpha"] / b.shape[1] * b @ a
    peft = 8 / 4 * source[f"{stem}.self_attn.q_proj.lora_B.weight"] @ a
    np.testing.assert_allclose(applied, peft, rtol=1e-6)
    assert "blk.0.ffn_down.weight.lora_b" in tensors and "blk.0.attn_v.weight.lora_a" in tensors


def test_rslora_scaling_is_folded_too(tmp_path):
    lora, source = adapter(tmp_path, {"use_rslora": True})
    fields, tensors = read(lora_to_gguf(lora, base_gguf(tmp_path / "b.gguf"), tmp_path / "l.gguf"))
    b = tensors["blk.0.attn_k.weight.lora_b"]
    expected = 8 / 2 * source["base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"]
    np.testing.assert_allclose(fields["adapter.lora.alpha"] / 4 * b, expected, rtol=1e-6)


def test_llama_query_and_key_rows_are_permuted_as_llama_cpp_permutes_the_weights(tmp_path):
    lora, source = adapter(tmp_path)
    fields, tensors = read(lora_to_gguf(lora, base_gguf(tmp_path / "b.gguf", "llama"),
                                        tmp_path / "l.gguf"))

    def llama_cpp_permute(w, heads):  # convert_hf_to_gguf.py LlamaModel.permute
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2) \
            .reshape(w.shape)

    stem = "base_model.model.model.layers.0.self_attn"
    for proj, name, heads in (("q_proj", "attn_q", HEADS), ("k_proj", "attn_k", KV_HEADS)):
        delta_hf = source[f"{stem}.{proj}.lora_B.weight"] @ source[f"{stem}.{proj}.lora_A.weight"]
        b, a = tensors[f"blk.0.{name}.weight.lora_b"], tensors[f"blk.0.{name}.weight.lora_a"]
        scale = fields["adapter.lora.alpha"] / b.shape[1]
        np.testing.assert_allclose(scale * b @ a, 2.0 * llama_cpp_permute(delta_hf, heads),
                                   rtol=1e-5, atol=1e-5)
    v_b = tensors["blk.0.attn_v.weight.lora_b"]
    np.testing.assert_allclose(v_b, 2.0 * source[f"{stem}.v_proj.lora_B.weight"], rtol=1e-6)


def test_what_llama_cpp_cannot_apply_is_one_line_error(tmp_path):
    lora, _ = adapter(tmp_path, extra={
        "base_model.model.lm_head.weight": torch.zeros(4, HIDDEN)})
    with pytest.raises(WeightsError, match="saved whole.*merge-lora"):
        lora_to_gguf(lora, base_gguf(tmp_path / "b.gguf"), tmp_path / "l.gguf")
    assert not (tmp_path / "l.gguf").exists()
    with pytest.raises(WeightsError, match="neither a .gguf LoRA file nor a PEFT adapter"):
        lora_gguf_for(tmp_path, tmp_path / "b.gguf")


def test_a_peft_dir_is_converted_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPKE_CACHE", str(tmp_path / "cache"))
    lora, _ = adapter(tmp_path)
    base = base_gguf(tmp_path / "base.gguf")
    first = lora_gguf_for(lora, base)
    assert first.parent == tmp_path / "cache" / "lora-gguf" and first.suffix == ".gguf"
    stamp = first.stat().st_mtime_ns
    assert lora_gguf_for(lora, base) == first and first.stat().st_mtime_ns == stamp
    assert lora_gguf_for(first, base) == first  # a LoRA GGUF is used as it is
    os.utime(base, ns=(stamp + 10**9, stamp + 10**9))  # another base: another conversion
    assert lora_gguf_for(lora, base) != first
