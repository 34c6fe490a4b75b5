"""KG2Instruction context scorers: a local sentence-embedding model, and an unknown kind."""

from __future__ import annotations

import pytest
from kg2instruction_helpers import tiny_kb

from kg2instruction.kb import KnowledgeBase


@pytest.mark.slow
def test_embedding_context_scorer_runs_on_a_local_model(tiny_llama_dir):
    from kg2instruction.context import make_context_scorer
    from kg2instruction.inputs import EntityRecord, RelationInfo

    kb = KnowledgeBase([RelationInfo("r", "r")])
    kb.add_entity(EntityRecord("A", ("Apple",), description="company making phones"))
    kb.add_entity(EntityRecord("B", ("Apple",), description="fruit of a tree"))
    kb.finalize()
    scorer = make_context_scorer(str(tiny_llama_dir), kb, "en")
    scores = scorer.scores("Apple sells phones.", "Apple", [0, 1])
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    assert scorer.scores("Apple sells phones.", "Apple", [1, 0]) == pytest.approx(scores[::-1])


def test_unknown_context_kind_is_an_input_error():
    from kg2instruction.context import make_context_scorer
    from kg2instruction.inputs import InputError

    with pytest.raises(InputError, match="tfidf, none, minilm"):
        make_context_scorer("no-such-model-dir", tiny_kb({"A": ["a"]}), "en")
