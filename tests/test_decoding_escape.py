"""Escape under the decoding constraint on llama.cpp: a mention the model cannot start from the
text is taken back, with its cache cells, and its list closed. Checked against a replay that
recomputes every step from scratch in transformers (no cache to get wrong): the same tokens."""

from __future__ import annotations

import importlib.util

import pytest

from deepke_llm.backends.base import GenerationConfig
from deepke_llm.decoding import ConstraintCompiler, RowConstraint
from deepke_llm.extractor import parse_output
from deepke_llm.prompts.styles import chunk_schema, get_style
from deepke_llm.schema import load_schema
from deepke_llm.tasks import get_task

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python is not installed")

TEXTS = ["Japan began the defence of their Asian Cup title with a lucky win against Syria.",
         "Thomas Edison died in West Orange, New Jersey.",
         "Robert Allenby of Australia won the tournament in Sydney on Sunday."]
BUDGET = 40
OPENING = b'{"person": ["'


def replay(model, ids: list[int], row: RowConstraint, eog: set[int]) -> list[int]:
    """Greedy decoding under ``row`` with the whole sequence recomputed at every step."""
    import torch

    out: list[int] = []
    while len(out) < BUDGET and not row.finished:
        with torch.inference_mode():
            logits = model(torch.tensor([ids + out])).logits[0, -1].float().numpy()
        escaped = row.escaped(logits)
        if escaped is not None:
            back, tokens = escaped
            out = out[:len(out) - back] + tokens
            continue
        token = row.pick(logits)
        if token in eog:
            break
        row.advance(token)
        out.append(token)
    return out


class Opening(RowConstraint):
    """A row whose answer opens with a mention (a random model would write empty lists): the
    first "escape" feeds ``{"person": ["`` without taking anything back; the escapes after it
    are the real ones."""

    def escaped(self, logits):
        if self.generated == 0:
            tokens = self.index.tokenize(OPENING)
            for token in tokens:
                self.advance(token)
            return 0, tokens
        return super().escaped(logits)


def test_escapes_take_their_tokens_back_from_the_cache(tiny_llama_dir, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    import deepke_llm.decoding
    from deepke_llm.backends.llamacpp import LlamaCppBackend
    from deepke_llm.training.weights.export_gguf import export_gguf

    monkeypatch.setattr(deepke_llm.decoding, "RowConstraint", Opening)
    gguf = export_gguf(tiny_llama_dir, tmp_path / "tiny.gguf", quant="f16").out
    engine = LlamaCppBackend(gguf, parallel=2, threads=2, escape=True)
    task, schema = get_task("ner"), load_schema("conll03")
    chunk = chunk_schema(task, schema)[0]
    items = task.schema_items(chunk, "en")
    style = get_style("iepile")
    prompts = [style.build(task, chunk, text, "en") for text in TEXTS]
    compiler = ConstraintCompiler("iepile", "ner")
    constraints = [compiler.for_prompt(0, items, text) for text in TEXTS]
    answers = engine.generate(prompts, GenerationConfig(max_new_tokens=BUDGET, batch_size=2),
                              constraints)
    # a random model wants names that are not in the text: each opened list is closed again
    assert engine.escapes > len(TEXTS)
    assert all(a.startswith('{"person": [') for a in answers), answers
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    index = engine.token_index()
    eog = {int(t) for t in index.end_ids}
    for prompt, constraint, answer, text in zip(prompts, constraints, answers, TEXTS,
                                                strict=True):
        row = Opening(constraint.automaton, index, BUDGET, escape=True)
        tokens = replay(model, engine.encode_prompt(prompt), row, eog)
        assert engine._decode_tokens(tokens) == answer
        _, errors = parse_output(task, answer, chunk, text, "en", style)
        assert [e for e in errors if "predicted as both" not in e] == [], (answer, errors)
    engine.close()
