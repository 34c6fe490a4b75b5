"""The one protocol every backend implements, and the generation settings it reads.

A backend turns a batch of :class:`~deepke_llm.prompts.chat.Prompt` into one output string per
prompt, in order. Everything model-specific (tokenizers, HTTP, chat rendering) stays inside the
backend's own module; a test double is a few lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from deepke_llm.config import config_field
from deepke_llm.prompts.chat import Prompt


@dataclass
class GenerationConfig:
    """Decoding settings shared by all backends (plain data so backends and servers can read it)."""

    max_new_tokens: int = config_field(512, minimum=1, help="Upper bound of generated tokens "
                                                            "per prompt.")
    temperature: float = config_field(0.0, minimum=0, help="0 means greedy decoding.")
    top_p: float = config_field(1.0, help="Nucleus sampling mass (ignored when greedy).")
    stop: tuple[str, ...] = config_field((), help="Extra stop strings; generation always stops "
                                                  "at the model's end-of-sequence token.")
    batch_size: int = config_field(8, minimum=1, help="Prompts per forward pass (local "
                                                      "backends) or concurrent requests (served "
                                                      "backends).")
    seed: int | None = config_field(None, help="Sampling seed where the backend supports one.")
    extra: dict[str, Any] = config_field({}, help="Backend-specific settings passed through "
                                                  "untouched (e.g. structured-output parameters).")

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        self.stop = tuple(self.stop)


@dataclass
class GenerationStats:
    """Counters a backend updates so callers can report throughput."""

    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0


class BackendError(RuntimeError):
    """A backend could not answer some prompts (a server refusal, a request that kept failing).

    ``outputs``, when the backend knows it, has one entry per prompt of the call: the output of
    each prompt that succeeded and None for each that failed (``failures`` holds their one-line
    reasons), so the caller keeps what succeeded and never sends it again. Without ``outputs``
    the extractor halves the batch until the failing prompts are isolated. Documents whose
    prompts still fail are not finished: they are left out of the output so that ``--resume``
    redoes them.
    """

    def __init__(self, message: str, outputs: Sequence[str | None] | None = None,
                 failures: Sequence[str | None] | None = None) -> None:
        super().__init__(message)
        self.outputs = list(outputs) if outputs is not None else None
        self.failures = list(failures) if failures is not None else None


class BackendUnavailable(BackendError):
    """The backend cannot answer anything now (a dead server): the run stops instead of
    failing every remaining document one by one."""


class GenerationCancelled(BackendUnavailable):
    """A local engine's ``cancel`` event was set during a call (an interactive user's Ctrl-C):
    the call stops at the next decoding step and the run with it."""


@runtime_checkable
class Backend(Protocol):
    """``generate(prompts, config) -> outputs``: one output string per prompt, same order."""

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]: ...


# a shared prompt prefix shorter than this is not worth a cached forward pass of its own
MIN_SHARED_PREFIX = 8


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with (extraction prompts of one schema chunk share about half)."""
    first = rows[0]
    length = min(len(r) for r in rows)
    for row in rows[1:]:
        i = 0
        while i < length and row[i] == first[i]:
            i += 1
        length = i
    return length


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to the first of the stop strings (the stop itself left out)."""
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return text if cut < 0 else text[:cut]


def count_tokens(backend: Any, text: str) -> int:
    """Tokens of ``text`` for ``backend`` if it can count them, else a conservative estimate.

    The estimate (one token per 3 characters, one per CJK character) errs on the long side so
    that windows built from it still fit.
    """
    counter = getattr(backend, "count_tokens", None)
    if counter is not None:
        return int(counter(text))
    from deepke_llm.cjk import count_wide

    cjk = count_wide(text)
    return cjk + (len(text) - cjk + 2) // 3


def context_length(backend: Any, default: int = 4096) -> int:
    """The backend's context window in tokens (``default`` when it does not say)."""
    value = getattr(backend, "context_length", None)
    return int(value) if value else default
