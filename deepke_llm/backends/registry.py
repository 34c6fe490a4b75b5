"""Backend registry and :func:`load_backend`, the one place CLI options become a backend.

``hf`` (local transformers model, optional LoRA), ``llamacpp`` (a GGUF model on llama.cpp, the
fast CPU engine) and ``openai`` (any OpenAI-compatible server) are built in; a user adds a backend with ``@register_backend("name")`` on a factory taking the
same keyword arguments as :func:`load_backend`. Backend modules import lazily, so listing or
picking a backend does not load torch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

from deepke_llm.backends.base import Backend

__all__ = ["auto_engine", "backend_names", "default_gguf_path", "default_model_path", "load_backend",
           "register_backend"]

BackendFactory = Callable[..., Backend]
_BACKENDS: dict[str, BackendFactory] = {}

NO_MODEL = ("no model given and no default model installed: pass --model DIR|HUB_ID or "
            "--base-url URL --api-model NAME, or pip install 'deepke-llm[default-model]'")


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Register a backend factory under ``name`` (a second registration of a name is an error)."""

    def decorate(factory: BackendFactory) -> BackendFactory:
        if name in _BACKENDS:
            raise ValueError(f"backend '{name}' is already registered")
        _BACKENDS[name] = factory
        return factory

    return decorate


def backend_names() -> list[str]:
    """Names accepted by ``load_backend(backend=...)``."""
    return sorted(_BACKENDS)


def default_model_path() -> str | None:
    """The model used when neither --model nor --base-url is given: the converted Gemma 3 270M
    of ``deepke-llm[default-model]`` (built on first use), or None when it is not installed."""
    from deepke_llm.default_model import default_model_path as path

    return path()


def default_gguf_path() -> str | None:
    """The default model's GGUF (what llama.cpp runs), assembled on first use, or None when
    ``deepke-llm[default-model]`` is not installed."""
    from deepke_llm.default_model import DefaultModelError, ensure_default_gguf

    try:
        return str(ensure_default_gguf())
    except DefaultModelError as exc:
        if "not installed" in str(exc):
            return None
        raise


def load_backend(model: str | None = None, lora: str | None = None, base_url: str | None = None,
                 api_model: str | None = None, backend: str | None = None,
                 **kwargs: Any) -> Backend:
    """Build a backend: ``openai`` when ``base_url`` is given, else a local engine on ``model``
    (``backend`` names it; None or ``auto`` picks one, see :func:`auto_engine`).

    ``kwargs`` go to the backend's constructor (e.g. ``dtype``, ``chat_template``,
    ``max_concurrency``); keys whose value is None are dropped so CLI defaults pass through.
    """
    name = backend if backend not in (None, "auto") else auto_engine(model, base_url)
    try:
        factory = _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend '{name}': use one of "
                         f"{', '.join(backend_names())}") from None
    options = {k: v for k, v in kwargs.items() if v is not None}
    return factory(model=model, lora=lora, base_url=base_url, api_model=api_model, **options)


def auto_engine(model: str | None, base_url: str | None) -> str:
    """``openai`` for a server; llama.cpp when it is installed and the model is a GGUF (the
    default model is one); transformers otherwise."""
    if base_url:
        return "openai"
    gguf = model is None or model == "default" or str(model).endswith(".gguf")
    return "llamacpp" if gguf and importlib.util.find_spec("llama_cpp") is not None else "hf"


@register_backend("hf")
def _hf_backend(model: str | None, lora: str | None, base_url: str | None,
                api_model: str | None, **kwargs: Any) -> Backend:
    from deepke_llm.backends.hf import HFBackend

    if model == "default":  # the base model alone, e.g. for few-shot baselines
        model = default_model_path()
        if model is None:
            raise ValueError(NO_MODEL)
    elif model is None:
        from deepke_llm.default_model import default_adapter_path

        model = default_model_path()
        if model is None:
            raise ValueError(NO_MODEL)
        # the default model comes with the IE adapter trained for it, unless told otherwise
        if lora is None and not kwargs.pop("no_default_adapter", False):
            lora = default_adapter_path()
    kwargs.pop("no_default_adapter", None)
    return HFBackend(model, lora=lora, **kwargs)


# transformers settings the other local engines do not take (they run their own model files)
_TRANSFORMERS_ONLY = ("dtype", "device_map", "load_in_8bit", "load_in_4bit", "trust_remote_code",
                      "revision", "gguf_file", "merge_lora", "prefix_cache")


def _local_model(model: str | None, lora: str | None, kwargs: dict[str, Any],
                 default_path: Callable[[], str | None],
                 unused: Sequence[str]) -> tuple[str, str | None]:
    """(model, lora) for a local engine: ``unused`` settings dropped from ``kwargs``; no model
    or ``"default"`` is ``default_path()`` (no model also brings the shipped IE adapter)."""
    no_adapter = kwargs.pop("no_default_adapter", False)
    for name in unused:
        kwargs.pop(name, None)
    if model in (None, "default"):
        from deepke_llm.default_model import default_adapter_path

        path = default_path()
        if path is None:
            raise ValueError(NO_MODEL)
        if model is None and lora is None and not no_adapter:
            lora = default_adapter_path()
        model = path
    return model, lora


@register_backend("openvino")
def _openvino_backend(model: str | None, lora: str | None, base_url: str | None,
                      api_model: str | None, **kwargs: Any) -> Backend:
    from deepke_llm.backends.openvino import OpenVinoBackend

    # a transformers model dir, exported to OpenVINO's IR on first use
    model, lora = _local_model(model, lora, kwargs, default_model_path,
                               (*_TRANSFORMERS_ONLY, "parallel"))
    return OpenVinoBackend(model, lora=lora, **kwargs)


@register_backend("llamacpp")
def _llamacpp_backend(model: str | None, lora: str | None, base_url: str | None,
                      api_model: str | None, **kwargs: Any) -> Backend:
    from deepke_llm.backends.llamacpp import LlamaCppBackend

    model, lora = _local_model(model, lora, kwargs, default_gguf_path, _TRANSFORMERS_ONLY)
    return LlamaCppBackend(model, lora=lora, **kwargs)


@register_backend("openai")
def _openai_backend(model: str | None, lora: str | None, base_url: str | None,
                    api_model: str | None, **kwargs: Any) -> Backend:
    from deepke_llm.backends.openai import OpenAIBackend

    if base_url is None:
        raise ValueError(NO_MODEL)
    if lora is not None:
        raise ValueError("--lora applies to local models only; with --base-url, load the adapter "
                         "on the server and pass its served name as --api-model")
    # A server serves a model under the name it was started with; --model is accepted as that name.
    name = api_model or model
    if name is None:
        raise ValueError("--base-url needs --api-model NAME (the model name the server serves)")
    return OpenAIBackend(base_url, name, **kwargs)
