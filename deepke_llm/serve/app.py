"""The FastAPI app of ``deepke-llm serve``: REST API, web page, batch jobs, metrics.

:func:`create_app` wraps ONE loaded backend. Every extraction (``POST /v1/extract``, batch jobs,
the web page, which calls the REST API only) goes through the app's
:class:`~deepke_llm.serve.batching.Batcher`, whose worker thread runs the one
:class:`~deepke_llm.extractor.Extractor` pipeline; records are serialised by the writer that
``extract`` uses (:func:`deepke_llm.io.json_line`), so a response's documents are exactly the
lines ``extract`` writes. Every refusal is ``{"error": "<one line>"}`` with a 4xx/5xx status; an
exception in a handler is a 500 answer, never a dead server.

API docs: ``/openapi.json`` and Swagger UI at ``/docs``, its JavaScript and CSS served from the
``swagger-ui-bundle-v2`` package (the ``[serve]`` extra), never from a CDN; without that package
``/docs`` is off. FastAPI's ReDoc page (CDN only) is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from deepke_llm import __version__
from deepke_llm.io import json_line
from deepke_llm.problems import one_line
from deepke_llm.serve.batching import Batcher, BatchFailed, CountingBackend, QueueFull
from deepke_llm.serve.jobs import JobManager, UploadTooLarge
from deepke_llm.serve.metrics import ServeMetrics
from deepke_llm.serve.requests import (
    ExtractOptions,
    ExtractRequest,
    Refused,
    ServeSettings,
    documents_for,
    spec_for,
)

__all__ = ["create_app"]

BEARER = HTTPBearer(auto_error=False, description="The key named by --auth-key-env.")
STATIC = resources.files("deepke_llm.serve").joinpath("static")
EXAMPLE_RESPONSE = {"documents": [{
    "id": "text-1", "text": "Barack Obama visited Paris.", "language": "en",
    "entities": [{"type": "person", "text": "Barack Obama", "start": 0, "end": 12},
                 {"type": "location", "text": "Paris", "start": 21, "end": 26}],
    "relations": [], "events": [], "raw_output": ['{"person": ["Barack Obama"], ...}']}]}


def create_app(backend: Any, settings: ServeSettings | None = None) -> FastAPI:
    """The server's app around ``backend`` (loaded once by the caller)."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics(lambda: batcher.pending)
    counted = CountingBackend(backend, metrics.engine_call)
    batcher = Batcher(counted, window_s=settings.batch_window_ms / 1000,
                      max_batch=settings.max_batch, max_queue=settings.max_queue,
                      engine_batch=settings.engine_batch, on_batch=metrics.batch_done)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        temp = None
        if settings.jobs_dir is None:
            temp = tempfile.TemporaryDirectory(prefix="deepke-jobs-")
        app.state.jobs = JobManager(batcher, settings.jobs_dir or temp.name,
                                    settings.max_upload_bytes)
        batcher.start()
        app.state.jobs.start()
        try:
            yield
        finally:
            app.state.jobs.stop()
            batcher.stop()
            if temp is not None:
                temp.cleanup()

    docs = _swagger_assets()
    app = FastAPI(title="deepke-llm", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Schema-guided NER, relation and event extraction "
                  "with LLMs. Records are the JSON lines `deepke-llm extract` writes.")
    app.state.batcher, app.state.metrics, app.state.backend = batcher, metrics, counted
    app.state.settings = settings
    _add_error_handlers(app)
    _add_middleware(app, settings, metrics)
    if docs is not None:
        _add_docs(app, docs)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _add_service_routes(app, settings, backend, metrics)
    app.include_router(_api_router(settings, batcher, metrics))
    return app


# ---- routes ---------------------------------------------------------------------------------

def _api_router(settings: ServeSettings, batcher: Batcher, metrics: ServeMetrics) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(_auth(settings.api_key))])

    @router.post("/extract", summary="Extract records from one or more texts",
                 responses={200: {"content": {"application/json": {"example": EXAMPLE_RESPONSE}},
                                  "description": "One record per text, as `extract` writes "
                                                 "them (offsets are code point indices)."}})
    async def extract(body: ExtractRequest) -> Response:
        spec = spec_for(body, settings)
        documents = documents_for(body, settings)
        try:
            future = batcher.submit(spec, documents)
        except QueueFull as exc:
            metrics.rejected.inc()
            raise Refused(429, str(exc), {"Retry-After": "1"}) from None
        try:
            results = await asyncio.wait_for(asyncio.wrap_future(future), settings.timeout_s)
        except asyncio.TimeoutError:
            raise Refused(504, f"not answered within {settings.timeout_s:g} s; send fewer or "
                               "shorter texts, or use /v1/jobs") from None
        except BatchFailed as exc:
            retry = {"Retry-After": "5"} if exc.status == 503 else {}
            raise Refused(exc.status, str(exc), retry) from None
        for document in results:
            if document.failure is not None:
                raise Refused(502, f"document '{document.id}': the backend could not answer: "
                                   f"{document.failure}")
        body_text = '{"documents": [' + ", ".join(json_line(d) for d in results) + "]}"
        return Response(body_text, media_type="application/json")

    @router.get("/schemas", summary="The bundled schemas")
    def list_schemas() -> dict[str, Any]:
        from deepke_llm.schema import bundled_schemas, load_schema
        from deepke_llm.tasks import task_names

        items = []
        for name in bundled_schemas():
            schema = load_schema(name)
            items.append({"name": name, "language": schema.language,
                          "description": schema.description,
                          "tasks": [t for t in task_names() if schema.defines(t)]})
        return {"schemas": items}

    @router.get("/schemas/{name}", summary="One bundled schema (its JSON file)")
    def show_schema(name: str) -> dict[str, Any]:
        from deepke_llm.schema import bundled_schemas, load_schema

        if name not in bundled_schemas():
            raise Refused(404, f"unknown schema '{name}': GET /v1/schemas lists them")
        return load_schema(name).to_dict()

    @router.post("/jobs", status_code=202, summary="Start a batch job on a JSONL upload")
    async def create_job(request: Request,
                         file: Annotated[UploadFile, File(description='JSON lines of {"id", '
                                                                      '"text"}.')],
                         task: Annotated[str, Form()],
                         schema_: Annotated[str, Form(alias="schema", description="A bundled "
                                                     "name or a schema object as JSON.")],
                         prompt_style: Annotated[str, Form()] = "iepile",
                         language: Annotated[str | None, Form()] = None,
                         max_new_tokens: Annotated[int, Form()] = 512,
                         split_num: Annotated[int | None, Form()] = None,
                         keep_punctuation: Annotated[bool, Form()] = False) -> JSONResponse:
        options = _job_options(task, schema_, prompt_style, language, max_new_tokens,
                               split_num, keep_punctuation)
        spec = spec_for(options, settings)
        try:
            job = await run_in_threadpool(request.app.state.jobs.create, spec, file.file,
                                          file.filename)
        except UploadTooLarge as exc:
            raise Refused(413, str(exc)) from None
        return JSONResponse(job.to_dict(), status_code=202,
                            headers={"Location": f"/v1/jobs/{job.id}"})

    @router.get("/jobs/{job_id}", summary="A job's state and progress")
    def job_status(request: Request, job_id: str) -> dict[str, Any]:
        return _job(request, job_id).to_dict()

    @router.get("/jobs/{job_id}/records", summary="A finished job's records (JSONL)")
    def job_records(request: Request, job_id: str) -> FileResponse:
        job = _job(request, job_id)
        if job.state not in ("done", "failed"):
            raise Refused(409, f"job {job_id} is {job.state}: poll GET /v1/jobs/{job_id} until "
                               "its state is done")
        path = request.app.state.jobs.records_path(job)
        if not path.exists():
            raise Refused(404, f"job {job_id} wrote no records: {job.error or 'no documents'}")
        return FileResponse(path, media_type="application/x-ndjson",
                            filename=f"{job.filename.removesuffix('.jsonl')}.records.jsonl",
                            headers={"X-Job-Complete": str(job.complete).lower()})

    return router


def _job(request: Request, job_id: str) -> Any:
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise Refused(404, f"no job '{job_id}' on this server")
    return job


def _job_options(task: str, schema: str, prompt_style: str, language: str | None,
                 max_new_tokens: int, split_num: int | None,
                 keep_punctuation: bool) -> ExtractOptions:
    value: Any = schema
    if schema.lstrip().startswith("{"):
        try:
            value = json.loads(schema)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise Refused(422, f"schema: not valid JSON ({one_line(exc)})") from None
    try:
        return ExtractOptions(task=task, schema=value, prompt_style=prompt_style,
                              language=language or None, max_new_tokens=max_new_tokens,
                              split_num=split_num, keep_punctuation=keep_punctuation)
    except ValidationError as exc:
        raise Refused(422, _validation_line(exc.errors())) from None


def _add_service_routes(app: FastAPI, settings: ServeSettings, backend: Any,
                        metrics: ServeMetrics) -> None:
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC.joinpath("index.html")), media_type="text/html")

    @app.get("/healthz", summary="Liveness: the worker runs")
    def healthz(request: Request) -> JSONResponse:
        batcher = request.app.state.batcher
        body = {"status": "ok" if batcher.alive else "down", "queue_depth": batcher.pending}
        return JSONResponse(body, status_code=200 if batcher.alive else 503)

    @app.get("/version", summary="Package version and the model served")
    def version() -> dict[str, Any]:
        engine = getattr(backend, "engine", type(backend).__name__)
        named = [getattr(backend, key, None) for key in ("model_name", "model")]
        model = settings.model_name or next((n for n in named if isinstance(n, str)), "")
        return {"version": __version__, "engine": engine, "model": model}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _auth(api_key: str | None) -> Any:
    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
              ) -> None:
        if api_key is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise Refused(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                          {"WWW-Authenticate": "Bearer"})

    return check


# ---- errors, limits, metrics ----------------------------------------------------------------

def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_line(errors: list[dict[str, Any]]) -> str:
    """The first validation error as ``where: what`` (one line)."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return f"{where}: {first.get('msg', 'invalid')}"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            return _error(400, f"body: not valid JSON ({errors[0].get('ctx', {}).get('error', '')})"
                               .replace(" ()", ""))
        return _error(422, _validation_line(errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}: {one_line(exc)}")


def _add_middleware(app: FastAPI, settings: ServeSettings, metrics: ServeMetrics) -> None:
    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        limit = settings.max_upload_bytes if request.url.path == "/v1/jobs" \
            else settings.max_body_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            response: Response = _error(413, f"body: {length} bytes is over this server's limit "
                                             f"of {limit}")
        else:
            try:
                response = await call_next(request)
            except Exception as exc:  # noqa: BLE001 - an answer, never a dead connection
                response = _error(500, f"internal error: {type(exc).__name__}: {one_line(exc)}")
        route = request.scope.get("route")
        name = getattr(route, "path", None) or "other"
        metrics.requests.labels(name, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        return response


def _swagger_assets() -> str | None:
    """The folder of Swagger UI's files from the swagger-ui-bundle package, when installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return str(swagger_ui_path)


def _add_docs(app: FastAPI, folder: str) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs-assets", StaticFiles(directory=folder), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="deepke-llm API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")
