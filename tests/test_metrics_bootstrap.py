"""Bootstrap CI of F1 over documents: seeded, brackets the point estimate, fast, degenerate-safe."""

from __future__ import annotations

import time

import numpy as np

from deepke_llm.evaluation.bootstrap import bootstrap_f1
from deepke_llm.evaluation.metrics import LevelScore


def test_interval_is_seeded_and_brackets_the_point_estimate():
    rng = np.random.default_rng(7)
    per_doc = np.stack([rng.integers(0, 5, 500), rng.integers(0, 3, 500),
                        rng.integers(0, 3, 500)], axis=1)
    tp, fp, fn = per_doc.sum(axis=0)
    point = 2 * tp / (2 * tp + fp + fn)
    first = bootstrap_f1(per_doc, samples=500, seed=3)
    assert first == bootstrap_f1(per_doc, samples=500, seed=3)
    assert first != bootstrap_f1(per_doc, samples=500, seed=4)
    assert first["low"] < point < first["high"]
    assert first["high"] - first["low"] < 0.1
    assert (first["samples"], first["seed"], first["confidence"]) == (500, 3, 0.95)


def test_perfect_and_empty_inputs():
    assert bootstrap_f1(np.array([[2, 0, 0], [1, 0, 0]]), samples=50) | {} == {
        "low": 1.0, "high": 1.0, "samples": 50, "seed": 0, "confidence": 0.95}
    assert bootstrap_f1(np.zeros((0, 3)), samples=50)["high"] == 0.0
    assert bootstrap_f1(np.zeros((4, 3)), samples=50)["high"] == 0.0  # nothing anywhere: F1 0


def test_level_score_feeds_per_document_counts():
    score = LevelScore()
    score.add_document([("a",), ("b",)], [("a",), ("c",)])
    score.add_document([], [])
    assert score.document_counts().tolist() == [[1, 1, 1], [0, 0, 0]]


def test_thousand_samples_over_a_conll_sized_test_set_take_well_under_a_second():
    per_doc = np.random.default_rng(0).integers(0, 4, size=(3453, 3))
    started = time.perf_counter()
    bootstrap_f1(per_doc, samples=1000)
    assert time.perf_counter() - started < 1.5
