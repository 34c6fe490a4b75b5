"""Constrained decoding on the default model: what it removes, what it costs, what it does to F1.

For each benchmark, the same documents are extracted twice in one process on one engine, with
and without the constraint (:mod:`deepke_llm.decoding`), through ``run_benchmark`` (the code of
``deepke-llm evaluate``). Reported per run: strict F1, the documents' error lines sorted into
unparseable answers, ungrounded mentions and names outside the schema, and the extraction time
(its ratio constrained / free is the cost; the goal is <= 1.15x).

Results: ``benchmarks/results/perf/constrained.{json,md}``. Example::

    python benchmarks/perf/constrained.py --limit 0 --threads 2   # whole test splits
    python benchmarks/perf/constrained.py --benchmarks conll04 --limit 40 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deepke_llm.backends.registry import auto_engine, load_backend  # noqa: E402
from deepke_llm.evaluation.runner import EvaluationConfig, run_benchmark  # noqa: E402
from deepke_llm.io import atomic_path, read_jsonl  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "perf"
BENCHMARKS = ["conll03", "conll04", "peoples_daily"]
KINDS = {"ungrounded": ("not found in the text",),
         "outside_schema": ("unknown ",)}
MODEL_CHOICES = ("predicted as both", "several triggers", "subject/object pairs")


def classify(errors: list[str]) -> dict[str, int]:
    """Error lines -> counts: ungrounded, outside_schema, unparseable (what is left once the
    model's own choices, such as one mention under two types, are set aside)."""
    counts = {"ungrounded": 0, "outside_schema": 0, "unparseable": 0, "model_choices": 0}
    for line in errors:
        kind = next((k for k, marks in KINDS.items() if any(m in line for m in marks)), None)
        if kind is None:
            kind = "model_choices" if any(m in line for m in MODEL_CHOICES) else "unparseable"
        counts[kind] += 1
    return counts


def run(benchmark: str, backend: Any, constrained: bool, limit: int | None, batch_size: int,
        out_dir: Path) -> dict[str, Any]:
    config = EvaluationConfig(benchmark=benchmark, limit=limit, output_dir=str(out_dir),
                              batch_size=batch_size, bootstrap=0, constrained=constrained,
                              progress=False)
    started = time.perf_counter()
    result = run_benchmark(config, backend, f"default-{'constrained' if constrained else 'free'}")
    seconds = time.perf_counter() - started
    summary = result.summary
    pred = out_dir / benchmark / summary["files"]["pred"]
    errors = [e for _, record in read_jsonl(pred) for e in record.get("errors", [])]
    task = summary["task"]
    strict = summary["scores"][task]["strict"]
    f1 = strict["argument_classification"]["f1"] if task == "ee" else strict["f1"]
    return {"documents": summary["documents"], "strict_f1": round(100 * f1, 2),
            "seconds": round(seconds, 1), "generated_tokens": summary["extraction"][
                "generated_tokens"], "errors": classify(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", nargs="+", default=BENCHMARKS)
    parser.add_argument("--limit", type=int, default=300,
                        help="Documents per benchmark (0: the whole test split).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--jump-forward", action="store_true",
                        help="llama.cpp: feed the answer's forced structure without logits.")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--note", action="append", default=[],
                        help="A line for the results (e.g. what else ran on the machine).")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Keep each run's prediction and gold files under this folder.")
    args = parser.parse_args()
    os.environ.setdefault("DEEPKE_DATA", str(REPO.parent / "shared" / "data"))
    engine = auto_engine(None, None)
    options = {"threads": args.threads, "parallel": args.batch_size,
               "jump_forward": args.jump_forward} if engine == "llamacpp" else {}
    backend = load_backend(backend=engine, **options)
    limit = args.limit or None
    rows: list[dict[str, Any]] = []
    result = {"engine": engine, "jump_forward": args.jump_forward, "threads": args.threads,
              "batch_size": args.batch_size, "limit": limit,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "date": time.strftime("%Y-%m-%d"), "notes": args.note, "runs": rows}
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.keep or Path(tmp)
        # warm-up (not recorded): the adapter, the vocabulary index, the caches of both modes
        for mode in (False, True):
            run(args.benchmarks[0], backend, mode, 4, args.batch_size, Path(tmp) / "warm")
        for benchmark in args.benchmarks:
            free = run(benchmark, backend, False, limit, args.batch_size, keep / "free")
            held = run(benchmark, backend, True, limit, args.batch_size, keep / "constrained")
            rows.append({"benchmark": benchmark, "free": free, "constrained": held,
                         "f1_delta": round(held["strict_f1"] - free["strict_f1"], 2),
                         "time_ratio": round(held["seconds"] / free["seconds"], 3)})
            print(json.dumps(rows[-1]), flush=True)
            if not args.no_write:  # after each benchmark: a long run keeps what it measured
                write(result)


def write(result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_path(RESULTS / "constrained.json") as path:
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    scope = (f"first {result['limit']} test documents each" if result["limit"]
             else "whole test splits")
    lines = [f"# Constrained decoding on the default model ({result['engine']}, "
             f"{result['threads']} threads, {scope})", "",
             "Written by `python benchmarks/perf/constrained.py`; free and constrained runs of "
             "one benchmark are back to back in one process.", "",
             "| benchmark | mode | strict F1 | unparseable | ungrounded | outside schema | "
             "seconds | time ratio |", "|---|---|---|---|---|---|---|---|"]
    for row in result["runs"]:
        for mode in ("free", "constrained"):
            run_ = row[mode]
            errors = run_["errors"]
            ratio = f"{row['time_ratio']:.2f}x" if mode == "constrained" else "1.00x"
            lines.append(f"| {row['benchmark']} | {mode} | {run_['strict_f1']:.2f} | "
                         f"{errors['unparseable']} | {errors['ungrounded']} | "
                         f"{errors['outside_schema']} | {run_['seconds']} | {ratio} |")
    if result.get("notes"):
        lines += ["", *(f"- {note}" for note in result["notes"])]
    with atomic_path(RESULTS / "constrained.md") as path:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
