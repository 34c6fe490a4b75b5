"""The session behind ``deepke-llm chat``: free chat with a model, or extraction line by line.

A :class:`ChatSession` takes one typed line at a time (:meth:`ChatSession.handle`) and prints to
a ``rich`` console, so it runs the same with a terminal (:func:`interact`) or with lines fed by a
test. Extraction goes through the one :class:`~deepke_llm.extractor.Extractor` (one per task,
schema, style and language, kept for the session); free chat sends the conversation so far as one
:class:`~deepke_llm.prompts.chat.Prompt` (earlier turns as its demonstrations), which every backend
renders with the model's chat template or sends as chat messages.

Generation runs in a worker thread and the terminal waits for it, so Ctrl-C abandons the
generation at once and the session goes on. A server takes concurrent requests, so an abandoned
request never delays the next; a local engine runs one generation at a time, so the next one
waits until the abandoned one has finished (the session says so).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from deepke_llm.backends.base import BackendError, GenerationConfig, context_length, count_tokens
from deepke_llm.extractor import Extractor
from deepke_llm.problems import one_line
from deepke_llm.prompts.chat import Prompt
from deepke_llm.records import Document
from deepke_llm.schema import Schema, SchemaError, load_schema

__all__ = ["ChatSession", "Generations", "history_path", "interact"]

T = TypeVar("T")

# the schema a task switches to when the current one has no types for it, per language
DEFAULT_SCHEMAS = {"en": {"ner": "conll03", "re": "conll04", "ee": "ace05"},
                   "zh": {"ner": "peoples_daily", "re": "duie", "ee": "duee"}}
TASKS = ("ner", "re", "ee")

HELP = """\
commands:
  /ner [TEXT]           extract entities from every line typed (and from TEXT now)
  /re [TEXT]            extract relations
  /ee [TEXT]            extract events
  /chat                 back to free chat with the model
  /schema [NAME|FILE]   use a bundled schema or a schema file (no argument: show the current one)
  /style iepile|knowlm  prompt style of extraction
  /json                 show records as JSON lines instead of tables (toggle)
  /clear                forget the conversation so far
  /help                 this text
  /quit                 leave (Ctrl-D too); Ctrl-C stops a running generation"""


class Generations:
    """Runs backend calls in a worker thread so that Ctrl-C stops waiting for them at once.

    ``concurrent`` backends (a server) get a thread per call; others (a local engine, which runs
    one generation at a time) share one worker, so an abandoned call finishes before the next
    starts. Threads are daemons: an abandoned call must not hold up leaving the session
    (concurrent.futures would join its threads at exit).
    """

    def __init__(self, concurrent: bool, cancel: threading.Event | None = None) -> None:
        self.concurrent = concurrent
        self.cancel = cancel  # a local engine's event: set, its abandoned call stops early
        self.abandoned: Future | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """Is an abandoned call still running?"""
        return self.abandoned is not None and not self.abandoned.done()

    def run(self, call: Callable[[], T]) -> T:
        """``call()``'s result; KeyboardInterrupt leaves it running in the background."""
        future: Future = Future()
        if self.concurrent:
            threading.Thread(target=_fill, args=(future, call), daemon=True).start()
        else:
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, daemon=True,
                                                name="deepke-chat-generation")
                self._worker.start()
            self._jobs.put((future, call))
        try:
            return future.result()
        except KeyboardInterrupt:
            self.abandoned = future
            if self.cancel is not None:
                self.cancel.set()
            raise

    def _serve(self) -> None:
        while True:
            future, call = self._jobs.get()
            if self.cancel is not None:
                self.cancel.clear()
            _fill(future, call)


def _fill(future: Future, call: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(call())
    except BaseException as exc:  # handed to the waiting thread, which decides
        future.set_exception(exc)


class ChatSession:
    """One interactive session on a loaded backend; feed it lines with :meth:`handle`."""

    def __init__(self, backend: Any, console: Console | None = None, *, task: str | None = None,
                 schema: str | None = None, prompt_style: str = "iepile",
                 language: str | None = None, max_new_tokens: int = 512,
                 temperature: float = 0.0, system: str | None = None,
                 batch_size: int = 8) -> None:
        self.backend = backend
        self.console = console or Console()
        self.mode = "chat"
        self.schema: Schema | None = load_schema(schema) if schema else None
        self.prompt_style = prompt_style
        self.language = language
        self.show_json = False
        self.system = system
        self.chat_generation = GenerationConfig(max_new_tokens=max_new_tokens,
                                                temperature=temperature, batch_size=1)
        self.extract_generation = GenerationConfig(max_new_tokens=max_new_tokens,
                                                   batch_size=batch_size)
        self.turns: list[tuple[Prompt, str]] = []
        self.generations = Generations(concurrent=getattr(backend, "engine", "") == "openai",
                                       cancel=getattr(backend, "cancel", None))
        self._extractors: dict[tuple, Extractor] = {}
        if task is not None:
            self._switch_task(task)

    # ---- what the terminal shows --------------------------------------------------------------
    @property
    def prompt(self) -> str:
        """The input prompt: ``>>> `` in chat, ``ner conll03> `` in extraction."""
        if self.mode == "chat":
            return ">>> "
        return f"{self.mode} {self.schema.name if self.schema else ''}> "

    def say(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)

    def error(self, text: str) -> None:
        self.say(f"error: {text}", style="red")

    # ---- one line -----------------------------------------------------------------------------
    def handle(self, line: str) -> bool:
        """Act on one typed line; False when the session should end."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self._command(line)
        if self.mode == "chat":
            self._chat(line)
        else:
            self._extract(line)
        return True

    def _command(self, line: str) -> bool:
        name, _, argument = line.partition(" ")
        name, argument = name.lower(), argument.strip()
        if name in ("/quit", "/exit", "/bye"):
            return False
        if name == "/help":
            self.say(HELP)
        elif name in ("/ner", "/re", "/ee"):
            if self._switch_task(name[1:]) and argument:
                self._extract(argument)
        elif name == "/chat":
            self.mode = "chat"
            self.say("free chat with the model (/clear forgets the conversation)")
        elif name == "/clear":
            self.turns.clear()
            self.say("conversation cleared")
        elif name == "/schema":
            self._set_schema(argument)
        elif name == "/style":
            self._set_style(argument)
        elif name == "/json":
            self.show_json = not self.show_json
            self.say(f"records as {'JSON lines' if self.show_json else 'tables'}")
        else:
            self.error(f"unknown command {name}: type /help for the commands")
        return True

    def _switch_task(self, task: str) -> bool:
        schema = self.schema
        if schema is None or not schema.defines(task):
            language = self.language or (schema.language if schema else "en")
            fallback = load_schema(DEFAULT_SCHEMAS.get(language, DEFAULT_SCHEMAS["en"])[task])
            if schema is not None:
                self.say(f"schema {schema.name} has no {task} types: using {fallback.name}")
            schema = fallback
        self.schema, self.mode = schema, task
        self.say(f"{task} with schema {schema.name} ({_type_names(schema, task)}); type text to "
                 "extract, /chat to chat")
        return True

    def _set_schema(self, argument: str) -> None:
        if not argument:
            if self.schema is None:
                self.say("no schema yet: /ner, /re and /ee pick a default one")
            else:
                kinds = [t for t in TASKS if self.schema.defines(t)]
                self.say(f"schema {self.schema.name}: " + "; ".join(
                    f"{t}: {_type_names(self.schema, t)}" for t in kinds))
            return
        try:
            schema = load_schema(argument)
        except SchemaError as exc:
            self.error(one_line(exc))
            return
        if self.mode != "chat" and not schema.defines(self.mode):
            self.error(f"schema {schema.name} has no {self.mode} types: switch task first "
                       f"(/{'/'.join(t for t in TASKS if schema.defines(t))}) or pick another")
            return
        self.schema = schema
        self.say(f"schema {schema.name}" + (f" ({_type_names(schema, self.mode)})"
                                            if self.mode != "chat" else ""))

    def _set_style(self, argument: str) -> None:
        from deepke_llm.prompts.styles import style_names

        if argument not in style_names():
            self.error(f"unknown prompt style '{argument}': use {' or '.join(style_names())}")
            return
        self.prompt_style = argument
        self.say(f"prompt style {argument}")

    # ---- chat ---------------------------------------------------------------------------------
    def _chat(self, line: str) -> None:
        prompt = self._fit(Prompt(user=line, system=self.system,
                                  demonstrations=tuple(self.turns)))
        answer = self._generate(lambda: self.backend.generate([prompt], self.chat_generation))
        if answer is None:
            return
        text = answer[0].strip()
        self.turns = [*prompt.demonstrations, (Prompt(user=line), text)]
        self.say(text)

    def _fit(self, prompt: Prompt) -> Prompt:
        """``prompt`` with its oldest turns dropped until it fits the model's context."""
        room = context_length(self.backend) - self.chat_generation.max_new_tokens
        render = getattr(self.backend, "render", None)
        while prompt.demonstrations:
            text = render(prompt) if render else "\n".join(m["content"] for m in prompt.messages())
            if count_tokens(self.backend, text) <= room:
                break
            prompt = replace(prompt, demonstrations=prompt.demonstrations[1:])
        return prompt

    # ---- extraction ---------------------------------------------------------------------------
    def extractor(self) -> Extractor:
        """The session's Extractor for the current task, schema, style and language."""
        assert self.schema is not None
        key = (self.mode, id(self.schema), self.prompt_style, self.language)
        if key not in self._extractors:
            self._extractors[key] = Extractor(self.backend, self.schema, self.mode,
                                              language=self.language,
                                              prompt_style=self.prompt_style,
                                              generation=self.extract_generation)
        return self._extractors[key]

    def _extract(self, text: str) -> None:
        try:
            extractor = self.extractor()
        except ValueError as exc:  # a style without a format for the task, a bad schema
            self.error(one_line(exc))
            return
        document = self._generate(lambda: extractor.extract(text))
        if document is None:
            return
        if self.show_json:
            self.say(document.to_json())
        else:
            self.show_records(document)

    def show_records(self, document: Document) -> None:
        """The document's records as a table (offsets included), then its problems."""
        if document.failure is not None:
            self.error(f"the backend did not answer: {document.failure}")
            return
        table = _records_table(self.mode, document)
        if table is None:
            self.say(f"no {_NOUNS[self.mode]} found", style="dim")
        else:
            self.console.print(table)
        for problem in document.errors:
            self.say(f"note: {problem}", style="yellow")

    # ---- generation ---------------------------------------------------------------------------
    def _generate(self, call: Callable[[], T]) -> T | None:
        """``call()`` in the worker; None when it was cancelled (Ctrl-C) or failed (one line)."""
        if self.generations.busy and not self.generations.concurrent:
            self.say("(waiting for the cancelled generation to finish)", style="dim")
        try:
            with self.console.status("generating... (Ctrl-C to stop)"):
                return self.generations.run(call)
        except KeyboardInterrupt:
            self.say("cancelled", style="yellow")
        except BackendError as exc:
            self.error(one_line(exc))
        except Exception as exc:  # one line, the session goes on (DEEPKE_DEBUG=1: traceback)
            if os.environ.get("DEEPKE_DEBUG"):
                raise
            self.error(f"{type(exc).__name__}: {one_line(exc)}")
        return None


_NOUNS = {"ner": "entities", "re": "relations", "ee": "events"}


def _type_names(schema: Schema, task: str) -> str:
    names = [t.name for t in schema.types_for(task)]
    return ", ".join(names[:8]) + (f", ... ({len(names)} types)" if len(names) > 8 else "")


def _offsets(item: Any) -> str:
    return "not found" if item.start is None else f"{item.start}-{item.end}"


def _records_table(task: str, document: Document) -> Table | None:
    """A rich table of the document's records for ``task`` (None when it has none)."""
    if task == "ner" and document.entities:
        table = Table("type", "text", "start", "end")
        for e in sorted(document.entities, key=_position):
            table.add_row(e.type, e.text, *(("-", "-") if e.start is None
                                             else (str(e.start), str(e.end))))
        return table
    if task == "re" and document.relations:
        table = Table("relation", "head", "head type", "head span", "tail", "tail type",
                      "tail span")
        for r in document.relations:
            table.add_row(r.type, r.head.text, r.head.type, _offsets(r.head), r.tail.text,
                          r.tail.type, _offsets(r.tail))
        return table
    if task == "ee" and document.events:
        table = Table("event", "trigger", "trigger span", "role", "argument", "argument span")
        for event in document.events:
            rows = [(a.role, a.text, _offsets(a)) for a in event.arguments] or [("", "", "")]
            for i, row in enumerate(rows):
                head = (event.type, event.trigger.text, _offsets(event.trigger)) if i == 0 \
                    else ("", "", "")
                table.add_row(*head, *row)
        return table
    return None


def _position(entity: Any) -> tuple[int, int]:
    return (entity.start if entity.start is not None else 1 << 62, entity.end or 0)


def history_path() -> Path:
    """The chat's input history: ``deepke-llm/chat_history`` in the user's state dir."""
    from platformdirs import user_state_dir

    return Path(user_state_dir("deepke-llm", appauthor=False)) / "chat_history"


def interact(session: ChatSession, history: Path | None = None,
             read: Callable[[str], str] = input) -> None:
    """Read lines until ``/quit`` or end of input, with line editing and history in a
    terminal (readline, ``history`` kept between sessions); Ctrl-C at the prompt clears it."""
    readline = _readline(history)
    while True:
        try:
            line = read(session.prompt)
        except EOFError:
            session.console.print()
            break
        except KeyboardInterrupt:
            session.console.print()
            continue
        if readline is not None and history is not None and line.strip():
            _append_history(readline, history)
        try:
            if not session.handle(line):
                break
        except KeyboardInterrupt:  # between generations (printing, loading a schema)
            session.say("cancelled", style="yellow")


def _readline(history: Path | None) -> Any:
    try:
        import readline
    except ImportError:  # no GNU readline (Windows): input() still works, without history
        return None
    if history is not None:
        readline.set_history_length(1000)
        try:
            if history.is_file():
                readline.read_history_file(history)
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history)  # trimmed to the last 1000 lines
        except OSError:
            pass  # history is a convenience: an unreadable file must not stop the session
    return readline


def _append_history(readline: Any, history: Path) -> None:
    with contextlib.suppress(OSError):  # history is a convenience, never a reason to stop
        readline.append_history_file(1, history)
