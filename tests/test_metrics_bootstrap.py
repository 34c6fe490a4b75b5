"""Bootstrap CI of F1 over documents: seeded, brackets the point estimate, fast, degenerate-safe,
and the same interval as a plain numpy percentile bootstrap over the same draws."""

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


def _numpy_percentile_bootstrap(per_doc: np.ndarray, samples: int, seed: int) -> tuple[float, float]:
    """The hand-written bootstrap scipy replaced: draw n documents per sample, micro F1 of the
    sums, 2.5th and 97.5th percentile."""
    rng = np.random.default_rng(seed)
    n = len(per_doc)
    batch = max(1, 2_000_000 // n)  # bootstrap_f1's batch size, so the draws line up
    f1 = []
    for first in range(0, samples, batch):
        tp, fp, fn = per_doc[rng.integers(0, n, size=(min(batch, samples - first), n))].sum(1).T
        f1.append(np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0))
    low, high = np.percentile(np.concatenate(f1), [2.5, 97.5])
    return float(low), float(high)


def test_scipy_interval_matches_a_plain_numpy_percentile_bootstrap():
    rng = np.random.default_rng(11)
    for n, samples in ((2, 200), (37, 1000), (2000, 1500)):  # 1500 over 2000 docs: two batches
        per_doc = rng.integers(0, 4, size=(n, 3))
        ours = bootstrap_f1(per_doc, samples=samples, seed=5)
        low, high = _numpy_percentile_bootstrap(per_doc, samples, 5)
        assert abs(ours["low"] - low) < 1e-12 and abs(ours["high"] - high) < 1e-12


def test_one_document_interval_is_its_f1():
    # every resample of a single document is that document (scipy itself refuses n < 2)
    assert bootstrap_f1(np.array([[1, 1, 0]]), samples=10) | {} == {
        "low": 2 / 3, "high": 2 / 3, "samples": 10, "seed": 0, "confidence": 0.95}


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
