"""``deepke-llm chat``: options -> a backend + :class:`~deepke_llm.chat.ChatSession` ->
:func:`~deepke_llm.chat.interact`."""

from __future__ import annotations

import os
import sys

import click

from deepke_llm.commands.common import ExitCode, fail, load_schema_or_fail
from deepke_llm.commands.options import (
    backend_from_options,
    language_option,
    model_options,
    pop_model_options,
    prompt_style_option,
    task_option,
)


@click.command(context_settings={"show_default": True})
@model_options
@task_option(help="Start in extraction mode for this task [default: free chat].")
@click.option("--schema", "schema_name",
              help="Bundled schema name or schema file for extraction [default: conll03, "
                   "conll04, ace05 by task; peoples_daily, duie, duee in Chinese].")
@prompt_style_option()
@language_option("Prompt language of extraction [default: the text's].")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=512,
              help="Generation limit per answer.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0,
              help="Sampling temperature of free chat (0 = greedy); extraction is greedy.")
@click.option("--system", help="System message of free chat.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8,
              help="Prompts per forward pass / concurrent requests in extraction.")
@click.option("--history/--no-history", default=True,
              help="Keep typed lines between sessions (in the user's state dir).")
def chat(task, schema_name, prompt_style, language, max_new_tokens, temperature, system,
         batch_size, history, **kwargs):
    """Interactive session on a loaded model: chat with it, or type text and see the entities,
    relations or events it extracts as tables with character offsets.

    Commands inside: /ner, /re, /ee (extract from every line), /chat, /schema NAME|FILE,
    /style iepile|knowlm, /json (records as JSON lines), /clear, /help, /quit (or Ctrl-D).
    Ctrl-C stops a running generation and keeps the session.

    \b
    Examples:
      deepke-llm chat                                   # default model
      deepke-llm chat --task ner --schema conll03 --model ./my-model
      deepke-llm chat --base-url http://127.0.0.1:8000/v1 --api-model oneke
    """
    from rich.console import Console

    from deepke_llm.chat import ChatSession, history_path, interact

    if schema_name:
        load_schema_or_fail(schema_name)  # a bad name fails before the model loads
    console = Console(highlight=False)
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo("loading the model...", err=True)
    try:
        backend = backend_from_options(pop_model_options(kwargs), batch_size)
    except ValueError as exc:  # a model that does not load
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    session = ChatSession(backend, console, task=task, schema=schema_name,
                          prompt_style=prompt_style, language=language,
                          max_new_tokens=max_new_tokens, temperature=temperature, system=system,
                          batch_size=batch_size)
    if interactive:
        engine = getattr(backend, "engine", type(backend).__name__)
        console.print(f"deepke-llm chat ({engine}): type to chat, /ner /re /ee to extract, "
                      "/help for commands, /quit or Ctrl-D to leave", style="bold",
                      markup=False)
    interact(session, history_path() if history and interactive else None,
             read=input if interactive else _read_piped)
    if session.generations.busy:
        # an abandoned generation may still wait on a server or run on the local engine:
        # leave without joining it (its backend's own worker threads would hold up exit)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(ExitCode.OK)


def _read_piped(prompt: str) -> str:
    """A line of piped input, without echoing a prompt (input() would print one)."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line
