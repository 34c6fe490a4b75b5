"""Generation through any OpenAI-compatible HTTP server (vLLM, SGLang, llama.cpp, Ollama, OpenAI).

Requests run on a thread pool over one pooled ``httpx.Client``: at most
``min(config.batch_size, max_concurrency)`` in flight. 429, 5xx, timeouts and connection errors
are retried with exponential backoff plus jitter (a server's ``Retry-After`` wins); other 4xx
fail at once with the URL, status and the server's message.
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
from urllib.parse import urlsplit

import httpx

from deepke_llm.backends.base import BackendError as _BaseBackendError
from deepke_llm.backends.base import GenerationConfig, GenerationStats
from deepke_llm.prompts.chat import Prompt, render_prompt

__all__ = ["BackendError", "OpenAIBackend"]

ENDPOINTS = {"chat": "/chat/completions", "completions": "/completions"}
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0


class BackendError(_BaseBackendError):
    """A request the server refused or kept failing (message is one line)."""


class OpenAIBackend:
    """``generate`` over the chat-completions or completions endpoint of an OpenAI-style server."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", endpoint: str = "chat",
                 max_concurrency: int = 8, timeout: float = 60.0, max_retries: int = 5,
                 backoff: float = 0.5, chat_template: str | None = None,
                 context_length: int | None = None) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint '{endpoint}': use chat or completions")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url = _normalise_base_url(base_url)
        self.url = self.base_url + ENDPOINTS[endpoint]
        self.model = model
        self.endpoint = endpoint
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.chat_template = chat_template
        self.context_length = context_length
        """The served model's window when the caller knows it (servers do not report it)."""
        self.stats = GenerationStats()
        self._stats_lock = threading.Lock()
        key = api_key or os.environ.get(api_key_env or "") or None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_concurrency,
                                max_keepalive_connections=max_concurrency))

    def close(self) -> None:
        """Close pooled connections."""
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_body(self, prompt: Prompt, config: GenerationConfig) -> dict[str, Any]:
        """The JSON body sent for ``prompt`` (``config.extra`` merged last, e.g. response_format)."""
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
        body.update(config.extra)
        return body

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
        """One output per prompt, in order; raises :class:`BackendError` if any request fails."""
        started = time.perf_counter()
        bodies = [self.request_body(p, config) for p in prompts]
        workers = max(1, min(config.batch_size, self.max_concurrency, len(bodies)))
        outputs: list[str] = [""] * len(bodies)
        if bodies:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai")
            try:
                futures = [pool.submit(self._complete, body) for body in bodies]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in futures if f in done and f.exception() is not None]
                if failed:
                    failed[0].result()  # re-raises the failure of the earliest failed prompt
                outputs = [future.result() for future in futures]
            finally:
                # On a failure or Ctrl-C, queued requests are dropped instead of waited for.
                pool.shutdown(wait=False, cancel_futures=True)
        with self._stats_lock:
            self.stats.prompts += len(bodies)
            self.stats.seconds += time.perf_counter() - started
        return outputs

    def _complete(self, body: dict[str, Any]) -> str:
        data = self._post_with_retries(body)
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
        return text or ""  # content is null when a server returns only tool calls or refusals

    def _post_with_retries(self, body: dict[str, Any]) -> dict[str, Any]:
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                response = self._client.post(self.url, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last_problem = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise BackendError(f"POST {self.url} returned non-JSON: "
                                           f"{response.text[:200]!r}") from None
                message = _server_message(response)
                if response.status_code != 429 and response.status_code < 500:
                    raise BackendError(f"POST {self.url} failed with HTTP "
                                       f"{response.status_code}: {message}")
                last_problem = f"HTTP {response.status_code}: {message}"
                retry_after = _retry_after_seconds(response.headers.get("retry-after"))
            if attempt < self.max_retries:
                time.sleep(retry_after if retry_after is not None else self._backoff_s(attempt))
        raise BackendError(f"POST {self.url} failed after {self.max_retries + 1} attempts; "
                           f"last error: {last_problem}")

    def _backoff_s(self, attempt: int) -> float:
        # Full jitter keeps many workers that failed together from retrying in lockstep.
        base = min(MAX_BACKOFF_S, self.backoff * 2 ** attempt)
        return base * (0.5 + random.random() / 2)


def _normalise_base_url(base_url: str) -> str:
    url = base_url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base URL '{base_url}' is not an http(s) URL: pass e.g. "
                         "--base-url http://127.0.0.1:8000/v1")
    # Servers mount the OpenAI API under /v1; a bare host means that.
    return url if parts.path else url + "/v1"


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
