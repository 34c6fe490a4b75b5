"""The ``deepke-llm serve`` command itself (a real process): it binds 127.0.0.1, asks for the API
key, warns before exposing itself, refuses a busy port before loading a model; and the server on
a real local model (the tiny LLaMA) answers what the Extractor answers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from fake_server import rule_server
from serve_helpers import post_extract, rule_model, running_app

REPO = Path(__file__).resolve().parents[1]


def serve_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepke_llm.cli", "serve", *args], cwd=REPO,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})


def test_the_command_serves_on_loopback_with_an_api_key_and_stops_on_ctrl_c():
    with rule_server(answer=rule_model) as (url, _):
        process = serve_process("--base-url", url, "--api-model", "m", "--port", "0",
                                "--auth-key-env", "DEEPKE_SERVE_TEST_KEY",
                                env={"DEEPKE_SERVE_TEST_KEY": "k3y"})
        try:
            port = None
            for line in process.stderr:  # uvicorn's start-up lines
                found = re.search(r"running on http://127\.0\.0\.1:(\d+)", line)
                if found:
                    port = int(found.group(1))
                    break
            assert port, "the server did not start"
            base = f"http://127.0.0.1:{port}"
            body = {"task": "ner", "schema": "conll03", "text": "Alice met Bob."}
            refused = post_extract(base, body)
            answered = post_extract(base, body, headers={"Authorization": "Bearer k3y"})
            version = httpx.get(f"{base}/version").json()
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(30)
    assert refused.status_code == 401
    (doc,) = answered.json()["documents"]
    assert [(e["text"], e["start"], e["end"]) for e in doc["entities"]] == [
        ("Alice", 0, 5), ("Bob", 10, 13)]
    assert version["model"] == url and version["engine"] == "openai"
    assert code == 0


def test_a_public_host_is_warned_about_and_a_busy_port_refused_before_any_model_loads():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "deepke_llm.cli", "serve", "--host",
                                 "0.0.0.0", "--port", str(port), "--model", "/no/such/model"],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "warning: binding 0.0.0.0 exposes the server beyond this machine; consider "
        "--auth-key-env",
        f"error: cannot listen on 0.0.0.0:{port}: Address already in use; choose another --port"]


def test_an_unset_api_key_variable_is_a_usage_error():
    env = {k: v for k, v in os.environ.items() if k != "DEEPKE_UNSET_KEY"}
    result = subprocess.run([sys.executable, "-m", "deepke_llm.cli", "serve", "--auth-key-env",
                             "DEEPKE_UNSET_KEY"], cwd=REPO, capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 2
    assert result.stderr == "error: --auth-key-env DEEPKE_UNSET_KEY: that environment variable " \
                            "is empty or unset\n"


def test_a_local_model_serves_what_the_extractor_gives(tiny_llama_dir, one_torch_thread):
    from deepke_llm.backends.base import GenerationConfig
    from deepke_llm.backends.hf import HFBackend
    from deepke_llm.extractor import Extractor
    from deepke_llm.records import Document

    backend = HFBackend(tiny_llama_dir)
    text = "Japan beat Syria 2-1 in Beirut."
    with running_app(backend) as (base, app):
        response = post_extract(base, {"task": "ner", "schema": "conll03", "text": text,
                                       "max_new_tokens": 8})
        calls = app.state.backend.calls
    assert response.status_code == 200
    (served,) = response.json()["documents"]
    direct = Extractor(backend, "conll03", "ner",
                       generation=GenerationConfig(max_new_tokens=8, batch_size=32))
    assert served == direct.extract(Document(id="text-1", text=text)).to_dict()
    assert served["text"] == text and len(served["raw_output"]) == 1 and calls == 1


BLOCK_FASTAPI = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "fastapi":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from deepke_llm.cli import main
main(["serve", "--port", "0"])
"""


def test_without_the_serve_extra_the_command_names_the_pip_install():
    result = subprocess.run([sys.executable, "-c", BLOCK_FASTAPI], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == "error: serve needs the 'fastapi' package: pip install " \
                            "'deepke-llm[serve]'\n"
