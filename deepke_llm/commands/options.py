"""Options every command spells the same way, with choices from the registries.

- the model options ``extract`` and ``evaluate`` share, and the one function that turns them
  into a backend (so the two commands cannot drift apart);
- ``--task`` / ``--prompt-style`` (choices from the task and style registries), ``--language``,
  ``-o/--output``, ``--progress/--no-progress``, ``--resume``, ``--keep-punctuation``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

Decorator = Callable[[Callable], Callable]


def task_option(help: str = "What to extract.", **kwargs: Any) -> Decorator:
    """``--task`` with the registered task names as choices."""
    from deepke_llm.tasks import task_names

    return click.option("--task", type=click.Choice(task_names()), help=help, **kwargs)


def prompt_style_option(help: str = "iepile: OneKE/IEPile JSON; knowlm: ZhiXi free text."
                        ) -> Decorator:
    """``--prompt-style`` with the registered styles as choices."""
    from deepke_llm.prompts.styles import style_names

    return click.option("--prompt-style", type=click.Choice(style_names()), default="iepile",
                        show_default=True, help=help)


def language_option(help: str) -> Decorator:
    return click.option("--language", type=click.Choice(["en", "zh"]), help=help)


def output_option(*extra_names: str, required: bool = False, file: bool = True,
                  help: str = "Records JSONL [default: stdout].") -> Decorator:
    """``-o/--output`` (a file, or a folder with ``file=False``); ``extra_names`` keep the
    spellings older versions used (``--output-dir``) working."""
    kind = click.Path(dir_okay=False) if file else click.Path(file_okay=False)
    return click.option("-o", "--output", *extra_names, "output", required=required, type=kind,
                        help=help)


def progress_option() -> Decorator:
    """``--progress/--no-progress``; shown by default when stderr is a terminal."""
    return click.option("--progress/--no-progress", default=None,
                        help="Show a progress bar on stderr [default: when stderr is a terminal].")


def show_progress(flag: bool | None) -> bool:
    """The value of ``--progress/--no-progress`` with its default applied."""
    return sys.stderr.isatty() if flag is None else flag


def resume_option(help: str = "Skip ids already in --output (or its .partial).") -> Decorator:
    return click.option("--resume", is_flag=True, help=help)


def constrained_option() -> Decorator:
    return click.option("--constrained/--no-constrained", default=None,
                        help="Decode under the schema/text constraint (answers always parse, "
                             "names only from the schema, mentions copied from the text) "
                             "[default: on where the engine supports it: hf, llamacpp, openvino, servers "
                             "(response_format)].")


def keep_punctuation_option() -> Decorator:
    return click.option("--keep-punctuation", is_flag=True,
                        help="Keep punctuation a model copies at a mention's end ('Syria.'); by "
                             "default a clause/sentence-final mark is left out of the span.")

MODEL_OPTIONS = [
    click.option("--model", help="Local model dir, GGUF file or hub id; 'default' = the default "
                 "base without adapter [default: default base + IE adapter]."),
    click.option("--lora", help="LoRA adapter to apply on --model: a PEFT dir (or a LoRA .gguf "
                 "with --engine llamacpp)."),
    click.option("--engine", type=click.Choice(["auto", "hf", "llamacpp", "openvino"]),
                 default="auto",
                 help="Local engine: llamacpp (llama.cpp, fast on CPU; GGUF models), hf "
                 "(transformers), openvino (OpenVINO GenAI on CPU; model dirs, exported on "
                 "first use); auto = llamacpp for GGUF models when "
                 "installed, else hf."),
    click.option("--threads", type=click.IntRange(min=1),
                 help="CPU threads of the local engine [default: all CPUs this process may use]."),
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

MODEL_KEYS = ("model", "lora", "engine", "threads", "base_url", "api_model", "api_key_env", "endpoint",
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
    engine = options["engine"]
    if engine == "auto":
        from deepke_llm.backends.registry import auto_engine

        engine = auto_engine(options["model"], None)
    if engine == "llamacpp":
        return load_backend(model=options["model"], lora=options["lora"], backend=engine,
                            chat_template=template, threads=options["threads"],
                            parallel=batch_size)
    if engine == "openvino":
        return load_backend(model=options["model"], lora=options["lora"], backend=engine,
                            chat_template=template, threads=options["threads"])
    if options["threads"]:
        import torch

        torch.set_num_threads(options["threads"])
    return load_backend(model=options["model"], lora=options["lora"], chat_template=template,
                        backend=engine, dtype=options["dtype"], device_map=options["device_map"],
                        load_in_4bit=options["load_in_4bit"] or None,
                        load_in_8bit=options["load_in_8bit"] or None,
                        trust_remote_code=options["trust_remote_code"] or None)
