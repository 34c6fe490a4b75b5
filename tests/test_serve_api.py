"""``deepke-llm serve``'s REST API on a real uvicorn server on 127.0.0.1, its backend a local
OpenAI-compatible rule server (tests/fake_server.py): records equal to ``extract``'s, bad requests
answered 4xx in one line, dynamic batching, a bounded queue, timeouts, auth, metrics, jobs."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from click.testing import CliRunner
from fake_server import rule_server
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import post_extract, rule_model, running_app

from deepke_llm.backends.base import BackendUnavailable
from deepke_llm.backends.registry import load_backend
from deepke_llm.cli import main
from deepke_llm.schema import load_schema

NER = {"task": "ner", "schema": "conll03"}


@pytest.fixture(scope="module")
def fake():
    with rule_server(answer=rule_model) as (url, server):
        yield url, server


@pytest.fixture(scope="module")
def served(fake):
    backend = load_backend(base_url=fake[0], api_model="m", max_concurrency=8)
    with running_app(backend) as (base, app):
        yield base, app


def cli_records(url: str, *args: str) -> list[dict]:
    result = CliRunner().invoke(main, ["extract", "--base-url", url, "--api-model", "m",
                                       "--no-progress", *args])
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def metric(base: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_one_and_many_texts_give_the_records_extract_writes(served, fake):
    base, _ = served
    texts = ["Barack Obama visited Paris.", "Angela Merkel met Emmanuel Macron in Berlin."]
    one = post_extract(base, {**NER, "text": texts[0]})
    many = post_extract(base, {**NER, "texts": texts})
    assert one.status_code == 200 and many.status_code == 200
    expected = cli_records(fake[0], "--task", "ner", "--schema", "conll03", *texts)
    assert many.json()["documents"] == expected
    assert one.json()["documents"] == expected[:1]
    doc = expected[1]
    assert [(e["type"], e["text"]) for e in doc["entities"]] == [
        ("person", "Angela Merkel"), ("location", "Emmanuel Macron"), ("location", "Berlin")]
    assert all(doc["text"][e["start"]:e["end"]] == e["text"] for e in doc["entities"])


def test_relations_and_an_inline_schema(served):
    base, _ = served
    re_doc = post_extract(base, {"task": "re", "schema": "conll04",
                                 "text": "Barack Obama lives in Paris."}).json()["documents"][0]
    (relation,) = re_doc["relations"]
    assert (relation["head"]["text"], relation["type"], relation["tail"]["text"]) == \
        ("Barack Obama", "live in", "Paris")
    assert (relation["tail"]["start"], relation["tail"]["end"]) == (22, 27)
    inline = {"name": "heroes", "language": "en", "entity_types": [{"name": "hero"}]}
    doc = post_extract(base, {"task": "ner", "schema": inline,
                              "text": "Wonder Woman saved Gotham."}).json()["documents"][0]
    assert [(e["type"], e["text"], e["start"]) for e in doc["entities"]] == [
        ("hero", "Wonder Woman", 0), ("hero", "Gotham", 19)]


BAD_REQUESTS = [
    ("{not json", 400, "body: not valid JSON"),
    ({"task": "ner", "schema": "nope", "text": "x"}, 422, "unknown schema 'nope'"),
    ({"task": "ner", "schema": "/etc/passwd", "text": "x"}, 422, "unknown schema '/etc/passwd'"),
    ({"task": "xx", "schema": "conll03", "text": "x"}, 422, "task: unknown task 'xx'"),
    ({"task": "re", "schema": "conll03", "text": "x"}, 422, "has no types for task 're'"),
    ({"task": "ner", "schema": {"name": "s", "language": "en"}, "text": "x"}, 422, "schema: "),
    ({**NER, "text": "x" * 20_001}, 413, "text: 20001 characters is over"),
    ({**NER, "texts": ["x"] * 65}, 413, "texts: 65 texts is over"),
    ({**NER, "texts": []}, 422, "texts: the list is empty"),
    ({**NER, "text": "a", "texts": ["b"]}, 422, "exactly one of 'text'"),
    ({**NER, "texts": ["ok", 3]}, 422, "texts.1: Input should be a valid string"),
    ({**NER, "text": "x", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ({**NER, "text": "x", "max_new_tokens": 100_000}, 422, "max_new_tokens: 100000 is over"),
    ({**NER, "text": "   "}, 422, "text: empty text"),
]


@pytest.mark.parametrize(("body", "status", "reason"), BAD_REQUESTS,
                         ids=[r for _, _, r in BAD_REQUESTS])
def test_a_bad_request_is_a_one_line_4xx_and_the_server_answers_after_it(served, body, status,
                                                                         reason):
    base, _ = served
    content = body if isinstance(body, str) else json.dumps(body)
    response = httpx.post(f"{base}/v1/extract", content=content,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()
    assert list(error) == ["error"] and "\n" not in error["error"]
    assert reason in error["error"]
    assert post_extract(base, {**NER, "text": "Alice went home."}).status_code == 200


def test_a_body_over_the_size_limit_is_413_before_it_is_read(served):
    base, _ = served
    response = httpx.post(f"{base}/v1/extract", content=b"x" * (5 << 20),
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "over this server's limit" in response.json()["error"]


def test_concurrent_requests_share_engine_calls_and_each_gets_its_own_records(fake):
    def slow(user: str) -> str:
        time.sleep(0.25)  # requests pile up while a batch runs
        return rule_model(user)

    names = ["Alice", "Bob", "Carol", "Dan", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy",
             "Karl", "Liam", "Mona", "Nils", "Olga", "Paul"]
    texts = [f"{name} met {other}." for name, other in zip(names, reversed(names), strict=True)]
    with rule_server(answer=slow) as (url, _):
        backend = load_backend(base_url=url, api_model="m", max_concurrency=32)
        with running_app(backend, max_batch=32, engine_batch=32) as (base, app):
            start = threading.Barrier(16)

            def ask(text: str) -> httpx.Response:
                start.wait()
                return post_extract(base, {**NER, "text": text})

            with ThreadPoolExecutor(16) as pool:
                responses = list(pool.map(ask, texts))
            calls = app.state.backend.calls
            batches = app.state.batcher.stats.batch_sizes
    assert [r.status_code for r in responses] == [200] * 16
    for text, response in zip(texts, responses, strict=True):
        (doc,) = response.json()["documents"]
        assert doc["text"] == text
        assert [e["text"] for e in doc["entities"]] == text.rstrip(".").split(" met ")
    assert calls < 16 and max(batches) > 1 and sum(batches) == 16


class _Gate:
    """A rule model that answers only once the test opens the gate."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def __call__(self, user: str) -> str:
        self.open.wait(30)
        return rule_model(user)


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_full_queue_answers_429_with_retry_after_and_a_slow_request_504(fake):
    gate = _Gate()
    with rule_server(answer=gate) as (url, _):
        backend = load_backend(base_url=url, api_model="m")
        with running_app(backend, max_queue=2, timeout_s=1.0) as (base, app):
            with ThreadPoolExecutor(2) as pool:
                first = [pool.submit(post_extract, base, {**NER, "text": f"Text {i} here."})
                         for i in range(2)]
                wait_for(lambda: app.state.batcher.pending == 2)
                full = post_extract(base, {**NER, "text": "One more."})
                results = [f.result() for f in first]  # past the 1 s timeout: 504
            gate.open.set()
            wait_for(lambda: app.state.batcher.pending == 0)
            after = post_extract(base, {**NER, "text": "Alice is back."})
            rejected = metric(base, "deepke_rejected_total")
    assert full.status_code == 429 and full.headers["Retry-After"] == "1"
    assert "2 documents are waiting" in full.json()["error"]
    assert [r.status_code for r in results] == [504, 504]
    assert "not answered within 1 s" in results[0].json()["error"]
    assert after.status_code == 200 and after.json()["documents"][0]["entities"]
    assert rejected == 1


def test_a_document_the_backend_fails_is_502_and_a_dead_backend_503():
    with rule_server(answer=rule_model,
                     fail=lambda user: 400 if "Poison" in user else None) as (url, _):
        backend = load_backend(base_url=url, api_model="m")
        with running_app(backend) as (base, _app):
            bad = post_extract(base, {**NER, "texts": ["Fine text.", "Poison text."]})
            good = post_extract(base, {**NER, "text": "Fine again."})
    assert bad.status_code == 502
    assert bad.json()["error"].startswith("document 'text-2': the backend could not answer")
    assert good.status_code == 200

    class DeadServer:
        def generate(self, prompts, config):
            raise BackendUnavailable("POST http://127.0.0.1:9/v1: connection refused")

    with running_app(DeadServer()) as (base, _app):
        dead = post_extract(base, {**NER, "text": "Anyone there?"})
        health = httpx.get(f"{base}/healthz")
    assert dead.status_code == 503 and dead.headers["Retry-After"] == "5"
    assert dead.json() == {"error": "the backend is unavailable: POST http://127.0.0.1:9/v1: "
                                    "connection refused"}
    assert health.status_code == 200  # the worker lives on


def test_an_api_key_guards_the_api_but_not_health_or_the_page(fake):
    backend = load_backend(base_url=fake[0], api_model="m")
    with running_app(backend, api_key="s3cret") as (base, _app):
        missing = post_extract(base, {**NER, "text": "Alice."})
        wrong = post_extract(base, {**NER, "text": "Alice."},
                             headers={"Authorization": "Bearer nope"})
        right = post_extract(base, {**NER, "text": "Alice."},
                             headers={"Authorization": "Bearer s3cret"})
        schemas = httpx.get(f"{base}/v1/schemas")
        open_paths = [httpx.get(f"{base}{p}").status_code for p in ("/healthz", "/", "/version")]
    assert missing.status_code == wrong.status_code == schemas.status_code == 401
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer KEY" in missing.json()["error"]
    assert right.status_code == 200 and open_paths == [200, 200, 200]


def test_metrics_count_requests_documents_tokens_and_latency(served):
    base, _ = served
    before = {name: metric(base, name) for name in ("deepke_documents_total",
                                                     "deepke_generated_tokens_total",
                                                     "deepke_engine_generate_calls_total")}
    ok_before = metric(base, "deepke_requests_total", route="/v1/extract", status="200")
    post_extract(base, {**NER, "texts": ["Alice met Bob.", "Carol met Dan.", "Eve left."]})
    post_extract(base, {**NER, "schema": "nope", "text": "x"})
    assert metric(base, "deepke_documents_total") == before["deepke_documents_total"] + 3
    # the rule server reports 5 completion tokens per request, one request per prompt
    assert metric(base, "deepke_generated_tokens_total") == \
        before["deepke_generated_tokens_total"] + 15
    assert metric(base, "deepke_engine_generate_calls_total") > \
        before["deepke_engine_generate_calls_total"]
    assert metric(base, "deepke_requests_total", route="/v1/extract", status="200") == \
        ok_before + 1
    assert metric(base, "deepke_requests_total", route="/v1/extract", status="422") >= 1
    assert metric(base, "deepke_request_seconds_count", route="/v1/extract") >= 2
    assert metric(base, "deepke_queue_depth") == 0


def test_a_job_runs_an_upload_and_its_records_equal_extracts(served, fake, tmp_path):
    base, _ = served
    lines = ['{"id": "a", "text": "Alice met Bob in Rome."}', "not json",
             '{"text": "Carol flew to Oslo."}', '{"id": "d", "text": "Dan stayed."}']
    upload = tmp_path / "docs.jsonl"
    upload.write_text("\n".join(lines) + "\n", encoding="utf-8")
    created = httpx.post(f"{base}/v1/jobs", data={**NER},
                         files={"file": ("docs.jsonl", upload.read_bytes())})
    assert created.status_code == 202
    job_id = created.json()["id"]
    assert created.headers["Location"] == f"/v1/jobs/{job_id}"
    wait_for(lambda: httpx.get(f"{base}/v1/jobs/{job_id}").json()["state"] == "done")
    status = httpx.get(f"{base}/v1/jobs/{job_id}").json()
    records = httpx.get(f"{base}/v1/jobs/{job_id}/records")
    expected = cli_records(fake[0], "--task", "ner", "--schema", "conll03", "--input", str(upload))
    assert [json.loads(line) for line in records.text.splitlines()] == expected
    assert [d["id"] for d in expected] == ["a", "docs-3", "d"]
    assert (status["documents_total"], status["documents_done"], status["input_errors"],
            status["records"], status["progress"], status["complete"]) == (4, 3, 1, 6, 1.0, True)
    assert status["errors"] == ["docs.jsonl:2: not valid JSON (Expecting value at column 1)"]
    assert records.headers["X-Job-Complete"] == "true"
    missing = httpx.get(f"{base}/v1/jobs/0123456789abcdef")
    assert missing.status_code == 404 and missing.json()["error"].startswith("no job")
    bad = httpx.post(f"{base}/v1/jobs", data={"task": "ner", "schema": "{broken"},
                     files={"file": ("x.jsonl", b"{}")})
    assert bad.status_code == 422 and bad.json()["error"].startswith("schema: not valid JSON")


def test_schemas_version_openapi_and_docs_are_served_without_a_cdn(served):
    base, _ = served
    listed = {s["name"]: s for s in httpx.get(f"{base}/v1/schemas").json()["schemas"]}
    assert listed["conll04"]["tasks"] == ["ner", "re"] and listed["duee"]["language"] == "zh"
    assert httpx.get(f"{base}/v1/schemas/conll04").json() == load_schema("conll04").to_dict()
    assert httpx.get(f"{base}/v1/schemas/nope").status_code == 404
    assert httpx.get(f"{base}/version").json()["engine"] == "openai"
    spec = httpx.get(f"{base}/openapi.json").json()
    assert {"/v1/extract", "/v1/schemas", "/v1/jobs", "/v1/jobs/{job_id}/records", "/healthz",
            "/metrics", "/version"} <= set(spec["paths"])
    docs = httpx.get(f"{base}/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert httpx.get(f"{base}/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert httpx.get(f"{base}/redoc").status_code == 404
