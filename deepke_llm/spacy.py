"""The ``deepke_llm`` spaCy component: the Extractor inside a spaCy pipeline.

Installing deepke-llm registers the factory through spaCy's ``spacy_factories`` entry point::

    nlp = spacy.blank("en")
    nlp.add_pipe("deepke_llm", config={"task": "ner", "schema": "conll03"})
    doc = nlp("Alice Smith works for Acme Corp in Paris.")

What a document gets (all from the one record the Extractor returns):

- NER: ``doc.ents`` (a non-overlapping subset, longest first) and every entity in
  ``doc.spans[spans_key]`` (overlaps included); the component's entities replace ``doc.ents``;
- RE: ``doc._.relations``, a list of ``{"type", "head", "tail", "record"}`` (head/tail are Spans
  labelled with the entity type, None when the model's mention is not in the text);
- EE: ``doc._.events``, a list of ``{"type", "trigger", "arguments": [{"role", "text", "span"}],
  "record"}``; both are rebuilt from the stored record on access, so they survive
  ``Doc.to_bytes`` / ``DocBin`` / ``nlp.pipe(n_process=N)``;
- always ``doc._.deepke_llm[task]``: the record exactly as a line of ``deepke-llm extract``'s
  output (offsets, ungrounded mentions with null offsets, ``errors``, ``raw_output``).

The backend is built on first use, once per component, from the same options as the command line
(:func:`deepke_llm.commands.options.backend_from_options`). ``nlp.pipe(texts, batch_size=N)``
sends each batch of N documents through one ``extract_iter`` call, so the engine batches their
prompts (``batch_size`` in the config: prompts per forward pass / concurrent requests). The
config holds only plain values (paths stay paths), so ``nlp.to_disk`` / ``spacy.load`` restore the
component; the model loads again on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import filter_spans, minibatch

from deepke_llm.records import Document

__all__ = ["DeepkeLLMComponent", "make_deepke_llm"]



def _relations(doc: Doc) -> list[dict[str, Any]]:
    """``doc._.relations``: the RE record's relations with head/tail Spans (None if ungrounded)."""
    record = (doc._.deepke_llm or {}).get("re") or {}
    return [{"type": r["type"], "head": _span(doc, r["head"], r["head"].get("type")),
             "tail": _span(doc, r["tail"], r["tail"].get("type")), "record": r}
            for r in record.get("relations", [])]


def _events(doc: Doc) -> list[dict[str, Any]]:
    """``doc._.events``: the EE record's events with trigger and argument Spans."""
    record = (doc._.deepke_llm or {}).get("ee") or {}
    return [{"type": e["type"], "trigger": _span(doc, e["trigger"], e["type"]),
             "arguments": [{"role": a["role"], "text": a["text"],
                            "span": _span(doc, a, a["role"])} for a in e["arguments"]],
             "record": e}
            for e in record.get("events", [])]


# Only the records (plain JSON) are stored on the Doc; relations and events are Spans rebuilt
# from them on access, so Doc.to_bytes, DocBin and nlp.pipe(n_process=N) carry them (msgpack
# cannot serialise a Span).
if not Doc.has_extension("deepke_llm"):
    Doc.set_extension("deepke_llm", default=None)
for _name, _getter in (("relations", _relations), ("events", _events)):
    if not Doc.has_extension(_name):
        Doc.set_extension(_name, getter=_getter)

DEFAULT_CONFIG: dict[str, Any] = {
    "task": "ner", "schema": "conll03", "model": None, "lora": None, "engine": "auto",
    "base_url": None, "api_model": None, "api_key_env": "OPENAI_API_KEY",
    "prompt_style": "iepile", "language": None, "batch_size": 8, "max_new_tokens": 512,
    "threads": None, "spans_key": "deepke_llm", "use_labels": False,
}


@Language.factory("deepke_llm", default_config=DEFAULT_CONFIG,
                  assigns=["doc.ents", "doc.spans", "doc._.relations", "doc._.events",
                           "doc._.deepke_llm"])
def make_deepke_llm(nlp: Language, name: str, task: str, schema: str, model: str | None,
                    lora: str | None, engine: str, base_url: str | None, api_model: str | None,
                    api_key_env: str, prompt_style: str, language: str | None, batch_size: int,
                    max_new_tokens: int, threads: int | None, spans_key: str,
                    use_labels: bool) -> DeepkeLLMComponent:
    """The spaCy factory (entry point ``spacy_factories: deepke_llm``)."""
    return DeepkeLLMComponent(
        nlp, name, task=task, schema=schema, model=model, lora=lora, engine=engine,
        base_url=base_url, api_model=api_model, api_key_env=api_key_env,
        prompt_style=prompt_style, language=language, batch_size=batch_size,
        max_new_tokens=max_new_tokens, threads=threads, spans_key=spans_key,
        use_labels=use_labels)


class DeepkeLLMComponent:
    """Extraction with any deepke-llm backend as a spaCy pipeline component."""

    def __init__(self, nlp: Language, name: str = "deepke_llm", **config: Any) -> None:
        from deepke_llm.schema import load_schema
        from deepke_llm.tasks import get_task

        unknown = set(config) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"deepke_llm: unknown config keys {sorted(unknown)}: use "
                             f"{', '.join(DEFAULT_CONFIG)}")
        self.name = name
        self.cfg = {**DEFAULT_CONFIG, **config}
        self.lang = nlp.lang
        self.task = get_task(self.cfg["task"]).name  # a bad task or schema fails at add_pipe
        self.schema = load_schema(self.cfg["schema"])
        self.schema.types_for(self.task)
        self._extractor: Any = None

    # ---- the Extractor, built once on first use -----------------------------------------------
    @property
    def extractor(self) -> Any:
        """The component's :class:`~deepke_llm.extractor.Extractor` (loads the model once)."""
        if self._extractor is None:
            from deepke_llm.backends.base import GenerationConfig
            from deepke_llm.extractor import Extractor

            cfg = self.cfg
            backend = _backend(cfg)
            self._extractor = Extractor(
                backend, self.schema, self.task, language=cfg["language"],
                prompt_style=cfg["prompt_style"],
                generation=GenerationConfig(max_new_tokens=cfg["max_new_tokens"],
                                            batch_size=cfg["batch_size"]))
        return self._extractor

    @property
    def backend(self) -> Any:
        """The loaded backend (built on first use)."""
        return self.extractor.backend

    def __getstate__(self) -> dict[str, Any]:
        # multiprocessing pickles components: a loaded model never travels, it loads again
        return {**self.__dict__, "_extractor": None}

    # ---- spaCy's component protocol -----------------------------------------------------------
    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, stream: Iterable[Doc], batch_size: int = 128) -> Iterator[Doc]:
        """Annotate documents; each batch of ``batch_size`` goes through one ``extract_iter``."""
        for docs in minibatch(stream, size=batch_size):
            records = self.extractor.extract_iter(self._inputs(docs))
            for doc, record in zip(docs, records, strict=True):
                if record.failure is not None:
                    raise RuntimeError(f"deepke_llm: the backend did not answer for the text "
                                       f"{doc.text[:40]!r}: {record.failure}")
                self.set_annotations(doc, record)
                yield doc

    def _inputs(self, docs: list[Doc]) -> Iterator[Document]:
        language = self.lang if self.lang in ("en", "zh") else None
        for i, doc in enumerate(docs):
            yield Document(id=f"{self.name}-{i}", text=doc.text, language=language)

    # ---- records -> spaCy annotations ---------------------------------------------------------
    def set_annotations(self, doc: Doc, record: Document) -> None:
        """Write one record onto its Doc (ents/spans, relations, events, the record itself)."""
        found = dict(doc._.deepke_llm or {})
        found[self.task] = record.to_dict()
        doc._.deepke_llm = found
        if self.task == "ner":
            labels = self._labels()
            spans = [s for s in (_span(doc, e.to_dict(), labels.get(e.type, e.type))
                                 for e in record.entities) if s is not None]
            doc.spans[self.cfg["spans_key"]] = spans
            doc.ents = filter_spans(spans)

    def _labels(self) -> dict[str, str]:
        """Entity type -> the label spaCy gets: the type itself, or its dataset label."""
        if not self.cfg["use_labels"]:
            return {}
        return {t.name: t.label for t in self.schema.types_for("ner")}


def _span(doc: Doc, mention: dict[str, Any], label: str | None) -> Span | None:
    """The Span of a grounded mention (a record dict; token-aligned outward), None when it is
    not grounded."""
    start, end = mention.get("start"), mention.get("end")
    if start is None or end is None or start >= end:
        return None
    return doc.char_span(start, end, label=label or "", alignment_mode="expand")


def _backend(cfg: dict[str, Any]) -> Any:
    """A backend for the component's config, built exactly as the command line builds one: the
    config becomes model options, parsed by the commands' own click options (their defaults and
    checks included) and handed to ``backend_from_options``."""
    import click

    from deepke_llm.commands.options import backend_from_options, model_options

    args: list[str] = []
    for key in ("model", "lora", "engine", "base_url", "api_model", "api_key_env", "threads"):
        if cfg[key] is not None:
            args += [f"--{key.replace('_', '-')}", str(cfg[key])]

    @click.command()
    @model_options
    def options(**kwargs: Any) -> None:  # pragma: no cover - only parsed, never run
        pass

    try:
        params = options.make_context("deepke_llm", args).params
    except click.UsageError as exc:
        raise ValueError(f"deepke_llm config: {exc.format_message()}") from None
    return backend_from_options(params, cfg["batch_size"])
