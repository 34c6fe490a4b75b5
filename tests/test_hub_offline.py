"""Hub ids without a reachable hub: a cached copy loads offline, anything else fails in seconds.

Every test runs the real command in a subprocess against a hub on 127.0.0.1 (a small fake that
serves the tiny LLaMA the way huggingface.co serves files, a closed port, or a server that never
answers) with its own HF_HOME; the subprocess timeout is the bound (no real network is touched).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ID = "some-org/tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Without the fix a closed port cost ~50 s and a silent server longer (10 download retries).
FAIL_WITHIN_S = 30
LOAD_WITHIN_S = 45


def make_hub_handler(files: Path) -> type[http.server.BaseHTTPRequestHandler]:
    """Serves ``files`` as REPO_ID at revision main (the resolve/ URLs huggingface_hub uses)."""
    prefix = f"/{REPO_ID}/resolve/"

    class Hub(http.server.BaseHTTPRequestHandler):
        def _answer(self, with_body: bool) -> None:
            name = self.path[len(prefix):].partition("/")[2] if self.path.startswith(prefix) else ""
            path = files / name
            if name and path.is_file():
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            else:
                data = b""
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if with_body:
                self.wfile.write(data)

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(False)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(True)

        def log_message(self, *args: object) -> None:
            pass

    return Hub


@pytest.fixture()
def fake_hub(tiny_llama_dir) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_hub_handler(tiny_llama_dir))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def extract(model: str, hf_home: Path, endpoint: str, timeout: float,
            **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE"}}
    environ.update(HF_HOME=str(hf_home), HF_ENDPOINT=endpoint, **env)
    return subprocess.run(["deepke-llm", "extract", "--task", "ner", "--schema", "conll03",
                           "--model", model, "--max-new-tokens", "4", "--no-progress",
                           "Alice went to Paris."], env=environ, capture_output=True, text=True,
                          timeout=timeout)


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unreachable_hub_fails_fast_with_one_line(tmp_path):
    endpoint = closed_port()
    result = extract("some-org/some-model", tmp_path / "hf", endpoint, FAIL_WITHIN_S)
    assert result.returncode == 1, result.stderr
    line = error_line(result)
    assert "--model some-org/some-model is not a local directory" in line
    assert f"hub {endpoint} is unreachable" in line and "pass --model DIR" in line
    assert "Traceback" not in result.stderr and "Retrying" not in result.stderr


def test_a_bare_name_against_a_hub_that_never_answers_fails_fast(tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = extract("oneke", tmp_path / "hf", endpoint, FAIL_WITHIN_S)
    assert result.returncode == 1, result.stderr
    line = error_line(result)
    assert "--model oneke is not a local directory" in line and "unreachable (no answer" in line


def test_offline_mode_names_the_cache_for_an_id_it_does_not_hold(tmp_path):
    result = extract("some-org/some-model", tmp_path / "hf", closed_port(), FAIL_WITHIN_S,
                     HF_HUB_OFFLINE="1")
    assert result.returncode == 1, result.stderr
    line = error_line(result)
    assert "some-org/some-model is not a local directory and HF_HUB_OFFLINE is set" in line
    assert str(tmp_path / "hf") in line


@pytest.mark.slow
def test_reachable_hub_downloads_and_the_cached_copy_then_loads_offline(fake_hub, tmp_path):
    hf_home = tmp_path / "hf"
    online = extract(REPO_ID, hf_home, fake_hub, LOAD_WITHIN_S * 2)
    assert online.returncode == 0, online.stderr
    assert '"text": "Alice went to Paris."' in online.stdout
    # the hub is gone: the copy huggingface_hub cached loads, without retrying the hub
    offline = extract(REPO_ID, hf_home, closed_port(), LOAD_WITHIN_S)
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout == online.stdout  # greedy decoding, same weights
    assert "Retrying" not in offline.stderr
    honoured = extract(REPO_ID, hf_home, closed_port(), LOAD_WITHIN_S, HF_HUB_OFFLINE="1")
    assert honoured.returncode == 0, honoured.stderr
