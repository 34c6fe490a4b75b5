"""One huge document through ``deepke-llm extract``: peak memory and time against the text size.

A rule "model" on 127.0.0.1 (see ``soak_resume.py``) answers every window. The real CLI runs as
a subprocess over a JSONL file holding one document of ``--mb`` megabytes (news-like sentences)
and a few small documents behind it; the script records wall time and the subprocess's peak RSS
for each size, and checks that every name of the text was found at its offsets. ``--repo`` runs
another checkout of the project (e.g. an older commit in a ``git worktree``) the same way, so a
before/after comparison is made in one run. Results: ``benchmarks/results/reliability/huge_document.{json,md}``.

Example::

    python benchmarks/reliability/huge_document.py                   # 5 and 50 MB
    git worktree add /tmp/old 1e81f88 && \\
        python benchmarks/reliability/huge_document.py --compare /tmp/old
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from soak_resume import flaky_server  # noqa: E402

from deepke_llm.io import atomic_path  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "reliability"
SENTENCE = "Report {i}: Alice met Bob in Paris while the market in the city stayed quiet. "
# a name every 12 sentences: what long prose usually looks like
SPARSE = ("the market in the city stayed quiet while traders waited for news from abroad. " * 11
          + "Alice met Bob in Paris. ")


def make_input(path: Path, megabytes: float, kind: str) -> int:
    """One document of about ``megabytes`` MB plus three small ones; returns its length."""
    pieces, size, i = [], 0, 0
    while size < megabytes * 1_000_000:
        piece = SENTENCE.format(i=i) if kind == "dense" else SPARSE
        pieces.append(piece)
        size += len(piece)
        i += 1
    text = "".join(pieces)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "huge", "text": text}) + "\n")
        for k in range(3):
            handle.write(json.dumps({"id": f"small-{k}", "text": f"Carol met Dan {k}."}) + "\n")
    return len(text)


def run_once(repo: Path, megabytes: float, kind: str, url: str, work: Path,
             timeout: float) -> dict[str, Any]:
    inp, out = work / f"in-{megabytes}.jsonl", work / f"out-{megabytes}.jsonl"
    length = make_input(inp, megabytes, kind)
    command = [sys.executable, "-c",
               # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of this
               # (large) process would report this process's peak as its own
               "import re, sys; from deepke_llm.cli import main\n"
               "try:\n    main()\nfinally:\n"
               "    status = open('/proc/self/status').read()\n"
               "    print('PEAK_KB', re.search(r'VmHWM:\\s*(\\d+)', status).group(1),"
               " file=sys.stderr)",
               "extract", "--task", "ner", "--schema", "conll03", "--base-url", url,
               "--api-model", "rule", "--input", str(inp), "--output", str(out),
               "--batch-size", "16", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    started = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                                timeout=timeout)
        seconds, code, stderr = time.perf_counter() - started, result.returncode, result.stderr
    except subprocess.TimeoutExpired as exc:
        seconds, code = timeout, None
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    peak = [int(x.split()[1]) for x in stderr.splitlines() if x.startswith("PEAK_KB")]
    found = expected = 0
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record["id"] != "huge":
                continue
            expected = record["text"].count("Alice")
            found = sum(1 for e in record["entities"] if e["text"] == "Alice"
                        and record["text"][e["start"]:e["end"]] == "Alice")
    for path in (inp, out):
        path.unlink(missing_ok=True)
    return {"megabytes": megabytes, "kind": kind, "characters": length, "exit_code": code,
            "seconds": round(seconds, 1), "peak_rss_mb": round(peak[0] / 1024, 1) if peak else None,
            "alice_found": found, "alice_in_text": expected,
            "timed_out": code is None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[5.0, 50.0])
    parser.add_argument("--kinds", nargs="+", default=["dense", "sparse"],
                        help="dense: 4 names per sentence; sparse: one sentence with names in 12.")
    parser.add_argument("--compare", type=Path, help="Another checkout to run the same way.")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    repos = {"current": REPO} | ({"compare": args.compare} if args.compare else {})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in repos}
    with tempfile.TemporaryDirectory() as work, flaky_server(0, 0.0, 0.0, 0.0) as (url, _):
        for name, repo in repos.items():
            for kind in args.kinds:
                for size in args.sizes:
                    runs[name].append(run_once(repo, size, kind, url, Path(work), args.timeout))
                print(name, json.dumps(runs[name][-1]), flush=True)
    result = {"runs": runs, "compare_commit": _commit(args.compare) if args.compare else None,
              "commit": _commit(REPO), "machine": f"{platform.machine()}, {platform.python_version()}",
              "baseline_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if not args.no_write:
        write(result)


def _commit(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


def write(result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_path(RESULTS / "huge_document.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md = ["# One huge document (`benchmarks/reliability/huge_document.py`)", "",
          "`deepke-llm extract` over one document of N MB (plus three small ones behind it) "
          "against a rule server on 127.0.0.1; peak RSS of the extract process.", "",
          "| code | document | names | exit | wall s | peak RSS MB | 'Alice' grounded / in text |",
          "|---|---:|---|---:|---:|---:|---|"]
    for name, runs in result["runs"].items():
        label = result["commit"] if name == "current" else result["compare_commit"]
        for run in runs:
            exit_code = "timeout" if run["timed_out"] else run["exit_code"]
            md.append(f"| {name} ({label}) | {run['megabytes']:g} MB | {run['kind']} | {exit_code} | "
                      f"{run['seconds']} | {run['peak_rss_mb']} | "
                      f"{run['alice_found']:,} / {run['alice_in_text']:,} |")
    md += ["", f"Machine: {result['machine']}.", ""]
    with atomic_path(RESULTS / "huge_document.md") as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")


if __name__ == "__main__":
    main()
