"""OpenAIBackend against a real HTTP server on 127.0.0.1: bodies, order, concurrency, retries."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
from fake_server import LocalServer

from deepke_llm.backends.base import GenerationConfig
from deepke_llm.backends.openai import (
    BackendError,
    CircuitBreaker,
    OpenAIBackend,
    _retry_after_seconds,
    redact_url,
)
from deepke_llm.prompts.chat import Prompt, render_prompt


class FakeOpenAIServer:
    """An OpenAI-style server answering ``echo:<user text>``; ``plans`` script failures per text.

    A plan is a list of actions used one per request for that text: "500", "503", "429"
    (with Retry-After), "400", or "sleep:SECONDS" (answer normally after sleeping).
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.plans: dict[str, list[str]] = {}
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.retry_after = "0.2"
        self.lock = threading.Lock()
        self.httpd = LocalServer(("127.0.0.1", 0), self._handler())
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def count(self, text: str) -> int:
        return sum(1 for r in self.requests if r["key"] == text)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
                with server.lock:
                    server.requests.append({"path": self.path, "body": body, "key": key,
                                            "headers": dict(self.headers)})
                    plan = server.plans.get(key, [])
                    action = plan.pop(0) if plan else "ok"
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    self.counted = True
                try:
                    time.sleep(server.delay)
                    self._answer(action, key, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    self._leave()

            def _leave(self) -> None:
                with server.lock:
                    if getattr(self, "counted", False):
                        server.in_flight -= 1
                    self.counted = False

            def _answer(self, action: str, key: str, body: dict) -> None:
                if action.startswith("sleep:"):
                    time.sleep(float(action.split(":")[1]))
                    action = "ok"
                if action == "ok":
                    text = f"echo:{key}"
                    choice = ({"message": {"role": "assistant", "content": text}}
                              if self.path.endswith("/chat/completions") else {"text": text})
                    self._send(200, {"choices": [choice],
                                     "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
                elif action == "429":
                    self._send(429, {"error": {"message": "rate limited"}},
                               {"Retry-After": server.retry_after})
                elif action == "400":
                    self._send(400, {"error": {"message": "maximum context length is 8 tokens"}})
                else:
                    self._send(int(action), {"error": {"message": "server trouble"}})

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                # out of the count before answering: a client that has its answer may send its
                # next request before this thread gets back to the count (seen as 4 in flight)
                self._leave()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    fake = FakeOpenAIServer()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def no_ambient_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


PROMPTS = [Prompt(user=f"text {i}", system="You extract entities." if i % 2 else None)
           for i in range(10)]


def test_chat_requests_carry_messages_settings_and_extra_and_outputs_keep_order(server):
    backend = OpenAIBackend(server.base_url, "oneke", backoff=0.01)
    config = GenerationConfig(max_new_tokens=64, stop=("\n\n",), seed=7,
                              extra={"response_format": {"type": "json_object"}})
    outputs = backend.generate(PROMPTS, config)
    assert outputs == [f"echo:text {i}" for i in range(10)]
    by_key = {r["key"]: r for r in server.requests}
    request = by_key["text 1"]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"] == {
        "model": "oneke", "messages": [{"role": "system", "content": "You extract entities."},
                                       {"role": "user", "content": "text 1"}],
        "temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "stop": ["\n\n"], "seed": 7,
        "response_format": {"type": "json_object"}}
    assert by_key["text 0"]["body"]["messages"] == [{"role": "user", "content": "text 0"}]
    assert "authorization" not in {k.lower() for k in request["headers"]}
    assert (backend.stats.prompts, backend.stats.prompt_tokens,
            backend.stats.generated_tokens) == (10, 50, 20)


def test_completions_endpoint_sends_the_rendered_prompt(server):
    prompt = Prompt(user="Extract persons.", input="Tim Cook visited Berlin.")
    alpaca = OpenAIBackend(server.base_url, "knowlm", endpoint="completions",
                           chat_template="alpaca")
    plain = OpenAIBackend(server.base_url.removesuffix("/v1"), "knowlm", endpoint="completions")
    assert alpaca.generate([prompt], GenerationConfig()) == [
        "echo:" + render_prompt(prompt, "alpaca")]
    assert plain.generate([prompt], GenerationConfig()) == [
        "echo:Extract persons.\nTim Cook visited Berlin."]
    assert [r["path"] for r in server.requests] == ["/v1/completions"] * 2
    assert "### Response:" in server.requests[0]["body"]["prompt"]
    assert "seed" not in server.requests[0]["body"] and "stop" not in server.requests[0]["body"]


def test_concurrency_is_bounded_by_batch_size_and_max_concurrency(server):
    server.delay = 0.1
    backend = OpenAIBackend(server.base_url, "m", max_concurrency=8)
    prompts = [Prompt(user=f"p{i}") for i in range(12)]
    assert backend.generate(prompts, GenerationConfig(batch_size=3)) == [
        f"echo:p{i}" for i in range(12)]
    assert 2 <= server.max_in_flight <= 3
    server.max_in_flight = 0
    capped = OpenAIBackend(server.base_url, "m", max_concurrency=2)
    capped.generate(prompts, GenerationConfig(batch_size=32))
    assert server.max_in_flight == 2


def test_500_and_429_are_retried_and_retry_after_is_honoured(server):
    server.plans = {"p0": ["500"], "p1": ["429"], "p2": ["503", "502"]}
    backend = OpenAIBackend(server.base_url, "m", backoff=0.01)
    started = time.perf_counter()
    outputs = backend.generate([Prompt(user=f"p{i}") for i in range(4)], GenerationConfig())
    assert outputs == ["echo:p0", "echo:p1", "echo:p2", "echo:p3"]
    assert [server.count(f"p{i}") for i in range(4)] == [2, 2, 3, 1]
    assert time.perf_counter() - started >= 0.2  # waited for Retry-After: 0.2


def test_a_timed_out_request_is_retried(server):
    server.plans = {"slow": ["sleep:1.5"]}
    backend = OpenAIBackend(server.base_url, "m", timeout=0.4, backoff=0.01)
    assert backend.generate([Prompt(user="slow"), Prompt(user="fast")],
                            GenerationConfig()) == ["echo:slow", "echo:fast"]
    assert server.count("slow") == 2


def test_a_400_fails_at_once_with_url_status_and_server_message(server):
    server.plans = {"too long": ["400"]}
    backend = OpenAIBackend(server.base_url, "m", backoff=0.01)
    with pytest.raises(BackendError) as info:
        backend.generate([Prompt(user="ok"), Prompt(user="too long")], GenerationConfig())
    assert info.value.outputs == ["echo:ok", None]  # what succeeded is handed back
    assert info.value.failures == [None, f"POST {server.base_url}/chat/completions failed with "
                                         "HTTP 400: maximum context length is 8 tokens"]
    assert str(info.value).startswith("1 of 2 requests failed; first: POST")
    assert server.count("too long") == 1 and server.count("ok") == 1


def test_a_server_answering_500_to_everything_trips_the_breaker(server):
    from deepke_llm.backends.base import BackendUnavailable

    server.plans = {f"p{i}": ["500"] * 100 for i in range(40)}
    backend = OpenAIBackend(server.base_url, "m", backoff=0.01, max_retries=5)
    with pytest.raises(BackendUnavailable, match=r"server unavailable \(2\d attempts in a row "
                                                 r"failed; last: HTTP 500: server trouble\)"):
        backend.generate([Prompt(user=f"p{i}") for i in range(40)], GenerationConfig())
    # without the breaker: 40 prompts x 6 attempts = 240 requests
    assert len(server.requests) <= 20 + 8


def test_nothing_listening_trips_the_breaker_after_three_refused_connections():
    import socket

    from deepke_llm.backends.base import BackendUnavailable

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    breaker = CircuitBreaker()
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=5, backoff=0.01,
                            breaker=breaker, max_concurrency=1)
    with pytest.raises(BackendUnavailable, match="3 attempts in a row failed; last: ConnectError"):
        backend.generate([Prompt(user=f"x{i}") for i in range(50)], GenerationConfig())
    assert breaker.is_open


def test_429_does_not_trip_the_breaker_and_a_success_closes_it():
    breaker = CircuitBreaker(unreachable_after=3, failures_after=3, cooldown=60)
    breaker.failure("HTTP 500")
    breaker.failure("HTTP 500")
    breaker.success()
    breaker.failure("HTTP 500")
    breaker.failure("HTTP 500")
    assert not breaker.is_open
    breaker.failure("HTTP 502")
    assert breaker.is_open
    half_open = CircuitBreaker(failures_after=1, cooldown=0)
    half_open.failure("HTTP 500")
    assert not half_open.is_open  # the cooldown is over: one attempt may go through


def test_credentials_in_the_url_go_as_basic_auth_and_never_into_messages(server):
    import base64

    url = server.base_url.replace("http://", "http://alice:s3cr%40t@")
    server.plans = {"bad": ["400"]}
    backend = OpenAIBackend(url, "m")
    assert "s3cr" not in backend.url and "alice" not in repr(backend)
    with pytest.raises(BackendError) as info:
        backend.generate([Prompt(user="good"), Prompt(user="bad")], GenerationConfig())
    assert "s3cr" not in str(info.value) and "alice" not in str(info.value)
    headers = [{k.lower(): v for k, v in r["headers"].items()} for r in server.requests]
    assert headers[0]["authorization"] == "Basic " + base64.b64encode(b"alice:s3cr@t").decode()
    assert redact_url("https://u:p@host:8443/v1") == "https://host:8443/v1"


def test_a_prompt_with_a_lone_surrogate_is_sent_not_crashed_on(server):
    backend = OpenAIBackend(server.base_url, "m")
    (output,) = backend.generate([Prompt(user="bad \ud800 text")], GenerationConfig())
    assert output == "echo:bad \ud800 text"  # sent \u-escaped; the server decoded it


def test_retries_give_up_after_max_retries_with_the_last_error(server):
    server.plans = {"down": ["503"] * 10}
    backend = OpenAIBackend(server.base_url, "m", max_retries=2, backoff=0.01)
    with pytest.raises(BackendError, match=r"failed after 3 attempts; last error: HTTP 503: "
                                           r"server trouble$"):
        backend.generate([Prompt(user="down")], GenerationConfig())
    assert server.count("down") == 3


def test_connection_errors_are_retried_then_reported():
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0.01)
    with pytest.raises(BackendError, match=r"failed after 2 attempts; last error: ConnectError"):
        backend.generate([Prompt(user="x")], GenerationConfig())


def test_api_key_comes_from_the_named_env_var(server, monkeypatch):
    monkeypatch.setenv("DEEPKE_TEST_KEY", "sk-test-123")
    backend = OpenAIBackend(server.base_url, "m", api_key_env="DEEPKE_TEST_KEY")
    backend.generate([Prompt(user="a")], GenerationConfig())
    explicit = OpenAIBackend(server.base_url, "m", api_key="sk-explicit")
    explicit.generate([Prompt(user="b")], GenerationConfig())
    headers = [{k.lower(): v for k, v in r["headers"].items()} for r in server.requests]
    assert headers[0]["authorization"] == "Bearer sk-test-123"
    assert headers[1]["authorization"] == "Bearer sk-explicit"


def test_retry_after_accepts_seconds_and_http_dates():
    from email.utils import formatdate

    assert _retry_after_seconds("3") == 3.0
    assert _retry_after_seconds(None) is None and _retry_after_seconds("soon") is None
    assert 8 <= _retry_after_seconds(formatdate(time.time() + 10, usegmt=True)) <= 10
    with pytest.raises(ValueError, match="is not an http"):
        OpenAIBackend("127.0.0.1:8000", "m")
