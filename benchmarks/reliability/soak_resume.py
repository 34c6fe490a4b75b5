"""Kill/resume soak: SIGKILL ``deepke-llm extract --resume`` at random points of a long run against
a flaky local server, then check that the final output holds every id exactly once.

A rule "model" on 127.0.0.1 answers IEPile NER prompts (capitalised words as persons) and, at
random, 429 (with Retry-After) or 500 instead. The script starts the real CLI as a subprocess
over ``--docs`` documents, kills it with SIGKILL after a random delay, restarts it with
``--resume``, ``--kills`` times, then lets it finish (rerunning while it exits 3, which means some
documents failed after all their retries and are left for ``--resume``). After every kill it checks
that ``OUT.partial`` holds only whole lines except perhaps a torn last one and no id twice; at the
end, that ``OUT`` holds every input id exactly once, every line is a JSON record whose entities
match the rule, and no ``.partial`` is left. Results: ``benchmarks/results/reliability/soak_resume.{json,md}``.

Example::

    python benchmarks/reliability/soak_resume.py                  # 2,000 documents, 25 kills
    python benchmarks/reliability/soak_resume.py --docs 500 --kills 5 --seed 1
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deepke_llm.io import atomic_path  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "reliability"


def rule_answer(user: str) -> str:
    """Every capitalised word is a person; the other schema items are empty."""
    query = json.loads(user)
    items = [i if isinstance(i, str) else i.get("event_type") for i in query["schema"]]
    answer: dict[str, list[str]] = {item: [] for item in items}
    answer[items[0]] = sorted(set(re.findall(r"\b[A-Z][a-z]+\b", query["input"])))
    return json.dumps(answer)


class _Server(ThreadingHTTPServer):
    # The stdlib's listen backlog of 5 drops connections when 8+ requests arrive at once; the
    # kernel retries them a second later, so runs timed the server's backlog, not the client.
    request_queue_size = 128
    daemon_threads = True


@contextmanager
def flaky_server(seed: int, p429: float, p500: float, delay: float):
    """A threaded OpenAI-style server on 127.0.0.1 that fails at random; yields (url, counts)."""
    rng = random.Random(seed)
    counts: Counter = Counter()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                roll = rng.random()
            time.sleep(delay)
            if roll < p429:
                self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.05"})
                outcome = "429"
            elif roll < p429 + p500:
                self._send(500, {"error": {"message": "flaky"}})
                outcome = "500"
            else:
                text = rule_answer(body["messages"][-1]["content"])
                self._send(200, {"choices": [{"message": {"role": "assistant", "content": text}}],
                                 "usage": {"prompt_tokens": 50, "completion_tokens": 10}})
                outcome = "200"
            with lock:
                counts[outcome] += 1

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client was killed mid-request

    server = _Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", counts
    finally:
        server.shutdown()
        server.server_close()


def partial_state(path: Path) -> dict[str, Any]:
    """Whole lines, ids repeated, and whether the last line is torn."""
    if not path.exists():
        return {"lines": 0, "duplicates": 0, "torn_last": False, "bad_inner": 0}
    raw = path.read_bytes().split(b"\n")
    torn = raw[-1] != b""
    whole = raw[:-1]
    ids: Counter = Counter()
    bad = 0
    for line in whole:
        try:
            ids[json.loads(line)["id"]] += 1
        except (ValueError, KeyError):
            bad += 1
    return {"lines": len(whole), "duplicates": sum(c - 1 for c in ids.values() if c > 1),
            "torn_last": torn, "bad_inner": bad}


def soak(docs: int, kills: int, seed: int, p429: float, p500: float, delay: float,
         batch_size: int, work: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    inp, out = work / "docs.jsonl", work / "out.jsonl"
    partial = out.with_name(out.name + ".partial")
    with open(inp, "w", encoding="utf-8") as handle:
        for i in range(docs):
            handle.write(json.dumps({"id": f"doc-{i}", "text": f"Report {i}: Alice met Bob "
                                     f"in Paris on day {i % 31}."}) + "\n")
    command = [sys.executable, "-m", "deepke_llm.cli", "extract", "--task", "ner", "--schema",
               "conll03", "--api-model", "rule", "--input", str(inp), "--output", str(out),
               "--resume", "--batch-size", str(batch_size), "--no-progress"]
    kill_log: list[dict[str, Any]] = []
    started = time.perf_counter()
    with flaky_server(seed, p429, p500, delay) as (url, counts):
        command += ["--base-url", url]
        while len(kill_log) < kills:
            before = partial_state(partial)["lines"]
            process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            wait = rng.uniform(0.5, 4.0)
            try:
                process.wait(timeout=wait)
                finished_early = True
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                finished_early = False
            if finished_early:
                break  # the run completed before this kill: no more points to kill at
            state = partial_state(partial)
            kill_log.append({"after_s": round(wait, 2), "lines_before": before, **state})
        runs_to_finish, codes = 0, []
        while True:
            runs_to_finish += 1
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
            codes.append(result.returncode)
            if result.returncode != 3 or runs_to_finish >= 10:
                break
        served = dict(counts)
    final_ids: Counter = Counter()
    wrong = 0
    for line in out.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        final_ids[record["id"]] += 1
        names = {e["text"] for e in record["entities"]}
        expected = set(re.findall(r"\b[A-Z][a-z]+\b", record["text"]))
        if names != expected or any(record["text"][e["start"]:e["end"]] != e["text"]
                                    for e in record["entities"]):
            wrong += 1
    wanted = {f"doc-{i}" for i in range(docs)}
    return {
        "documents": docs, "kills": len(kill_log), "seed": seed, "batch_size": batch_size,
        "server": {"p429": p429, "p500": p500, "delay_s": delay, "responses": served},
        "final_exit_codes": codes,
        "final_ids": len(final_ids), "missing_ids": len(wanted - set(final_ids)),
        "extra_ids": len(set(final_ids) - wanted),
        "duplicated_ids": sum(1 for c in final_ids.values() if c > 1),
        "wrong_records": wrong, "partial_left": partial.exists(),
        "torn_lines_seen_at_kills": sum(k["torn_last"] for k in kill_log),
        "duplicates_seen_in_partial": sum(k["duplicates"] for k in kill_log),
        "bad_inner_lines_seen": sum(k["bad_inner"] for k in kill_log),
        "kill_points": kill_log,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }


def write(result: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with atomic_path(RESULTS / "soak_resume.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    ok = (result["missing_ids"] == result["extra_ids"] == result["duplicated_ids"] ==
          result["wrong_records"] == 0 and not result["partial_left"])
    served = result["server"]["responses"]
    md = [
        "# Kill/resume soak (`benchmarks/reliability/soak_resume.py`)",
        "",
        f"`deepke-llm extract --resume` over {result['documents']:,} documents against a local "
        f"server on 127.0.0.1 that answers 429 ({result['server']['p429']:.0%}) or 500 "
        f"({result['server']['p500']:.0%}) at random, killed with SIGKILL "
        f"{result['kills']} times at random points, then run to completion.",
        "",
        "| check | result |",
        "|---|---|",
        f"| ids in the final output | {result['final_ids']:,} of {result['documents']:,} |",
        f"| missing / extra / duplicated ids | {result['missing_ids']} / {result['extra_ids']} / "
        f"{result['duplicated_ids']} |",
        f"| records that do not match the rule or their offsets | {result['wrong_records']} |",
        f"| `.partial` left behind | {result['partial_left']} |",
        f"| kills that left a torn last line (dropped by `--resume`) | "
        f"{result['torn_lines_seen_at_kills']} |",
        f"| duplicate ids or broken inner lines seen in `.partial` after kills | "
        f"{result['duplicates_seen_in_partial']} / {result['bad_inner_lines_seen']} |",
        f"| exit codes of the runs to completion | {result['final_exit_codes']} |",
        f"| server responses 200 / 429 / 500 | {served.get('200', 0):,} / {served.get('429', 0):,}"
        f" / {served.get('500', 0):,} |",
        f"| answered prompts redone per kill (work lost; batch size {result['batch_size']}) | "
        f"{(served.get('200', 0) - result['documents']) / max(result['kills'], 1):.1f} |",
        f"| wall time | {result['seconds']} s |",
        "",
        f"**{'Every id exactly once, no torn lines in the output.' if ok else 'FAILED'}** "
        f"Machine: {result['machine']}.",
        "",
    ]
    with atomic_path(RESULTS / "soak_resume.md") as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--p429", type=float, default=0.1)
    parser.add_argument("--p500", type=float, default=0.1)
    parser.add_argument("--delay", type=float, default=0.01, help="Server latency per request (s).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-write", action="store_true", help="Print, do not write results.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = soak(args.docs, args.kills, args.seed, args.p429, args.p500, args.delay,
                      args.batch_size, Path(work))
    print(json.dumps({k: v for k, v in result.items() if k != "kill_points"}, indent=1))
    if not args.no_write:
        write(result)


if __name__ == "__main__":
    main()
