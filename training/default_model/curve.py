"""F1 against tokens trained: evaluate every checkpoint of the default adapter's run.

    python training/default_model/curve.py runs/default/adapter runs/default/stage2 --limit 200

Each checkpoint (and the base model with few-shot demonstrations, step 0) is scored with the
benchmark runner on the first --limit documents of each benchmark's test split; the points go to
benchmarks/results/default_model/curve.{json,md}, which the README's results section shows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "benchmarks" / "results" / "default_model"
BENCHMARKS = ("conll03", "conll04", "peoples_daily")


def _state(checkpoint: Path) -> tuple[int, int]:
    data = json.loads((checkpoint / "trainer_state.json").read_text())
    seen = [h["num_input_tokens_seen"] for h in data["log_history"] if "num_input_tokens_seen" in h]
    return data["global_step"], seen[-1] if seen else 0


def evaluate_point(lora: str | None, limit: int, batch_size: int, few_shot: int,
                   scratch: Path) -> dict[str, float]:
    from deepke_llm.backends.registry import load_backend
    from deepke_llm.evaluation.runner import EvaluationConfig, run_benchmark

    backend = load_backend(model="default", lora=lora)
    scores = {}
    for name in BENCHMARKS:
        config = EvaluationConfig(benchmark=name, limit=limit, output_dir=str(scratch),
                                  batch_size=batch_size, max_new_tokens=128, bootstrap=0,
                                  few_shot=few_shot, progress=False)
        result = run_benchmark(config, backend, f"curve-{Path(lora).name if lora else 'base'}")
        task = result.summary["task"]
        scores[name] = result.summary["scores"][task]["strict"]["f1"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+",
                        help="SFT output dirs in training order (a later run continues the one "
                             "before: its tokens and examples add to that run's totals)")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--base-few-shot", type=int, default=3)
    parser.add_argument("--every", type=int, default=1, help="Evaluate every k-th checkpoint.")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.runs[0]) / "curve-scratch"
    path = OUT / "curve.json"
    done = json.loads(path.read_text()) if path.exists() else {"points": []}
    points = {p["step"]: p for p in done["points"]}
    if 0 not in points:
        f1 = evaluate_point(None, args.limit, args.batch_size, args.base_few_shot, scratch)
        points[0] = {"step": 0, "tokens": 0, "examples": 0, "f1": f1,
                     "model": f"base, {args.base_few_shot}-shot"}
    step0 = tokens0 = 0
    for stage, run in enumerate(args.runs, 1):
        checkpoints = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        for checkpoint in checkpoints[args.every - 1::args.every]:
            step, tokens = _state(checkpoint)
            step, tokens = step0 + step, tokens0 + tokens
            if step not in points:
                f1 = evaluate_point(str(checkpoint), args.limit, args.batch_size, 0, scratch)
                points[step] = {"step": step, "tokens": tokens, "examples": step * 8, "f1": f1,
                                "model": f"base + adapter (stage {stage})"}
                _write(points, args)
        if checkpoints:
            last_step, last_tokens = _state(checkpoints[-1])
            step0, tokens0 = step0 + last_step, tokens0 + last_tokens
    _write(points, args)


def _write(points: dict[int, dict], args: argparse.Namespace) -> None:
    ordered = [points[k] for k in sorted(points)]
    data = {"benchmarks": list(BENCHMARKS), "points": ordered,
            "note": f"strict F1 on the first {args.limit} test documents of each benchmark; "
                    f"step 0 is the base model with {args.base_few_shot} demonstrations; "
                    f"`python training/default_model/curve.py "
                    f"{' '.join(map(str, args.runs))} --limit {args.limit}`"}
    (OUT / "curve.json").write_text(json.dumps(data, indent=1))
    lines = ["# Default adapter: strict F1 against tokens trained", "", data["note"], "",
             "| step | tokens | examples | model | " + " | ".join(BENCHMARKS) + " |",
             "|---:|---:|---:|---|" + "---:|" * len(BENCHMARKS)]
    for p in ordered:
        cells = " | ".join(f"{100 * p['f1'][b]:.2f}" for b in BENCHMARKS)
        lines.append(f"| {p['step']} | {p['tokens']:,} | {p['examples']:,} | {p['model']} | {cells} |")
    (OUT / "curve.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
