"""``deepke-llm serve`` under load: documents/s with one sequential client vs many concurrent
clients (dynamic batching), latency percentiles, and a soak run mixing valid and malformed
requests.

The server is the real command (``python -m deepke_llm.cli serve``) on 127.0.0.1 with the default
model (``--model`` omitted: base + IE adapter; engine auto = llama.cpp, which decodes the rows of
a batch in one KV cache). Requests are CoNLL-2003 test sentences (read with the project's
``conll03`` reader), one sentence per ``POST /v1/extract``; both phases send the same sentences.
The soak phase runs ``--soak-clients`` threads for ``--soak-seconds``, about a third of their
requests malformed (bad JSON, unknown schema or task, oversize text, too many texts, wrong types,
unknown routes), and counts answers by status: a 5xx other than a deliberate 503, a refused
connection or a server that died is a failure. The server's RSS is sampled throughout.

With ``--screenshot PATH`` the web page is opened in Debian's Chromium (Playwright), the English
example of ``--screenshot-task`` is run on the same server, and the page is saved (the README's
``docs/images/web-page.png``).

Results: ``benchmarks/results/perf/serve_load.{json,md}``. Example::

    python benchmarks/perf/serve_load.py --docs 96 --clients 32 --soak-seconds 300 \\
        --soak-clients 50 --screenshot docs/images/web-page.png
    python benchmarks/perf/serve_load.py --docs 16 --soak-seconds 0 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from _results import machine, write_results  # noqa: E402  (benchmarks/perf/_results.py)

from deepke_llm.datasets import read_dataset  # noqa: E402
from deepke_llm.evaluation.scoring import score_documents  # noqa: E402
from deepke_llm.io import sha256_file  # noqa: E402
from deepke_llm.records import Document  # noqa: E402

DATA_FILE = Path("conll2003") / "eng.testb"


# ---- the server ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    """The real ``serve`` command on a free port; returns once /healthz answers."""
    port = free_port()
    command = [sys.executable, "-m", "deepke_llm.cli", "serve", "--port", str(port),
               "--batch-size", str(args.batch_size), "--max-batch", str(args.batch_size),
               "--timeout", str(args.timeout), "--log-level", "warning"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=log.open("w"))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the server did not answer /healthz within 600 s; see {log}")


def rss_mib(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


# ---- throughput ------------------------------------------------------------------------------

def extract_one(client: httpx.Client, base: str, text: str, max_new_tokens: int
                ) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.post(f"{base}/v1/extract", json={
        "task": "ner", "schema": "conll03", "text": text, "max_new_tokens": max_new_tokens})
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return seconds, response.json()["documents"][0]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def phase(base: str, gold: list[Document], clients: int, max_new_tokens: int) -> dict[str, Any]:
    """All of ``gold`` sent by ``clients`` threads, one sentence per request."""
    texts = [d.text for d in gold]

    def work(indices: list[int]) -> list[tuple[int, float, dict]]:
        with httpx.Client(timeout=600) as client:
            return [(i, *extract_one(client, base, texts[i], max_new_tokens)) for i in indices]

    shares = [list(range(k, len(texts), clients)) for k in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = [row for rows in pool.map(work, shares) for row in rows]
    seconds = time.perf_counter() - started
    done.sort(key=lambda row: row[0])
    latencies = [row[1] for row in done]
    predictions = [Document.from_dict({**row[2], "id": gold[row[0]].id}) for row in done]
    strict = score_documents("ner", gold, predictions, ["strict"]).level("strict")
    return {"clients": clients, "documents": len(done), "seconds": round(seconds, 2),
            "docs_per_second": round(len(done) / seconds, 3),
            "latency_p50_s": round(statistics.median(latencies), 3),
            "latency_p99_s": round(percentile(latencies, 0.99), 3),
            "strict_f1": round(100 * strict.overall.f1, 2),
            "records": [row[2]["entities"] for row in done]}


# ---- soak ------------------------------------------------------------------------------------

def malformed(rng: random.Random) -> tuple[str, str, Any]:
    """(method, path, body) of one bad request; bodies given as str are sent raw."""
    ner = {"task": "ner", "schema": "conll03"}
    choices = [
        ("POST", "/v1/extract", "{not json"),
        ("POST", "/v1/extract", {**ner, "schema": "no-such-schema", "text": "x"}),
        ("POST", "/v1/extract", {"task": "xx", "schema": "conll03", "text": "x"}),
        ("POST", "/v1/extract", {**ner, "text": "x" * 30_000}),
        ("POST", "/v1/extract", {**ner, "texts": ["x"] * 100}),
        ("POST", "/v1/extract", {**ner, "texts": [1, 2]}),
        ("POST", "/v1/extract", {**ner, "text": "x", "max_new_tokens": -5}),
        ("POST", "/v1/extract", {**ner, "schema": {"name": "s"}, "text": "x"}),
        ("POST", "/v1/extract", b"\xff\xfe garbage"),
        ("POST", "/v1/extract", "[]"),
        ("GET", "/v1/extract", None),
        ("GET", "/v1/jobs/0123456789abcdef", None),
        ("GET", "/v1/schemas/../../etc/passwd", None),
        ("GET", "/no/such/route", None),
    ]
    return rng.choice(choices)


def soak(base: str, gold: list[Document], pid: int, seconds: float, clients: int,
         max_new_tokens: int) -> dict[str, Any]:
    statuses: Counter = Counter()
    failures: Counter = Counter()
    rss: list[float] = [rss_mib(pid)]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=600) as client:
            while time.monotonic() < stop:
                if rng.random() < 0.35:
                    kind, (method, path, body) = "bad", malformed(rng)
                else:
                    kind, method, path = "valid", "POST", "/v1/extract"
                    body = {"task": "ner", "schema": "conll03", "text": rng.choice(gold).text,
                            "max_new_tokens": max_new_tokens}
                try:
                    if isinstance(body, (str, bytes)):
                        response = client.request(method, f"{base}{path}", content=body,
                                                  headers={"Content-Type": "application/json"})
                    else:
                        response = client.request(method, f"{base}{path}", json=body)
                    key = f"{kind} {response.status_code}"
                except httpx.TransportError as exc:
                    key = f"{kind} {type(exc).__name__}"
                with lock:
                    statuses[key] += 1
                    if not key.split()[1].isdigit() or \
                            (key.split()[1].startswith("5") and key.split()[1] != "503"):
                        failures[key] += 1

    def sample() -> None:
        while time.monotonic() < stop:
            time.sleep(min(10, max(0.1, stop - time.monotonic())))
            with lock:
                rss.append(rss_mib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    sampler.join()
    rss.append(rss_mib(pid))
    return {"seconds": seconds, "clients": clients, "requests": sum(statuses.values()),
            "by_status": dict(sorted(statuses.items())), "server_errors": sum(failures.values()),
            "server_error_kinds": dict(failures), "rss_mib_start": rss[0],
            "rss_mib_end": rss[-1], "rss_mib_max": max(rss), "rss_samples_mib": rss}


# ---- screenshot ------------------------------------------------------------------------------

def screenshot(base: str, path: Path, task: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 760})
        page.goto(base)
        page.wait_for_selector("#schema option", state="attached")
        page.select_option("#task", task)
        page.wait_for_timeout(500)
        page.click("#example-en")
        page.wait_for_timeout(500)
        page.click("#run")
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('done')"
                               " || document.querySelector('#status').classList.contains('error')",
                               timeout=300_000)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        browser.close()
    print(f"screenshot: {path}", file=sys.stderr)


# ---- report ----------------------------------------------------------------------------------

def write(result: dict[str, Any]) -> None:
    seq, conc = result["sequential"], result["concurrent"]
    lines = ["# `deepke-llm serve` under load (`benchmarks/perf/serve_load.py`)", "",
             f"Default model (engine {result['engine']}), {result['documents']} CoNLL-2003 test "
             f"sentences ({result['data']['file']}), NER with conll03, one sentence per "
             f"request, max {result['max_new_tokens']} new tokens; server --batch-size "
             f"{result['batch_size']} --max-batch {result['batch_size']} --timeout "
             f"{result['timeout']:g}, {result['threads']} threads; one run.", "",
             "| clients | docs/s | p50 latency s | p99 latency s | strict F1 |",
             "|---:|---:|---:|---:|---:|"]
    for row in (seq, conc):
        lines.append(f"| {row['clients']} | {row['docs_per_second']} | {row['latency_p50_s']} | "
                     f"{row['latency_p99_s']} | {row['strict_f1']:.2f} |")
    lines += ["", f"Throughput with {conc['clients']} concurrent clients: "
              f"**{result['speedup']}x** the sequential client's (goal >= 3x). Same entities "
              f"in both phases for {result['same_records']}/{result['documents']} sentences."]
    if result.get("soak"):
        s = result["soak"]
        lines += ["", f"Soak: {s['seconds']:g} s, {s['clients']} clients, {s['requests']} "
                  f"requests (~35% malformed): server errors (5xx other than 503, refused "
                  f"connections) **{s['server_errors']}**, server alive at the end: "
                  f"{result['server_alive']}; RSS {s['rss_mib_start']} MiB at start, "
                  f"{s['rss_mib_end']} MiB at the end (max {s['rss_mib_max']}).", "",
                  "| answer | count |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in s["by_status"].items()]
    load = result["load_average_1min"]
    lines += ["", f"Machine: {result['machine']}; 1-minute load average {load[0]} before, "
              f"{load[1]} after (other work shares these CPUs); measured {result['date']}."]
    write_results("serve_load", result, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=96)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=900,
                        help="The server's per-request timeout: 32 queued sentences on two busy "
                             "cores take minutes, and a 504 would count as a server error.")
    parser.add_argument("--soak-seconds", type=float, default=300)
    parser.add_argument("--soak-clients", type=int, default=50)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--screenshot-task", choices=["ner", "re", "ee"], default="re")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("DEEPKE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    data = args.data_dir / DATA_FILE
    gold = list(read_dataset("conll03", data, schema="conll03", split="test"))[:args.docs]
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "deepke-serve-load.log"
    load_before = os.getloadavg()[0]  # the machine may be shared: its load is reported
    process, base = start_server(args, log)
    try:
        rss_loaded = rss_mib(process.pid)
        version = httpx.get(f"{base}/version").json()
        phase(base, gold[:4], 4, args.max_new_tokens)  # warm-up: first calls pay set-up costs
        sequential = phase(base, gold, 1, args.max_new_tokens)
        concurrent = phase(base, gold, args.clients, args.max_new_tokens)
        soaked = soak(base, gold, process.pid, args.soak_seconds, args.soak_clients,
                      args.max_new_tokens) if args.soak_seconds > 0 else None
        alive = process.poll() is None and \
            httpx.get(f"{base}/healthz", timeout=30).status_code == 200
        if args.screenshot:
            screenshot(base, args.screenshot, args.screenshot_task)
    finally:
        process.terminate()
        process.wait(60)
    same = sum(a == b for a, b in zip(sequential.pop("records"), concurrent.pop("records"),
                                      strict=True))
    result = {"documents": len(gold), "engine": version["engine"], "model": version["model"],
              "batch_size": args.batch_size, "threads": args.threads, "timeout": args.timeout,
              "max_new_tokens": args.max_new_tokens,
              "data": {"benchmark": "conll03", "split": "test", "file": str(DATA_FILE),
                       "sha256": sha256_file(data)},
              "sequential": sequential, "concurrent": concurrent,
              "speedup": round(concurrent["docs_per_second"] / sequential["docs_per_second"], 2),
              "same_records": same, "rss_mib_loaded": rss_loaded, "soak": soaked,
              "server_alive": alive, "load_average_1min": [round(load_before, 2),
                                                            round(os.getloadavg()[0], 2)],
              "machine": machine(),
              "date": time.strftime("%Y-%m-%d")}
    if not args.no_write:
        write(result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
