"""Constrained decoding on the default model: what it removes, what it costs, what it does to F1.

For each benchmark, the same documents are extracted twice in one process on one engine, with
and without the constraint (:mod:`deepke_llm.decoding`), through ``run_benchmark`` (the code of
``deepke-llm evaluate``). Reported per run: strict F1, the documents' error lines sorted into
unparseable answers, ungrounded mentions and names outside the schema, and the extraction time
(its ratio constrained / free is the cost; the goal is <= 1.15x).

With ``--escape`` (llama.cpp) the two runs are constrained, without and with escape
(``RowConstraint.escaped``: a mention the model cannot start from the text is dropped by closing
its list); whether escape should be on by default is decided on dev splits (``--split dev``).

Results: ``benchmarks/results/perf/constrained.{json,md}`` (``constrained_escape.*`` with
``--escape``). Example::

    python benchmarks/perf/constrained.py --limit 0 --threads 2   # whole test splits
    python benchmarks/perf/constrained.py --escape --split dev --limit 0 --benchmarks conll03 conll04
    python benchmarks/perf/constrained.py --benchmarks conll04 --limit 40 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from _results import machine, write_results  # noqa: E402  (benchmarks/perf/_results.py)

from deepke_llm.backends.registry import auto_engine, load_backend  # noqa: E402
from deepke_llm.evaluation.runner import EvaluationConfig, run_benchmark  # noqa: E402
from deepke_llm.io import read_jsonl  # noqa: E402

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


def run(benchmark: str, backend: Any, mode: str, limit: int | None, batch_size: int,
        out_dir: Path, split: str | None = None) -> dict[str, Any]:
    """One run of ``mode``: free, constrained or escape (constrained, escape on)."""
    if hasattr(backend, "escape"):
        backend.escape = mode == "escape"
    escapes = getattr(backend, "escapes", 0)
    config = EvaluationConfig(benchmark=benchmark, split=split, limit=limit,
                              output_dir=str(out_dir), batch_size=batch_size, bootstrap=0,
                              constrained=mode != "free", progress=False)
    started = time.perf_counter()
    result = run_benchmark(config, backend, f"default-{mode}")
    seconds = time.perf_counter() - started
    summary = result.summary
    pred = out_dir / benchmark / summary["files"]["pred"]
    errors = [e for _, record in read_jsonl(pred) for e in record.get("errors", [])]
    task = summary["task"]
    strict = summary["scores"][task]["strict"]
    f1 = strict["argument_classification"]["f1"] if task == "ee" else strict["f1"]
    return {"split": summary["split"], "documents": summary["documents"],
            "strict_f1": round(100 * f1, 2),
            "seconds": round(seconds, 1), "generated_tokens": summary["extraction"][
                "generated_tokens"], "errors": classify(errors),
            "escapes": getattr(backend, "escapes", 0) - escapes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", nargs="+", default=BENCHMARKS)
    parser.add_argument("--limit", type=int, default=300,
                        help="Documents per benchmark (0: the whole test split).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--jump-forward", action="store_true",
                        help="llama.cpp: feed the answer's forced structure without logits.")
    parser.add_argument("--escape", action="store_true",
                        help="Compare constrained runs without and with escape (llama.cpp).")
    parser.add_argument("--split", default=None,
                        help="Benchmark split [default: the benchmark's, usually test].")
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
    if args.escape and engine != "llamacpp":
        parser.error("--escape needs llama.cpp (transformers' generate cannot take tokens back)")
    backend = load_backend(backend=engine, **options)
    limit = args.limit or None
    modes = ("constrained", "escape") if args.escape else ("free", "constrained")
    rows: list[dict[str, Any]] = []
    result = {"engine": engine, "jump_forward": args.jump_forward, "threads": args.threads,
              "batch_size": args.batch_size, "limit": limit, "split": args.split or "default",
              "modes": modes,
              "machine": machine(),
              "date": time.strftime("%Y-%m-%d"), "notes": args.note, "runs": rows}
    with tempfile.TemporaryDirectory() as tmp:
        keep = args.keep or Path(tmp)
        # warm-up (not recorded): the adapter, the vocabulary index, the caches of both modes
        for mode in modes:
            run(args.benchmarks[0], backend, mode, 4, args.batch_size, Path(tmp) / "warm",
                args.split)
        for benchmark in args.benchmarks:
            base, other = (run(benchmark, backend, mode, limit, args.batch_size, keep / mode,
                               args.split) for mode in modes)
            rows.append({"benchmark": benchmark, modes[0]: base, modes[1]: other,
                         "f1_delta": round(other["strict_f1"] - base["strict_f1"], 2),
                         "time_ratio": round(other["seconds"] / base["seconds"], 3)})
            print(json.dumps(rows[-1]), flush=True)
            if not args.no_write:  # after each benchmark: a long run keeps what it measured
                write(result)


def write(result: dict[str, Any]) -> None:
    modes = result["modes"]
    splits = sorted({row[modes[0]].get("split", "test") for row in result["runs"]}) or ["test"]
    split = "/".join(splits)  # as each run reported it (a benchmark's default may not be test)
    scope = (f"first {result['limit']} {split} documents each" if result["limit"]
             else f"whole {split} splits")
    lines = [f"# Constrained decoding on the default model ({result['engine']}, "
             f"{result['threads']} threads, {scope})", "",
             "Written by `python benchmarks/perf/constrained.py"
             f"{' --escape' if 'escape' in modes else ''}`; the {modes[0]} and {modes[1]} runs "
             "of one benchmark are back to back in one process (escape: constrained, with "
             "escape on).", "",
             "| benchmark | mode | strict F1 | unparseable | ungrounded | outside schema | "
             "escapes | seconds | time ratio |", "|---|---|---|---|---|---|---|---|---|"]
    for row in result["runs"]:
        for mode in modes:
            run_ = row[mode]
            errors = run_["errors"]
            ratio = f"{row['time_ratio']:.2f}x" if mode == modes[1] else "1.00x"
            lines.append(f"| {row['benchmark']} | {mode} | {run_['strict_f1']:.2f} | "
                         f"{errors['unparseable']} | {errors['ungrounded']} | "
                         f"{errors['outside_schema']} | {run_.get('escapes', 0)} | "
                         f"{run_['seconds']} | {ratio} |")
    if result.get("notes"):
        lines += ["", *(f"- {note}" for note in result["notes"])]
    write_results("constrained_escape" if "escape" in modes else "constrained", result, lines)


if __name__ == "__main__":
    main()
