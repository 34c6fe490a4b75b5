"""A real OpenAI-compatible HTTP server on 127.0.0.1 whose "model" is a rule: it answers IEPile
prompts by listing capitalised words (NER) so CLI runs can be tested end to end without a model."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def rule_answer(user: str) -> str:
    """Every capitalised word answers the first schema item (an entity or a trigger); others get []."""
    try:
        query = json.loads(user)
    except json.JSONDecodeError:
        return "I cannot parse that."
    items = [i if isinstance(i, str) else i.get("event_type") for i in query["schema"]]
    answer = {item: [] for item in items}
    if items:
        words = sorted(set(re.findall(r"\b[A-Z][a-z]+\b", query["input"])))
        is_event = isinstance(query["schema"][0], dict)
        answer[items[0]] = [{"trigger": w, "arguments": {}} for w in words] if is_event else words
    return json.dumps(answer, ensure_ascii=False)


def knowledge_answer(knowledge: dict[str, list], chat: Callable[[str], str] | None = None,
                     keep_absent: bool = False) -> Callable[[str], str]:
    """An ``answer`` that fills each queried IEPile schema item from ``knowledge`` (item name ->
    its answer list, e.g. ``{"person": ["Alice Smith"], "work for": [{"subject": ..., "object":
    ...}]}``), only with values whose mentions occur in the input (all with ``keep_absent``:
    a model naming what the text does not say); a message that is no IEPile
    query goes to ``chat`` (default: "echo: MESSAGE")."""

    def answer(user: str) -> str:
        try:
            query = json.loads(user)
            items = [i if isinstance(i, str) else i["event_type"] for i in query["schema"]]
            text = query["input"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return chat(user) if chat else f"echo: {user}"

        def occurs(value) -> bool:
            strings = [value] if isinstance(value, str) else [
                v for v in (value.get("subject"), value.get("object"), value.get("trigger"))
                if isinstance(v, str)]
            return keep_absent or all(s in text for s in strings)

        return json.dumps({item: [v for v in knowledge.get(item, []) if occurs(v)]
                           for item in items}, ensure_ascii=False)

    return answer


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)  # type: ignore[attr-defined]
        user = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
        status = self.server.fail(user)  # type: ignore[attr-defined]
        if status is not None:
            payload = json.dumps({"error": {"message": f"scripted failure {status}"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        text = self.server.answer(user)  # type: ignore[attr-defined]
        choice = {"index": 0, "finish_reason": "stop"}
        if "messages" in body:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [choice],
                              "usage": {"prompt_tokens": 10, "completion_tokens": 5}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class LocalServer(ThreadingHTTPServer):
    """A threaded server on 127.0.0.1 whose backlog takes a burst of concurrent requests."""

    # The stdlib's backlog of 5 drops connections when 8+ arrive at once and the kernel retries
    # them a second later: tests would wait on the backlog, not on the code under test.
    request_queue_size = 128
    daemon_threads = True


@contextmanager
def rule_server(fail: Callable[[str], int | None] = lambda user: None,
                answer: Callable[[str], str] = rule_answer):
    """Yield the base URL of a running rule server; shut it down afterwards.

    ``fail(user_message)`` may return an HTTP status to answer instead (scripted failures);
    ``answer`` turns the user message into the model's text.
    """
    server = LocalServer(("127.0.0.1", 0), _Handler)
    server.requests = []  # type: ignore[attr-defined]
    server.fail = fail  # type: ignore[attr-defined]
    server.answer = answer  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server
    finally:
        server.shutdown()
        server.server_close()
