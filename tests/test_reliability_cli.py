"""Reliability of file runs (issue: no run is poisoned, no failure looks like success, nothing
is overwritten): bad characters, failed requests, dead servers, same-file outputs, unwritable
folders, locks, interrupts, progress, secrets and exit codes — through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_server import rule_server

from deepke_llm.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def cli(*args: str, timeout: float = 120, **kwargs):
    """The real console entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "deepke_llm.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, **kwargs)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def write_docs(path: Path, texts: list[str], raw: dict[int, str] | None = None) -> Path:
    rows = [json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)]
    for index, line in (raw or {}).items():
        rows[index] = line
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


EXTRACT = ("extract", "--task", "ner", "--schema", "conll03", "--api-model", "m", "--no-progress")


def test_a_lone_surrogate_in_an_input_line_is_an_input_error_and_resume_goes_on(tmp_path):
    bad = '{"id": "d1", "text": "Bad \\ud800 Text"}'
    inp = write_docs(tmp_path / "in.jsonl", ["Alice came.", "x", "Carol went."], {1: bad})
    out = tmp_path / "out.jsonl"
    with rule_server() as (url, _):
        first = run(*EXTRACT, "--base-url", url, "--input", str(inp), "--output", str(out))
        again = run(*EXTRACT, "--base-url", url, "--input", str(inp), "--output", str(out),
                    "--resume")
    assert first.exit_code == 1 and again.exit_code == 1
    assert f"{inp}:2: a string holds a lone surrogate" in first.stderr
    assert [d["id"] for d in lines(out)] == ["d0", "d2"]
    assert "skipped (already done): 2" in again.stderr


def test_a_lone_surrogate_in_a_model_answer_becomes_u_fffd(tmp_path):
    inp = write_docs(tmp_path / "in.jsonl", ["Alice met Bob."])
    out = tmp_path / "out.jsonl"
    with rule_server(answer=lambda user: '{"person": ["Alice", "B\ud800b"]}') as (url, _):
        result = run(*EXTRACT, "--base-url", url, "--input", str(inp), "--output", str(out))
    assert result.exit_code == 0, result.output
    (doc,) = lines(out)
    assert doc["raw_output"] == ['{"person": ["Alice", "B\ufffdb"]}']
    assert [(e["text"], e["start"]) for e in doc["entities"]] == [("Alice", 0), ("B\ufffdb", None)]
    assert out.read_bytes().decode("utf-8")  # valid UTF-8 all through


def test_parse_skips_a_line_with_a_lone_surrogate_and_keeps_the_rest(tmp_path):
    rows = [json.dumps({"id": "1", "text": "Alice left.", "output": '{"person": ["Alice"]}'}),
            '{"id": "2", "text": "Bob.", "output": "{\\"person\\": [\\"B\\ud800\\"]}"}',
            json.dumps({"id": "3", "text": "Carol left.", "output": '{"person": ["Carol"]}'})]
    inp = tmp_path / "raw.jsonl"
    inp.write_text("\n".join(rows) + "\n")
    out = tmp_path / "records.jsonl"
    result = run("parse", "--task", "ner", "--schema", "conll03", "--input", str(inp),
                 "--output", str(out))
    assert result.exit_code == 1 and f"{inp}:2" in result.stderr
    assert [d["id"] for d in lines(out)] == ["1", "3"]


def test_failed_documents_are_not_written_exit_3_and_resume_redoes_them(tmp_path):
    texts = [f"Doc {i} from Paris." for i in range(12)]
    inp = write_docs(tmp_path / "in.jsonl", texts)
    out = tmp_path / "out.jsonl"
    with rule_server(fail=lambda user: 500 if "Doc 5 " in user else None) as (url, server):
        first = run(*EXTRACT, "--base-url", url, "--input", str(inp), "--output", str(out))
        sent = [json.loads(r["messages"][-1]["content"])["input"] for r in server.requests]
    assert first.exit_code == 3, first.output
    assert "failed: document 'd5' not done" in first.stderr and "HTTP 500" in first.stderr
    assert "failed (backend, not written): 1" in first.stderr
    assert "rerun with --resume" in first.stderr
    assert not out.exists(), "an output missing a document must not look complete"
    partial = out.with_name("out.jsonl.partial")
    assert sorted(d["id"] for d in lines(partial)) == sorted(f"d{i}" for i in range(12) if i != 5)
    # halving a failed batch never resends what succeeded: one request per good document
    assert all(sent.count(t) == 1 for t in texts if t != texts[5])
    with rule_server() as (url, server):
        second = run(*EXTRACT, "--base-url", url, "--input", str(inp), "--output", str(out),
                     "--resume")
        assert len(server.requests) == 1
    assert second.exit_code == 0, second.output
    assert sorted(d["id"] for d in lines(out)) == sorted(f"d{i}" for i in range(12))


def test_a_dead_server_stops_the_run_with_exit_3(tmp_path):
    inp = write_docs(tmp_path / "in.jsonl", [f"Doc {i} from Paris." for i in range(40)])
    out = tmp_path / "out.jsonl"
    result = run(*EXTRACT, "--base-url", f"http://127.0.0.1:{closed_port()}/v1",
                 "--input", str(inp), "--output", str(out))
    assert result.exit_code == 3
    assert "server unavailable" in result.stderr and "ConnectError" in result.stderr
    assert "rerun with --resume" in result.stderr
    assert not out.exists() and out.with_name("out.jsonl.partial").read_text() == ""


def test_a_server_refusing_everything_stops_the_run_with_its_message(tmp_path):
    inp = write_docs(tmp_path / "in.jsonl", [f"Doc {i} from Paris." for i in range(60)])
    with rule_server(fail=lambda user: 404) as (url, server):
        result = run(*EXTRACT, "--base-url", url, "--input", str(inp),
                     "--output", str(tmp_path / "out.jsonl"))
        requests = len(server.requests)
    assert result.exit_code == 3 and "HTTP 404: scripted failure 404" in result.stderr
    assert requests < 40, "the breaker stops the run instead of trying every document"


def test_credentials_in_the_base_url_never_reach_stderr(tmp_path):
    inp = write_docs(tmp_path / "in.jsonl", ["Alice came."])
    with rule_server(fail=lambda user: 400) as (url, _):
        refused = run(*EXTRACT, "--base-url", url.replace("http://", "http://me:hunter2@"),
                      "--input", str(inp), "--output", str(tmp_path / "a.jsonl"))
    dead = run(*EXTRACT, "--base-url", f"http://me:hunter2@127.0.0.1:{closed_port()}/v1",
               "--input", str(inp), "--output", str(tmp_path / "b.jsonl"))
    assert refused.exit_code == 3 and dead.exit_code == 3
    for result in (refused, dead):
        assert "hunter2" not in result.stderr and "me:" not in result.stderr
        assert "127.0.0.1" in result.stderr


def _same_file_commands(tmp_path: Path, target: str) -> dict[str, list[str]]:
    inp = str(tmp_path / "in.jsonl")
    return {
        "extract": [*EXTRACT, "--base-url", "http://127.0.0.1:9/v1", "--input", inp,
                    "--output", target],
        "parse": ["parse", "--task", "ner", "--schema", "conll03", "--input", inp,
                  "--output", target],
        "convert": ["convert", "--format", "conll03", "--input", inp, "--output", target],
        "instruct": ["instruct", "--schema", "conll03", "--input", inp, "--output", target],
        "kg2instruction": ["kg2instruction", "build", "--kb-entities", inp, "--kb-triples", inp,
                           "--relations", inp, "--corpus", inp, "--output", target],
    }


@pytest.mark.parametrize("command", ["extract", "parse", "convert", "instruct", "kg2instruction"])
@pytest.mark.parametrize("how", ["same", "symlink", "dot"])
def test_output_equal_to_input_is_refused_and_the_input_untouched(tmp_path, command, how):
    inp = write_docs(tmp_path / "in.jsonl", ["Alice came.", "Bob went."])
    before = inp.read_bytes()
    target = {"same": str(inp), "dot": str(tmp_path / "." / "in.jsonl")}.get(how)
    if how == "symlink":
        (tmp_path / "link.jsonl").symlink_to(inp)
        target = str(tmp_path / "link.jsonl")
    result = run(*_same_file_commands(tmp_path, target)[command])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: output ") and "is the input" in line
    assert inp.read_bytes() == before


def _without_root_file_powers() -> None:
    """Root writes anywhere: drop CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH from the capability
    bounding set before exec, so the permission bits of a folder bind the command too."""
    if os.geteuid() != 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.parametrize("command", ["extract", "parse", "kg2instruction"])
def test_a_read_only_output_folder_is_one_line_not_a_traceback(tmp_path, command):
    write_docs(tmp_path / "in.jsonl", ["Alice came."])
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o555)
    args = _same_file_commands(tmp_path, str(locked / "out.jsonl"))[command]
    result = cli(*args, preexec_fn=_without_root_file_powers)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot write or read {locked}" in result.stderr and "Permission denied" in result.stderr


def test_a_schema_file_nested_100k_deep_is_one_line(tmp_path):
    schema = tmp_path / "deep.json"
    schema.write_text("[" * 100_000)
    result = run("extract", "--task", "ner", "--schema", str(schema), "--base-url",
                 "http://127.0.0.1:9/v1", "--api-model", "m", "Alice came.")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {schema}: JSON nested too deeply to be a schema"


# Holds the command at its `import torch` (start-up) until it is interrupted, so the signal
# always lands there.
HOLD_TORCH_IMPORT = """
import sys, time, importlib.abc
class Hold(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch":
            print("importing torch", file=sys.stderr, flush=True)
            time.sleep(60)
        return None
sys.meta_path.insert(0, Hold())
from deepke_llm.cli import main
main()
"""


def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_TORCH_IMPORT, "extract", "--task", "ner", "--schema",
         "conll03", "--model", str(tmp_path / "missing-model"), "Alice came."],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
        # a shell starts background jobs (CI runners, `cmd &`) with SIGINT ignored, and a
        # Python started that way never sees Ctrl-C: give the command a terminal's default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stderr is not None
    assert process.stderr.readline().strip() == "importing torch"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted!" not in stderr


def test_a_second_run_on_the_same_output_refuses_while_the_first_holds_it(tmp_path):
    from deepke_llm.io import output_lock

    inp = write_docs(tmp_path / "in.jsonl", ["Alice came."])
    out = tmp_path / "out.jsonl"
    lock = output_lock(out)  # the first run
    try:
        busy = cli(*EXTRACT, "--base-url", "http://127.0.0.1:9/v1", "--input", str(inp),
                   "--output", str(out))
    finally:
        lock.release()
    assert busy.returncode == 2
    assert f"another run is writing {out}" in busy.stderr and "Traceback" not in busy.stderr
    assert not out.exists() and not out.with_name("out.jsonl.partial").exists()


def test_progress_shows_a_total_and_moves_per_document(tmp_path):
    inp = write_docs(tmp_path / "in.jsonl", [f"Doc {i} from Paris." for i in range(11)],
                     {3: "{not json"})
    with rule_server() as (url, _):
        result = run("extract", "--task", "ner", "--schema", "conll03", "--api-model", "m",
                     "--base-url", url, "--batch-size", "2", "--progress", "--input", str(inp),
                     "--output", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 1
    counts = [int(x.split("/")[0].split()[-1]) for x in result.stderr.replace("\r", "\n").split("\n")
              if "/11 [" in x]
    assert counts[0] == 0 and counts[-1] == 11, result.stderr
    assert len(set(counts)) >= 4, "the bar moves document by document, not in big jumps"


def test_kg2instruction_build_exits_1_when_every_kb_line_is_unreadable(tmp_path):
    data = REPO / "tests" / "data" / "kg2instruction" / "en"
    broken = tmp_path / "entities.jsonl"
    broken.write_text("{not json\n[1, 2]\n")
    result = run("kg2instruction", "build", "--kb-entities", str(broken),
                 "--kb-triples", str(data / "triples.tsv"), "--relations",
                 str(data / "relations.json"), "--corpus", str(data / "corpus.jsonl"),
                 "--output", str(tmp_path / "docs.jsonl"))
    assert result.exit_code == 1, result.output
    assert f"error: {broken}:1" in result.stderr


def test_the_readme_documents_the_exit_codes():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for line in ("0 ok", "1 input errors", "2 usage", "3 backend failures", "130 interrupted"):
        assert line in readme
