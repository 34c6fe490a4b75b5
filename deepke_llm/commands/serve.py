"""``deepke-llm serve``: options -> a backend (loaded once) + :class:`ServeSettings` ->
:func:`deepke_llm.serve.app.create_app` run by uvicorn."""

from __future__ import annotations

import ipaddress
import os
import socket

import click

from deepke_llm.commands.common import ExitCode, fail
from deepke_llm.commands.options import backend_from_options, model_options, pop_model_options

SERVE_PACKAGES = ("fastapi", "uvicorn", "multipart", "prometheus_client", "starlette", "pydantic")


@click.command(context_settings={"show_default": True})
@model_options
@click.option("--host", default="127.0.0.1",
              help="Address to bind; anything but loopback exposes the server to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, help="Port to bind.")
@click.option("--auth-key-env", metavar="NAME",
              help="Env var holding the key clients must send as 'Authorization: Bearer KEY' "
                   "[default: no auth]. (--api-key-env is the key of a --base-url backend.)")
@click.option("--jobs-dir", type=click.Path(file_okay=False),
              help="Folder for batch jobs' uploads and records [default: a temp dir].")
@click.option("--batch-size", type=click.IntRange(min=1), default=32,
              help="Prompts per engine call (rows of one llama.cpp batch / concurrent requests "
                   "to a server).")
@click.option("--max-batch", type=click.IntRange(min=1), default=32,
              help="Documents of concurrent requests gathered into one extraction batch.")
@click.option("--batch-window-ms", type=click.FloatRange(min=0), default=15.0,
              help="How long the worker waits for more requests before running a batch.")
@click.option("--max-queue", type=click.IntRange(min=1), default=256,
              help="Documents admitted and not yet answered; more are answered 429.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=120.0,
              help="Seconds before a request is answered 504.")
@click.option("--max-text-chars", type=click.IntRange(min=1), default=20_000,
              help="Longest text of a /v1/extract request (longer ones: /v1/jobs).")
@click.option("--max-texts", type=click.IntRange(min=1), default=64,
              help="Most texts in one /v1/extract request.")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", help="uvicorn's log level.")
def serve(host, port, auth_key_env, jobs_dir, batch_size, max_batch, batch_window_ms, max_queue,
          timeout_s, max_text_chars, max_texts, log_level, **kwargs):
    """Serve extraction over HTTP: REST API (/v1/extract, /v1/jobs), web page (/), /docs,
    /metrics. The model is loaded once; concurrent requests share engine calls.

    \b
    Examples:
      deepke-llm serve                                   # default model, http://127.0.0.1:8080/
      deepke-llm serve --model ./my-model --port 9000 --auth-key-env DEEPKE_KEY
      curl -s http://127.0.0.1:8080/v1/extract -H 'Content-Type: application/json' \\
          -d '{"task": "ner", "schema": "conll03", "text": "Japan beat Syria 2-1."}'
    """
    try:
        import uvicorn

        from deepke_llm.serve.app import create_app
        from deepke_llm.serve.requests import ServeSettings
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVE_PACKAGES:
            raise
        fail(f"serve needs the '{exc.name}' package: pip install 'deepke-llm[serve]'",
             ExitCode.USAGE)
    api_key = None
    if auth_key_env:
        api_key = os.environ.get(auth_key_env)
        if not api_key:
            fail(f"--auth-key-env {auth_key_env}: that environment variable is empty or unset",
                 ExitCode.USAGE)
    if not _is_loopback(host):
        click.echo(f"warning: binding {host} exposes the server beyond this machine"
                   + ("" if api_key else "; consider --auth-key-env"), err=True)
    _check_port(host, port)
    options = pop_model_options(kwargs)
    try:
        backend = backend_from_options(options, batch_size)
    except ValueError as exc:  # a model that does not load
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    model_name = options["base_url"] or options["model"] or "default model"
    settings = ServeSettings(api_key=api_key, jobs_dir=jobs_dir, batch_window_ms=batch_window_ms,
                             max_batch=max_batch, engine_batch=batch_size, max_queue=max_queue,
                             timeout_s=timeout_s, max_text_chars=max_text_chars,
                             max_texts=max_texts, model_name=model_name)
    uvicorn.run(create_app(backend, settings), host=host, port=port, log_level=log_level)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port(host: str, port: int) -> None:
    """Fail in a second (before the model loads) when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port",
                 ExitCode.USAGE)
