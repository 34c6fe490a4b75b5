"""Prompts as chat messages, and the named templates that render them to raw model input.

A :class:`Prompt` is what prompt styles build and backends consume. Rendering to a single string
happens in one place, :func:`render_prompt`, so instruction tuning and extraction produce the same
bytes for the same record:

- ``auto``: the tokenizer's own chat template when it has one, else ``plain``;
- ``tokenizer``: the tokenizer's chat template (an error if it has none);
- ``oneke`` (alias ``llama2_zh``): the OneKE / IEPile LLaMA-2 Chinese template;
- ``alpaca``: the Alpaca template used by KnowLM / ZhiXi;
- ``plain``: the user message as is.

Templates are versioned by name: a published template never changes; a new one gets a new name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Prompt", "chat_templates", "encode_rendered", "register_chat_template",
           "render_prompt"]


@dataclass(frozen=True)
class Prompt:
    """One model query: the user message, an optional system message and optional input.

    ``input`` is only used by templates that keep the input apart from the instruction
    (``alpaca``); chat templates see ``user`` only, which already contains the input.
    """

    user: str
    system: str | None = None
    input: str | None = None
    template: str | None = None
    """Template this prompt must be rendered with (set by styles that need one, e.g. knowlm)."""
    demonstrations: tuple[tuple[Prompt, str], ...] = ()
    """Few-shot examples shown before this prompt: (prompt, answer) pairs, oldest first."""

    def content(self) -> str:
        """The user turn as one string (the input appended when it is kept apart)."""
        return self.user if not self.input else f"{self.user}\n{self.input}"

    def messages(self) -> list[dict[str, str]]:
        """Chat messages for chat-template rendering and chat-completions endpoints."""
        out = [] if self.system is None else [{"role": "system", "content": self.system}]
        for demo, answer in self.demonstrations:
            out.append({"role": "user", "content": demo.content()})
            out.append({"role": "assistant", "content": answer})
        out.append({"role": "user", "content": self.content()})
        return out


Renderer = Callable[[Prompt], str]
_TEMPLATES: dict[str, Renderer] = {}


def register_chat_template(*names: str) -> Callable[[Renderer], Renderer]:
    """Register a raw-text template under one or more names (duplicates are rejected)."""

    def decorate(func: Renderer) -> Renderer:
        for name in names:
            if name in _TEMPLATES or name in ("auto", "tokenizer"):
                raise ValueError(f"chat template '{name}' is already registered")
            _TEMPLATES[name] = func
        return func

    return decorate


def chat_templates() -> list[str]:
    """Names accepted by :func:`render_prompt`."""
    return ["auto", "tokenizer", *sorted(_TEMPLATES)]


ONEKE_SYSTEM = "<<SYS>>\nYou are a helpful assistant. 你是一个乐于助人的助手。\n<</SYS>>\n\n"


@register_chat_template("oneke", "llama2_zh")
def _oneke(prompt: Prompt) -> str:
    # OneKE's inference template (zjunlp/OneKE model card); the system text is fixed by the model.
    # Earlier turns follow LLaMA-2's multi-turn layout, the system text only in the first.
    turns = [*(d.content() for d, _ in prompt.demonstrations), prompt.content()]
    answers = [a for _, a in prompt.demonstrations]
    text = "[INST] " + ONEKE_SYSTEM + turns[0] + "[/INST]"
    for answer, turn in zip(answers, turns[1:], strict=True):
        text += f" {answer} [INST] {turn}[/INST]"
    return text


ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


def _alpaca_block(prompt: Prompt) -> str:
    if prompt.input:
        return ALPACA_WITH_INPUT.format(instruction=prompt.user, input=prompt.input)
    return ALPACA_NO_INPUT.format(instruction=prompt.user)


@register_chat_template("alpaca")
def _alpaca(prompt: Prompt) -> str:
    demos = "".join(f"{_alpaca_block(d)}{a}\n\n" for d, a in prompt.demonstrations)
    return demos + _alpaca_block(prompt)


@register_chat_template("plain")
def _plain(prompt: Prompt) -> str:
    demos = "".join(f"{d.content()}\n{a}\n\n" for d, a in prompt.demonstrations)
    # after demonstrations the answer starts on a new line, as it did in each of them
    text = demos + prompt.content() + ("\n" if demos else "")
    return text if prompt.system is None else f"{prompt.system}\n\n{text}"


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(prompt: Prompt, template: str = "auto", tokenizer: Any = None) -> str:
    """Render ``prompt`` to the exact string the model is conditioned on.

    A template fixed by the prompt itself (``prompt.template``) wins over ``template``.
    """
    name = prompt.template or template
    if name in ("auto", "tokenizer"):
        if tokenizer is not None and has_chat_template(tokenizer):
            return tokenizer.apply_chat_template(prompt.messages(), tokenize=False,
                                                 add_generation_prompt=True)
        if name == "tokenizer":
            raise ValueError("the tokenizer has no chat template: pass --chat-template "
                             f"with one of {', '.join(sorted(_TEMPLATES))}")
        name = "plain"
    try:
        renderer = _TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown chat template '{name}': use one of "
                         f"{', '.join(chat_templates())}") from None
    return renderer(prompt)


def encode_rendered(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt: BOS is added unless the template already wrote it.

    The one tokenisation rule for prompts: extraction and instruction tuning both call it, so a
    model is trained on exactly the ids it later sees (a doubled BOS would be another input).
    """
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])
