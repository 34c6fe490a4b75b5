"""One sentence end to end, as a user runs it: ``deepke-llm extract`` in a fresh process with the
default model already cached, from process start to the JSON printed; and the model load alone.

Each run is a new process (imports, model load, one prompt, exit); the first run is a warm-up
(the operating system's file cache) and is reported apart. Results:
``benchmarks/results/perf/cold_start.{json,md}``. Example::

    python benchmarks/perf/cold_start.py --runs 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from _results import machine, write_results  # noqa: E402  (benchmarks/perf/_results.py)

SENTENCE = "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria."
LOAD = ("import time, sys; t = time.perf_counter(); "
        "from deepke_llm.backends.registry import load_backend; "
        "b = load_backend(backend='llamacpp', threads={threads}); "
        "print(time.perf_counter() - t)")


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    cli = shutil.which("deepke-llm") or sys.exit("deepke-llm is not on PATH: pip install -e .")
    extract = [cli, "extract", "--task", "ner", "--schema", "conll03", "--threads",
               str(args.threads), SENTENCE]
    load = [sys.executable, "-c", LOAD.format(threads=args.threads)]
    first, output = timed(extract)  # warm-up: the file cache
    answer = json.loads(output.splitlines()[0])
    ends = [timed(extract)[0] for _ in range(args.runs)]
    loads = [float(timed(load)[1].strip().splitlines()[-1]) for _ in range(args.runs)]
    result: dict[str, Any] = {
        "sentence": SENTENCE, "threads": args.threads, "runs": args.runs,
        "first_run_seconds": round(first, 2),
        "end_to_end_seconds": {"median": round(statistics.median(ends), 2),
                               "max": round(max(ends), 2)},
        "load_seconds": {"median": round(statistics.median(loads), 2),
                         "max": round(max(loads), 2)},
        "entities": [e["text"] for e in answer.get("entities", [])],
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result))
    if not args.no_write:
        write(result)


def write(result: dict[str, Any]) -> None:
    ends, loads = result["end_to_end_seconds"], result["load_seconds"]
    lines = [f"# One sentence end to end on the default model ({result['threads']} threads, "
             f"{result['machine']})", "",
             "Written by `python benchmarks/perf/cold_start.py`: `deepke-llm extract` in a new "
             "process per run, the model cached; goals: under 3 s end to end, load under 2 s.", "",
             "| measure | median s | max s |", "|---|---|---|",
             f"| process start to JSON printed | {ends['median']} | {ends['max']} |",
             f"| model load (llama.cpp, base + adapter) | {loads['median']} | {loads['max']} |",
             "", f"- runs: {result['runs']} each, after one warm-up run of "
             f"{result['first_run_seconds']} s", f"- entities: {', '.join(result['entities'])}"]
    write_results("cold_start", result, lines)


if __name__ == "__main__":
    main()
