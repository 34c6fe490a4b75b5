"""Bootstrap confidence interval of micro F1, resampling documents (seeded, vectorised).

``scipy.stats.bootstrap`` (percentile method, ``paired=True``) draws ``n`` documents with
replacement per sample and recomputes micro F1 from the summed per-document tp/fp/fn; the
interval is the percentile interval of those F1 values. Resampling whole documents keeps the
correlation between records of one document (Koehn 2004 style).
"""

from __future__ import annotations

from typing import Any

__all__ = ["bootstrap_f1"]

# draws per batch are capped so that memory stays ~50 MB whatever the corpus size
_MAX_CELLS = 2_000_000


def _micro_f1(tp: Any, fp: Any, fn: Any, axis: int = -1) -> Any:
    """2tp / (2tp + fp + fn) over the documents of each resample; 0 where nothing was predicted
    or expected."""
    import numpy as np

    tp, fp, fn = tp.sum(axis=axis), fp.sum(axis=axis), fn.sum(axis=axis)
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(tp)), where=denominator > 0)


def bootstrap_f1(per_document: Any, samples: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict[str, Any]:
    """``{"low", "high", "samples", "seed", "confidence"}`` for micro F1 of ``per_document``.

    ``per_document`` is an ``(n, 3)`` array of tp, fp, fn. With no documents or ``samples`` < 1
    the interval is ``[0, 0]``.
    """
    import numpy as np
    from scipy.stats import bootstrap

    counts = np.asarray(per_document, dtype=np.int64).reshape(-1, 3)
    n = len(counts)
    out = {"low": 0.0, "high": 0.0, "samples": int(samples), "seed": int(seed),
           "confidence": float(confidence)}
    if n == 0 or samples < 1:
        return out
    if n == 1:  # scipy needs two observations; every resample of one document is that document
        point = float(_micro_f1(*counts.T))
        out.update(low=point, high=point)
        return out
    result = bootstrap(tuple(counts.T), _micro_f1, n_resamples=samples, batch=max(1, _MAX_CELLS // n),
                       confidence_level=confidence, method="percentile", paired=True,
                       vectorized=True, rng=np.random.default_rng(seed))
    out.update(low=float(result.confidence_interval.low),
               high=float(result.confidence_interval.high))
    return out
