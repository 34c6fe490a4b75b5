"""What a request may ask (pydantic models: the OpenAPI description comes from them), the
server's limits, and the checks that turn a request into an :class:`ExtractionSpec` and
Documents — each refusal one line with the HTTP status it deserves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from deepke_llm.records import Document
from deepke_llm.serve.batching import ExtractionSpec

__all__ = ["ExtractRequest", "Refused", "ServeSettings", "resolve_schema", "spec_for"]


@dataclass
class ServeSettings:
    """The server's knobs (each is the ``deepke-llm serve`` option of the same name)."""

    api_key: str | None = None
    """Clients must send ``Authorization: Bearer KEY`` to /v1/* when set."""
    jobs_dir: str | None = None
    """Where batch jobs keep their files [default: a temp dir]."""
    batch_window_ms: float = 15.0
    max_batch: int = 32
    """Documents gathered into one extraction batch."""
    engine_batch: int = 32
    """Prompts per backend ``generate`` call."""
    max_queue: int = 256
    """Documents admitted and not yet answered; more is answered 429."""
    timeout_s: float = 120.0
    """A request not answered by then gets 504."""
    max_text_chars: int = 20_000
    max_texts: int = 64
    max_body_bytes: int = 4 << 20
    max_upload_bytes: int = 64 << 20
    max_new_tokens_limit: int = 2048
    model_name: str = ""
    """Shown by /version (the model or server the backend runs)."""


class Refused(Exception):
    """A request the server will not run: ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class ExtractOptions(BaseModel):
    """What to extract and how (shared by /v1/extract and /v1/jobs)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    task: str = Field(description="ner, re or ee.", examples=["ner"])
    schema_: str | dict[str, Any] = Field(
        alias="schema", description="A bundled schema name (GET /v1/schemas) or a schema object "
        "(validated by schemas/schema.schema.json).", examples=["conll03"])
    prompt_style: str = Field("iepile", description="iepile (OneKE/IEPile JSON) or knowlm.")
    language: str | None = Field(None, description="en or zh [default: the text's, else the "
                                 "schema's].")
    max_new_tokens: int = Field(512, ge=1, description="Generation limit per prompt.")
    split_num: int | None = Field(None, ge=1, description="Schema types per prompt.")
    keep_punctuation: bool = Field(False, description="Keep a sentence-final mark a model "
                                   "copies at a mention's end.")
    constrained: bool | None = Field(None, description="Decode under the schema/text constraint "
                                     "[default: where the engine applies it].")


class ExtractRequest(ExtractOptions):
    """``{"text": ...}`` or ``{"texts": [...]}`` plus the extraction options."""

    text: str | None = Field(None, description="One text.",
                             examples=["Barack Obama visited Paris."])
    texts: list[str] | None = Field(None, description="Several texts (ids text-1, text-2, ...).")


def resolve_schema(value: str | dict[str, Any]) -> Any:
    """A bundled schema by name or an inline schema object; never a path on the server's disk."""
    from deepke_llm.schema import SchemaError, bundled_schemas, load_schema

    if isinstance(value, str):
        if value not in bundled_schemas():
            raise Refused(422, f"unknown schema '{value}': use one of "
                               f"{', '.join(bundled_schemas())} or an inline schema object")
        return load_schema(value)
    try:
        return load_schema(dict(value))
    except SchemaError as exc:
        raise Refused(422, f"schema: {str(exc).removeprefix('<schema>: ')}") from None
    except RecursionError:
        raise Refused(422, "schema: nested too deeply") from None


def spec_for(options: ExtractOptions, settings: ServeSettings) -> ExtractionSpec:
    """The :class:`ExtractionSpec` of a request, or :class:`Refused` (422) naming the field."""
    from deepke_llm.prompts.styles import style_names
    from deepke_llm.tasks import task_names

    if options.task not in task_names():
        raise Refused(422, f"task: unknown task '{options.task}': use one of "
                           f"{', '.join(task_names())}")
    if options.prompt_style not in style_names():
        raise Refused(422, f"prompt_style: unknown style '{options.prompt_style}': use one of "
                           f"{', '.join(style_names())}")
    if options.language not in (None, "en", "zh"):
        raise Refused(422, f"language: unknown language '{options.language}': use en or zh")
    if options.max_new_tokens > settings.max_new_tokens_limit:
        raise Refused(422, f"max_new_tokens: {options.max_new_tokens} is over this server's "
                           f"limit of {settings.max_new_tokens_limit}")
    schema = resolve_schema(options.schema_)
    if not schema.defines(options.task):
        raise Refused(422, f"schema '{schema.name}' has no types for task '{options.task}'")
    return ExtractionSpec.create(options.task, schema, prompt_style=options.prompt_style,
                                 language=options.language,
                                 max_new_tokens=options.max_new_tokens,
                                 split_num=options.split_num,
                                 keep_punctuation=options.keep_punctuation,
                                 constrained=options.constrained)


def documents_for(request: ExtractRequest, settings: ServeSettings) -> list[Document]:
    """The request's texts as Documents (``text-1``, ``text-2``, ... as ``extract`` names its
    arguments), within the server's limits (413 when over them, 422 when empty)."""
    if (request.text is None) == (request.texts is None):
        raise Refused(422, "give exactly one of 'text' (a string) or 'texts' (a list of strings)")
    texts = [request.text] if request.text is not None else list(request.texts or [])
    if not texts:
        raise Refused(422, "texts: the list is empty")
    if len(texts) > settings.max_texts:
        raise Refused(413, f"texts: {len(texts)} texts is over this server's limit of "
                           f"{settings.max_texts} per request; split the request or use /v1/jobs")
    for i, text in enumerate(texts):
        where = "text" if request.text is not None else f"texts[{i}]"
        if len(text) > settings.max_text_chars:
            raise Refused(413, f"{where}: {len(text)} characters is over this server's limit "
                               f"of {settings.max_text_chars}; use /v1/jobs for long documents")
        if not text.strip():
            raise Refused(422, f"{where}: empty text")
    return [Document(id=f"text-{i}", text=text) for i, text in enumerate(texts, 1)]
