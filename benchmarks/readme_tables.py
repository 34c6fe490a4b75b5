"""Regenerate the README's results section from benchmarks/results/ (never typed by hand).

    python benchmarks/readme_tables.py          # rewrite the section in README.md
    python benchmarks/readme_tables.py --check  # exit 1 if README.md is out of date

The section lies between ``<!-- results:start -->`` and ``<!-- results:end -->``. Only published
results count: in a git checkout, the files git tracks (staged ones included), so a report that
someone's own run left in benchmarks/results/ changes nothing. To publish a run:
``deepke-llm evaluate ... --output-dir benchmarks/results``, ``git add`` its .json/.md/.png,
then run this script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"
SKIP = {"perf", "kg2instruction", "default_model"}


def _tracked() -> frozenset[Path] | None:
    """Files under RESULTS that git tracks; None when ROOT is no git checkout (then all count)."""
    try:
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--", str(RESULTS)],
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return frozenset((ROOT / name).resolve() for name in listed.decode().split("\0") if name)


def published(paths: Iterable[Path]) -> list[Path]:
    """``paths`` that are published results (tracked by git), in sorted order."""
    tracked = _tracked()
    return sorted(p for p in paths if tracked is None or p.resolve() in tracked)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def benchmark_rows() -> list[str]:
    rows = []
    for directory in sorted(p for p in RESULTS.iterdir() if p.is_dir() and p.name not in SKIP):
        for path in published(directory.glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            if "scores" not in data:
                continue
            scores = data["scores"][data["task"]]
            strict = scores.get("strict", {})
            string = scores.get("string", {})
            if data["task"] == "ee":
                strict = strict.get("argument_classification", {})
                string = string.get("argument_classification", {})
            shots = (data.get("settings") or {}).get("few_shot") or 0
            rows.append(f"| {data['benchmark']} | {data['split']} ({data['documents']} docs) | "
                        f"{data['model']} | {shots} | {_pct(strict.get('f1'))} | "
                        f"{_pct(string.get('f1'))} | {data['date']} | "
                        f"[{path.stem}](benchmarks/results/{directory.name}/{path.stem}.md) |")
    return rows


def curve_rows() -> list[str]:
    path = RESULTS / "default_model" / "curve.json"
    if not published([path]) or not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for point in data["points"]:
        cells = " | ".join(_pct(point["f1"].get(name)) for name in data["benchmarks"])
        rows.append(f"| {point['step']} | {point['tokens']:,} | {point['examples']:,} | {cells} |")
    header = " | ".join(f"{name} strict F1" for name in data["benchmarks"])
    return [f"Training curve of the default adapter ({data['note']}):", "",
            f"| step | tokens trained | examples | {header} |",
            "|---:|---:|---:|" + "---:|" * len(data["benchmarks"]), *rows, ""]


def perf_rows() -> list[str]:
    names = [p.stem for p in published((RESULTS / "perf").glob("*.md"))]
    return [f"- [{name}](benchmarks/results/perf/{name}.md)" for name in names]


def section() -> str:
    lines = [START, "", "Benchmark runs (`deepke-llm evaluate`; F1 in percent, EE rows: argument "
             "classification):", "",
             "| benchmark | split | model | shots | strict F1 | string F1 | date | report |",
             "|---|---|---|---:|---:|---:|---|---|"]
    lines += benchmark_rows() or ["| – | – | no runs yet | – | – | – | – | – |"]
    lines += ["", *curve_rows()]
    lines += ["Performance measurements (scripts in `benchmarks/perf/`):", "", *perf_rows(), "", END]
    return "\n".join(lines)


def render(readme: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md has no {START} ... {END} section")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + section() + tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Fail if README.md is out of date.")
    args = parser.parse_args()
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    updated = render(readme)
    if args.check:
        if updated != readme:
            print("README.md results section is out of date: run python benchmarks/readme_tables.py",
                  file=sys.stderr)
            sys.exit(1)
        return
    readme_path.write_text(updated, encoding="utf-8")


if __name__ == "__main__":
    main()
