"""A real uvicorn server on 127.0.0.1 (a free port, in a thread) around ``create_app``, and a rule
"model" that answers NER and RE prompts predictably (through tests/fake_server.py)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from deepke_llm.serve.app import create_app
from deepke_llm.serve.requests import ServeSettings


@contextmanager
def running_app(backend: Any, **settings: Any) -> Iterator[tuple[str, Any]]:
    """Yield (base URL, app) of a live server on 127.0.0.1 serving ``create_app(backend)``."""
    import uvicorn

    app = create_app(backend, ServeSettings(**settings))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)


def capitalised(text: str) -> list[str]:
    """Runs of capitalised words ('Barack Obama', 'Paris'), in text order."""
    return re.findall(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)*\b", text)


def rule_model(user: str) -> str:
    """An IEPile answer: NER gives every capitalised run to the first entity type (the first run
    to 'person', the others to 'location' when the schema has both); RE links the first two runs
    by 'live in' (conll04) or by a custom schema's first relation type."""
    try:
        query = json.loads(user)
    except json.JSONDecodeError:
        return "I cannot parse that."
    items = [i if isinstance(i, str) else i.get("event_type") for i in query["schema"]]
    answer: dict[str, Any] = {item: [] for item in items}
    names = capitalised(query["input"])
    if not items or not names:
        return json.dumps(answer)
    if "relation" in query["instruction"] or "关系" in query["instruction"]:
        # conll04's 'live in' (the second schema chunk) or a custom schema's first type
        relation = "live in" if "live in" in items else None if "work for" in items else items[0]
        if relation and len(names) >= 2:
            answer[relation] = [{"subject": names[0], "object": names[1]}]
        return json.dumps(answer, ensure_ascii=False)
    if "person" in answer and "location" in answer:
        answer["person"] = names[:1]
        answer["location"] = names[1:]
    else:
        answer[items[0]] = names
    return json.dumps(answer, ensure_ascii=False)


def post_extract(base: str, body: dict, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{base}/v1/extract", json=body, timeout=60, **kwargs)
