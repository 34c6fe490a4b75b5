"""merge-lora equals peft's merge_and_unload bit for bit, and the issue's end-to-end path holds:
merge-lora -> diff against the base -> recover -> tensors identical to the merged model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from weights_helpers import assert_bit_identical, load_dir

from deepke_llm.cli import main
from deepke_llm.training.weights.io import WeightsError
from deepke_llm.training.weights.lora import merge_lora, pattern_value

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


@pytest.fixture(scope="module")
def adapter_dir(tiny_llama_dir: Path, tmp_path_factory) -> Path:
    """A LoRA adapter with non-zero B on attention, MLP and embeddings, lm_head saved whole."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    config = LoraConfig(r=4, lora_alpha=16, init_lora_weights=False,
                        target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
                        modules_to_save=["lm_head"], rank_pattern={"down_proj": 2},
                        alpha_pattern={"v_proj": 3})
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def bases(tiny_llama_dir: Path, tmp_path_factory) -> dict[torch.dtype, Path]:
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("bases")
    paths = {}
    for dtype in DTYPES:
        model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=dtype)
        paths[dtype] = root / str(dtype).removeprefix("torch.")
        model.save_pretrained(str(paths[dtype]))
        for tokenizer_file in tiny_llama_dir.glob("tokenizer*"):
            (paths[dtype] / tokenizer_file.name).write_bytes(tokenizer_file.read_bytes())
    return paths


def peft_merged(base: Path, adapter: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_merge_matches_peft_merge_and_unload_exactly(tmp_path, adapter_dir, bases, dtype):
    result = merge_lora(bases[dtype], adapter_dir, tmp_path / "merged")
    assert result.counts == {"lora linear": 6, "lora embedding": 1, "replaced": 2}
    got = load_dir(tmp_path / "merged")
    want = peft_merged(bases[dtype], adapter_dir, dtype)
    assert_bit_identical(got, want)
    # the adapter really changed the weights it targets, and nothing else
    base = load_dir(bases[dtype])
    assert not got["model.layers.0.self_attn.q_proj.weight"].equal(base["model.layers.0.self_attn.q_proj.weight"])
    assert got["model.layers.0.self_attn.k_proj.weight"].equal(base["model.layers.0.self_attn.k_proj.weight"])


def test_rslora_scaling_matches_peft(tmp_path, tiny_llama_dir, bases):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    config = LoraConfig(r=8, lora_alpha=4, use_rslora=True, init_lora_weights=False,
                        target_modules=["o_proj", "up_proj"])
    get_peft_model(model, config).save_pretrained(str(tmp_path / "adapter"))
    merge_lora(bases[torch.bfloat16], tmp_path / "adapter", tmp_path / "merged")
    want = peft_merged(bases[torch.bfloat16], tmp_path / "adapter", torch.bfloat16)
    assert_bit_identical(load_dir(tmp_path / "merged"), want)


def test_pattern_lookup_follows_peft():
    from peft.utils.other import get_pattern_key

    patterns = {"down_proj": 2, r"layers\.1\.self_attn\.q_proj": 16}
    for module in ("model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj",
                   "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.xdown_proj"):
        want = patterns.get(get_pattern_key(patterns.keys(), module), 8)
        assert pattern_value(patterns, module, 8) == want


def test_unsupported_adapters_fail_clearly(tmp_path, adapter_dir, bases):
    dora = tmp_path / "dora"
    dora.mkdir()
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(WeightsError, match="use_dora .DoRA. is not supported"):
        merge_lora(bases[torch.float32], dora, tmp_path / "out")
    (dora / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    with pytest.raises(WeightsError, match="peft_type IA3 is not supported"):
        merge_lora(bases[torch.float32], dora, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_end_to_end_merge_diff_recover_is_bit_identical(tmp_path, adapter_dir, bases):
    base = bases[torch.bfloat16]
    runner = CliRunner()

    def cli(*args: str) -> None:
        result = runner.invoke(main, ["weights", *args])
        assert result.exit_code == 0, result.output

    cli("merge-lora", "--base", str(base), "--lora", str(adapter_dir), "-o", str(tmp_path / "merged"),
        "--max-shard-size", "150KB")
    cli("diff", "--raw", str(base), "--tuned", str(tmp_path / "merged"), "--output",
        str(tmp_path / "diff"), "--max-shard-size", "100KB")
    cli("recover", "--raw", str(base), "--diff", str(tmp_path / "diff"), "--out",
        str(tmp_path / "recovered"))
    merged = load_dir(tmp_path / "merged")
    assert len(list((tmp_path / "merged").glob("*.safetensors"))) > 1
    assert_bit_identical(load_dir(tmp_path / "recovered"), merged)

    # the recovered directory is a complete, loadable model with the tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "recovered"))
    assert model.dtype == torch.bfloat16
    assert model.model.embed_tokens.weight.equal(merged["model.embed_tokens.weight"])
    assert len(AutoTokenizer.from_pretrained(str(tmp_path / "recovered"))) == model.config.vocab_size


def test_lora_bias_merges_like_peft(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, attention_bias=True)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(str(tmp_path / "base"))
    model = LlamaForCausalLM.from_pretrained(str(tmp_path / "base"), dtype=torch.bfloat16)
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "k_proj"],
                                                  lora_bias=True, init_lora_weights=False))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name and name.endswith("bias"):
            param.data.normal_()
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    merge_lora(tmp_path / "base", tmp_path / "adapter", tmp_path / "merged")
    want = peft_merged(tmp_path / "base", tmp_path / "adapter", torch.bfloat16)
    got = load_dir(tmp_path / "merged")
    assert_bit_identical(got, want)
    base = load_dir(tmp_path / "base")
    assert not got["model.layers.0.self_attn.q_proj.bias"].equal(base["model.layers.0.self_attn.q_proj.bias"])
