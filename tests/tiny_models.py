"""Tiny LLaMA-architecture models and sentencepiece tokenizers built on the spot (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "You are an expert in named entity recognition. Please extract entities that match the schema "
    "definition from the input. Return an empty list if the entity type does not exist.",
    '{"instruction": "extract", "schema": ["person", "location", "organization"], "input": "text"}',
    '{"person": ["Robert Allenby"], "location": ["Australia"], "organization": []}',
    '{"work for": [{"subject": "John Smith", "object": "Acme Corp"}]}',
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria.",
    "你是专门进行实体抽取的专家。请从input中抽取出符合schema定义的实体，不存在的实体类型返回空列表。",
    '{"人物": ["张三"], "地理位置": ["北京"], "组织机构": ["浙江大学"]}',
    "Thomas Edison died in West Orange, New Jersey. Oracle laid off 300 workers in March.",
    "0123456789 ,.:;!?'\"()[]{}<>-_/\\@#$%^&*+=~`|",
]


def _iepile_sentences() -> list[str]:
    # the task sentences every IEPile prompt repeats: in the vocabulary, prompts stay short
    from deepke_llm.prompts.iepile import INSTRUCTIONS

    return list(INSTRUCTIONS.values())


def train_tokenizer(out_dir: Path, vocab_size: int = 1000, extra_text: list[str] | None = None) -> Path:
    """Train a byte-fallback sentencepiece model and save it as a Hugging Face LlamaTokenizer dir."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "corpus.txt"
    corpus.write_text("\n".join((CORPUS + _iepile_sentences() + (extra_text or [])) * 20),
                      encoding="utf-8")
    prefix = out_dir / "sp"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        character_coverage=1.0, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, hard_vocab_limit=False,
        minloglevel=2,
    )
    tok_dir = out_dir / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    (tok_dir / "tokenizer.model").write_bytes(prefix.with_suffix(".model").read_bytes())
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>",
        "model_max_length": 2048, "legacy": False,
    }))
    tokenizer = LlamaTokenizer.from_pretrained(str(tok_dir), add_bos_token=True)
    assert len(tokenizer) >= 300, "sentencepiece tokenizer came back empty"
    tokenizer.save_pretrained(str(tok_dir))
    return tok_dir


def build_tiny_llama(out_dir: Path, tokenizer_dir: Path, hidden: int = 64, layers: int = 2,
                     seed: int = 0) -> Path:
    """Save a randomly initialised LlamaForCausalLM (+ tokenizer files) into ``out_dir``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
