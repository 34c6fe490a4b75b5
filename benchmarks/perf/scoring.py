"""Strict NER scoring speed: our span scorer vs seqeval on CoNLL-2003 test, same predictions.

Predictions are seeded, token-aligned noisy copies of the gold entities
(:func:`deepke_llm.evaluation.iob.perturb_entities`), so both scorers see exactly the same
entities: ours as span records, seqeval as IOB2 tags. The script checks that P/R/F1 and tp/fp/fn
are identical, times each scorer (best and median of ``--repeats`` runs; seqeval's time excludes
turning records into tags, which its users already have) and writes
``benchmarks/results/perf/scoring.{json,md}``.

Example::

    python benchmarks/perf/scoring.py                 # data from $DEEPKE_DATA or ../shared/data
    python benchmarks/perf/scoring.py --data-dir ~/data --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deepke_llm.datasets import read_dataset  # noqa: E402
from deepke_llm.evaluation.definitions import load_benchmark  # noqa: E402
from deepke_llm.evaluation.iob import (  # noqa: E402
    documents_to_iob2,
    perturb_entities,
    seqeval_strict,
)
from deepke_llm.evaluation.runner import data_record  # noqa: E402
from deepke_llm.evaluation.scoring import score_documents  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "perf"
LIMIT_SECONDS = 1.0


def timed(function: Callable[[], Any], repeats: int) -> tuple[Any, list[float]]:
    """The last result of ``function`` and the wall time of each of ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return result, times


def seqeval_micro(gold_tags: list[list[str]], pred_tags: list[list[str]]) -> tuple[float, ...]:
    """seqeval's micro P/R/F1 in one call (mode='strict', scheme=IOB2)."""
    from seqeval.metrics.v1 import precision_recall_fscore_support
    from seqeval.scheme import IOB2

    p, r, f, _ = precision_recall_fscore_support(gold_tags, pred_tags, average="micro",
                                                 mode="strict", scheme=IOB2, zero_division=0)
    return float(p), float(r), float(f)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = os.environ.get("DEEPKE_DATA", str(REPO.parent / "shared" / "data"))
    parser.add_argument("--data-dir", default=default_data, help="Holds conll2003/eng.testb.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs per scorer.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the noisy predictions.")
    parser.add_argument("--output-dir", default=str(RESULTS), help="Where scoring.{json,md} go.")
    args = parser.parse_args(argv)

    path = Path(args.data_dir) / "conll2003" / "eng.testb"
    gold = list(read_dataset("conll03", path, schema="conll03", split="test"))
    pred = perturb_entities(gold, args.seed, ("person", "location", "organization", "else"))

    ours, our_times = timed(lambda: score_documents("ner", gold, pred, ["strict"]), args.repeats)
    counts = ours.level("strict").overall
    started = time.perf_counter()
    gold_tags, pred_tags = documents_to_iob2(gold), documents_to_iob2(pred)
    tag_seconds = time.perf_counter() - started
    seqeval_micro(gold_tags[:1], pred_tags[:1])  # import and warm up outside the timing
    theirs, seqeval_times = timed(lambda: seqeval_micro(gold_tags, pred_tags), args.repeats)
    reference = seqeval_strict(gold_tags, pred_tags)

    identical = ((counts.precision, counts.recall, counts.f1) == theirs
                 and (counts.tp, counts.fp, counts.fn) == (reference["tp"], reference["fp"],
                                                           reference["fn"]))
    from importlib.metadata import version

    result = {
        # benchmark, split, file under the data dir and sha256: no directory of this machine
        "data": data_record(load_benchmark("conll03"), "test", path), "documents": len(gold), "gold_entities": counts.tp + counts.fn,
        "predicted_entities": counts.tp + counts.fp, "seed": args.seed, "repeats": args.repeats,
        "ours": {"precision": counts.precision, "recall": counts.recall, "f1": counts.f1,
                 "tp": counts.tp, "fp": counts.fp, "fn": counts.fn,
                 "seconds_best": min(our_times), "seconds_median": statistics.median(our_times)},
        "seqeval": {"precision": theirs[0], "recall": theirs[1], "f1": theirs[2],
                    "tp": reference["tp"], "fp": reference["fp"], "fn": reference["fn"],
                    "seconds_best": min(seqeval_times),
                    "seconds_median": statistics.median(seqeval_times),
                    "records_to_tags_seconds": tag_seconds, "version": version("seqeval")},
        "identical": identical,
        "ours_within_limit": statistics.median(our_times) <= LIMIT_SECONDS,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
    }
    write(Path(args.output_dir), result)
    print(json.dumps({k: result[k] for k in ("identical", "ours_within_limit")}
                     | {"ours_s": result["ours"]["seconds_median"],
                        "seqeval_s": result["seqeval"]["seconds_median"],
                        "f1": counts.f1}))
    if not identical:
        raise SystemExit("scores differ from seqeval")
    return result


def write(directory: Path, result: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "scoring.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    ours, theirs = result["ours"], result["seqeval"]
    rows = [
        f"| deepke-llm strict span scorer | {ours['seconds_median']:.3f} | {ours['seconds_best']:.3f}"
        f" | {ours['precision'] * 100:.2f} | {ours['recall'] * 100:.2f} | {ours['f1'] * 100:.2f}"
        f" | {ours['tp']} | {ours['fp']} | {ours['fn']} |",
        f"| seqeval {theirs['version']} (strict, IOB2) | {theirs['seconds_median']:.3f} | "
        f"{theirs['seconds_best']:.3f} | {theirs['precision'] * 100:.2f} | "
        f"{theirs['recall'] * 100:.2f} | {theirs['f1'] * 100:.2f} | {theirs['tp']} | "
        f"{theirs['fp']} | {theirs['fn']} |",
    ]
    text = "\n".join([
        "# Strict NER scoring: deepke-llm vs seqeval", "",
        f"CoNLL-2003 test ({result['documents']} sentences, {result['gold_entities']} gold and "
        f"{result['predicted_entities']} predicted entities; seeded noisy predictions, seed "
        f"{result['seed']}). Median and best of {result['repeats']} runs on "
        f"{result['machine']['platform']}, Python {result['machine']['python']}, "
        f"{result['machine']['cpus']} CPUs. Written by `python benchmarks/perf/scoring.py`.", "",
        "| scorer | median s | best s | P | R | F1 | TP | FP | FN |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|", *rows, "",
        f"Identical numbers: **{'yes' if result['identical'] else 'NO'}**. Ours within "
        f"{LIMIT_SECONDS:.0f} s: **{'yes' if result['ours_within_limit'] else 'NO'}**. "
        f"seqeval's time excludes turning records into IOB2 tags "
        f"({theirs['records_to_tags_seconds']:.3f} s).", ""])
    (directory / "scoring.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
