"""Generation through any OpenAI-compatible HTTP server (vLLM, SGLang, llama.cpp, Ollama, OpenAI).

Requests run on a thread pool over one pooled ``httpx.Client``: at most
``min(config.batch_size, max_concurrency)`` in flight. Each request is retried on its own
(``tenacity``): 429, 5xx, timeouts and connection errors with exponential backoff plus jitter (a
server's ``Retry-After`` wins); other 4xx fail at once with the URL, status and the server's
message. A call reports which prompts failed (:class:`BackendError` with per-prompt outputs), so
nothing that succeeded is sent again. A :class:`CircuitBreaker` stops everything within seconds
when the server is gone (nothing listening, or every request failing) instead of letting each
remaining prompt spend its retries. Credentials in the URL (``http://user:pw@host``) are sent as
HTTP basic auth and never appear in messages.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from deepke_llm.backends.base import (
    BackendError,
    BackendUnavailable,
    GenerationConfig,
    GenerationStats,
)
from deepke_llm.prompts.chat import Prompt, render_prompt

__all__ = ["BackendError", "CircuitBreaker", "OpenAIBackend", "redact_url"]

ENDPOINTS = {"chat": "/chat/completions", "completions": "/completions"}
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0


def redact_url(url: str) -> str:
    """``url`` without user name and password (for messages, logs and reports)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class _Retryable(Exception):
    """One attempt failed in a way worth retrying (429, 5xx, timeout, connection error)."""

    def __init__(self, problem: str, retry_after: float | None = None,
                 unreachable: bool = False) -> None:
        super().__init__(problem)
        self.retry_after = retry_after
        self.unreachable = unreachable


class CircuitBreaker:
    """Opens when the server looks gone, so that a run stops in seconds, not after every
    remaining prompt spent its retries.

    It opens after ``unreachable_after`` consecutive failed attempts that never reached a server
    (connection refused, unknown host, connect timeout), or after ``failures_after`` consecutive
    failed attempts of any kind (5xx, timeouts, refusals such as an unknown model name). Any
    answer below 400 closes it; 429 (the server is alive and asks us to slow down) counts neither
    way. Once open it stays open for ``cooldown`` seconds, then lets one attempt through.
    """

    def __init__(self, unreachable_after: int = 3, failures_after: int = 20,
                 cooldown: float = 30.0) -> None:
        self.unreachable_after = unreachable_after
        self.failures_after = failures_after
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._failures = 0
        self._unreachable = 0
        self._opened_at: float | None = None
        self.last_problem = ""

    def success(self) -> None:
        with self._lock:
            self._failures = self._unreachable = 0
            self._opened_at = None

    def failure(self, problem: str, unreachable: bool = False) -> None:
        with self._lock:
            self._failures += 1
            self._unreachable = self._unreachable + 1 if unreachable else 0
            self.last_problem = problem
            if self._unreachable >= self.unreachable_after or \
                    self._failures >= self.failures_after:
                self._opened_at = time.monotonic()

    @property
    def is_open(self) -> bool:
        with self._lock:
            if self._opened_at is None:
                return False
            if time.monotonic() - self._opened_at >= self.cooldown:
                self._opened_at = None  # half-open: the next attempt decides
                self._failures = max(self._failures - 1, 0)
                self._unreachable = max(self._unreachable - 1, 0)
                return False
            return True

    def describe(self) -> str:
        with self._lock:
            count = max(self._failures, self._unreachable)
        return f"{count} attempts in a row failed; last: {self.last_problem}"


class OpenAIBackend:
    """``generate`` over the chat-completions or completions endpoint of an OpenAI-style server."""

    engine = "openai"
    supports_constraints = True  # as response_format: structure and names (see request_body)

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", endpoint: str = "chat",
                 max_concurrency: int = 8, timeout: float = 60.0, max_retries: int = 5,
                 backoff: float = 0.5, chat_template: str | None = None,
                 context_length: int | None = None,
                 breaker: CircuitBreaker | None = None) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint '{endpoint}': use chat or completions")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url, auth = _normalise_base_url(base_url)
        self.url = self.base_url + ENDPOINTS[endpoint]
        self.model = model
        self.endpoint = endpoint
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.chat_template = chat_template
        self.context_length = context_length
        """The served model's window when the caller knows it (servers do not report it)."""
        self.breaker = breaker or CircuitBreaker()
        self.stats = GenerationStats()
        self._stats_lock = threading.Lock()
        key = api_key or os.environ.get(api_key_env or "") or None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers["Content-Type"] = "application/json"
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout), auth=auth,
            limits=httpx.Limits(max_connections=max_concurrency,
                                max_keepalive_connections=max_concurrency))

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_body(self, prompt: Prompt, config: GenerationConfig,
                     constraint: Any = None) -> dict[str, Any]:
        """The JSON body sent for ``prompt`` (``config.extra`` merged last, e.g. response_format).

        A ``constraint`` with a JSON Schema becomes ``response_format`` (chat endpoint), which
        vLLM, SGLang, llama.cpp's server and Ollama enforce while decoding.
        """
        body: dict[str, Any] = {"model": self.model}
        if self.endpoint == "chat":
            body["messages"] = prompt.messages()
        else:
            body["prompt"] = render_prompt(prompt, self.chat_template or "plain")
        body.update(temperature=config.temperature, top_p=config.top_p,
                    max_tokens=config.max_new_tokens)
        if config.stop:
            body["stop"] = list(config.stop)
        if config.seed is not None:
            body["seed"] = config.seed
        schema = getattr(constraint, "json_schema", None)
        if schema is not None and self.endpoint == "chat":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": schema}}
        body.update(config.extra)
        return body

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig,
                 constraints: Sequence[Any] | None = None) -> list[str]:
        """One output per prompt, in order (``constraints``: see :meth:`request_body`).

        Raises :class:`BackendError` carrying the outputs that succeeded when some requests
        failed, and :class:`BackendUnavailable` as soon as the circuit breaker opens.
        """
        started = time.perf_counter()
        constraints = constraints if constraints is not None else [None] * len(prompts)
        bodies = [_encode_body(self.request_body(p, config, c))
                  for p, c in zip(prompts, constraints, strict=True)]
        workers = max(1, min(config.batch_size, self.max_concurrency, len(bodies)))
        outputs: list[str | None] = [None] * len(bodies)
        failures: list[str | None] = [None] * len(bodies)
        stop = threading.Event()  # wakes retry sleeps when the call ends early
        if bodies:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai")
            try:
                futures = [pool.submit(self._complete, body, stop) for body in bodies]
                waiting = set(futures)
                while waiting:
                    done, waiting = wait(waiting, return_when=FIRST_EXCEPTION)
                    for future in done:
                        if isinstance(future.exception(), BackendUnavailable):
                            raise future.exception()  # type: ignore[misc]
                for i, future in enumerate(futures):
                    problem = future.exception()
                    if problem is None:
                        outputs[i] = future.result()
                    elif isinstance(problem, BackendError):
                        failures[i] = str(problem)
                    else:
                        raise problem
            finally:
                # On a failure or Ctrl-C, queued requests are dropped instead of waited for.
                stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
        with self._stats_lock:
            self.stats.prompts += len(bodies)
            self.stats.seconds += time.perf_counter() - started
        failed = [f for f in failures if f is not None]
        if failed:
            raise BackendError(f"{len(failed)} of {len(bodies)} requests failed; first: {failed[0]}",
                               outputs=outputs, failures=failures)
        return [o or "" for o in outputs]

    def _complete(self, body: bytes, stop: threading.Event) -> str:
        data = self._post_with_retries(body, stop)
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.endpoint == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"POST {self.url}: response has no choices[0]."
                               f"{'message.content' if self.endpoint == 'chat' else 'text'}: "
                               f"{json.dumps(data)[:200]}") from None
        usage = data.get("usage") or {}
        with self._stats_lock:
            self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.stats.generated_tokens += int(usage.get("completion_tokens") or 0)
        # content is null when a server returns only tool calls or refusals
        return text if isinstance(text, str) else ""

    def _post_with_retries(self, body: bytes, stop: threading.Event) -> dict[str, Any]:
        retrying = Retrying(stop=stop_after_attempt(self.max_retries + 1), wait=self._wait,
                            retry=retry_if_exception_type(_Retryable), sleep=stop.wait,
                            reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    if stop.is_set() and attempt.retry_state.attempt_number > 1:
                        raise BackendError(f"POST {self.url}: cancelled")
                    return self._post_once(body)
        except _Retryable as exc:
            raise BackendError(f"POST {self.url} failed after {self.max_retries + 1} attempts; "
                               f"last error: {exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover - Retrying returns or raises

    def _post_once(self, body: bytes) -> dict[str, Any]:
        if self.breaker.is_open:
            raise BackendUnavailable(f"POST {self.url}: server unavailable "
                                     f"({self.breaker.describe()})")
        try:
            response = self._client.post(self.url, content=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.UnsupportedProtocol) as exc:
            problem = _transport_problem(exc)
            self.breaker.failure(problem, unreachable=True)
            raise _Retryable(problem, unreachable=True) from None
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            problem = _transport_problem(exc)
            self.breaker.failure(problem)
            raise _Retryable(problem) from None
        if response.status_code < 400:
            self.breaker.success()
            try:
                return response.json()
            except ValueError:
                raise BackendError(f"POST {self.url} returned non-JSON: "
                                   f"{response.text[:200]!r}") from None
        message = _server_message(response)
        problem = f"HTTP {response.status_code}: {message}"
        if response.status_code == 429:
            raise _Retryable(problem, _retry_after_seconds(response.headers.get("retry-after")))
        self.breaker.failure(problem)
        if response.status_code < 500:
            hint = ""
            if b'"response_format"' in body:
                hint = " (if the server cannot take response_format json_schema: --no-constrained)"
            raise BackendError(f"POST {self.url} failed with {problem}{hint}")
        raise _Retryable(problem, _retry_after_seconds(response.headers.get("retry-after")))

    def _wait(self, state: RetryCallState) -> float:
        problem = state.outcome.exception() if state.outcome is not None else None
        if isinstance(problem, _Retryable) and problem.retry_after is not None:
            return problem.retry_after
        # Full jitter keeps many workers that failed together from retrying in lockstep.
        base = min(MAX_BACKOFF_S, self.backoff * 2 ** (state.attempt_number - 1))
        return base * (0.5 + random.random() / 2)


def _encode_body(body: dict[str, Any]) -> bytes:
    """JSON bytes of a request; a text with a lone surrogate is sent \\u-escaped, not crashed on."""
    try:
        return json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(body, ensure_ascii=True).encode("ascii")


def _transport_problem(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


def _normalise_base_url(base_url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without credentials, ending in /v1 when it had no path; basic-auth pair or None)."""
    url = base_url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base URL '{redact_url(base_url)}' is not an http(s) URL: pass e.g. "
                         "--base-url http://127.0.0.1:8000/v1")
    auth = None
    if parts.username is not None or parts.password is not None:
        auth = (unquote(parts.username or ""), unquote(parts.password or ""))
        url = redact_url(url)
    # Servers mount the OpenAI API under /v1; a bare host means that.
    return (url if parts.path else url + "/v1"), auth


def _server_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return " ".join(text.split())[:300] or response.reason_phrase
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    if error is None and isinstance(data, dict):
        error = data.get("message") or data.get("detail")
    text = error if isinstance(error, str) else json.dumps(data)
    return " ".join(text.split())[:300]


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:  # the HTTP-date form
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER_S))
