"""The model options `extract` and `evaluate` share, and the one function that turns them into a
backend (so the two commands cannot drift apart)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

MODEL_OPTIONS = [
    click.option("--model", help="Local model dir, GGUF file or hub id (transformers backend); "
                 "'default' = the default base without adapter [default: default base + IE "
                 "adapter]."),
    click.option("--lora", help="LoRA adapter dir to apply on --model (peft)."),
    click.option("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."),
    click.option("--api-model", help="Model name the server serves (with --base-url)."),
    click.option("--api-key-env", default="OPENAI_API_KEY", help="Env var holding the API key."),
    click.option("--endpoint", type=click.Choice(["chat", "completions"]), default="chat",
                 help="Server endpoint (with --base-url)."),
    click.option("--chat-template", default="auto",
                 help="auto (tokenizer's own, else plain), tokenizer, oneke, alpaca or plain."),
    click.option("--dtype", default="auto",
                 help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16."),
    click.option("--device-map", help="transformers device_map, e.g. auto."),
    click.option("--load-in-4bit", is_flag=True, help="4-bit weights via bitsandbytes (GPU)."),
    click.option("--load-in-8bit", is_flag=True, help="8-bit weights via bitsandbytes (GPU)."),
    click.option("--trust-remote-code", is_flag=True, help="Allow model code from the model repo."),
]

MODEL_KEYS = ("model", "lora", "base_url", "api_model", "api_key_env", "endpoint",
              "chat_template", "dtype", "device_map", "load_in_4bit", "load_in_8bit",
              "trust_remote_code")


def model_options(command: Callable) -> Callable:
    """Decorate a click command with the shared model options."""
    for option in reversed(MODEL_OPTIONS):
        command = option(command)
    return command


def pop_model_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the shared model options out of a command's keyword arguments."""
    return {key: kwargs.pop(key) for key in MODEL_KEYS}


def backend_from_options(options: dict[str, Any], batch_size: int) -> Any:
    """A backend for the shared options: a server with --base-url, else a local model.

    ``batch_size`` is also the number of concurrent requests to a server.
    """
    from deepke_llm.backends.registry import load_backend

    template = options["chat_template"]
    if options["base_url"]:
        return load_backend(base_url=options["base_url"],
                            api_model=options["api_model"] or options["model"],
                            api_key_env=options["api_key_env"], endpoint=options["endpoint"],
                            max_concurrency=batch_size,
                            chat_template=None if template == "auto" else template)
    return load_backend(model=options["model"], lora=options["lora"], chat_template=template,
                        dtype=options["dtype"], device_map=options["device_map"],
                        load_in_4bit=options["load_in_4bit"] or None,
                        load_in_8bit=options["load_in_8bit"] or None,
                        trust_remote_code=options["trust_remote_code"] or None)
