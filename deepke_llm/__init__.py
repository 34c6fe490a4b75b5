"""deepke-llm: schema-guided knowledge extraction (NER, RE, EE) with large language models.

``from deepke_llm import Extractor`` is the Python entry point; heavy modules load lazily so that
``import deepke_llm`` and ``deepke-llm --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Extractor": "deepke_llm.extractor",
    "Document": "deepke_llm.records",
    "Entity": "deepke_llm.records",
    "Relation": "deepke_llm.records",
    "Event": "deepke_llm.records",
    "Argument": "deepke_llm.records",
    "Span": "deepke_llm.records",
    "Schema": "deepke_llm.schema",
    "load_schema": "deepke_llm.schema",
    "load_backend": "deepke_llm.backends.registry",
    "GenerationConfig": "deepke_llm.backends.base",
}

__all__ = ["Argument", "Document", "Entity", "Event", "Extractor", "GenerationConfig", "Relation",
           "Schema", "Span", "__version__", "load_backend", "load_schema"]

if TYPE_CHECKING:  # pragma: no cover
    from deepke_llm.backends.base import GenerationConfig
    from deepke_llm.backends.registry import load_backend
    from deepke_llm.extractor import Extractor
    from deepke_llm.records import Argument, Document, Entity, Event, Relation, Span
    from deepke_llm.schema import Schema, load_schema


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepke_llm' has no attribute {name!r}")
