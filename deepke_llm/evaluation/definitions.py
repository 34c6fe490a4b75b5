"""Benchmark definitions: which dataset file, reader, schema, task and scoring modes a benchmark is.

A definition is a small JSON file (bundled ones live in ``benchmarks/definitions/``, shipped as
``deepke_llm/benchmark_defs``)::

    {"name": "conll03", "task": "ner", "format": "conll03", "schema": "conll03", "language": "en",
     "splits": {"test": "conll2003/eng.testb"}, "modes": ["strict", "boundary", "string"],
     "reader_options": {"unit": "sentence"}}

validated against ``benchmark.schema.json`` (beside the bundled definitions; an error is one
line naming the file and the field), optionally with ``description``, ``default_split`` (when
``test`` has no public labels), ``data_note`` (how to obtain data that cannot be shipped) and
``trim_punctuation: false`` where the gold spans keep punctuation glued to a word (CoNLL04's
"Texas." at a sentence end), so that grounding keeps what the model copied instead of trimming
it. A split path is used as is when absolute; otherwise it is relative to the data dir:
``--data-dir``, else ``$DEEPKE_DATA``, else ``../shared/data`` next to the source checkout when
present.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .spans import MODES

__all__ = ["BenchmarkDefinition", "BenchmarkError", "benchmark_schema", "bundled_benchmarks",
           "load_benchmark", "resolve_data_path"]

SCHEMA_FILE = "benchmark.schema.json"


class BenchmarkError(ValueError):
    """A benchmark that cannot be run as asked; the message is one line."""


@dataclass(frozen=True)
class BenchmarkDefinition:
    """One benchmark: dataset format and files per split, schema, task and scoring modes."""

    name: str
    task: str
    format: str
    schema: str
    splits: dict[str, str]
    language: str | None = None
    modes: tuple[str, ...] = MODES
    reader_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    default_split: str = "test"
    data_note: str = ""
    trim_punctuation: bool = True  # false where gold spans keep glued punctuation ("Texas.")
    source: str = ""

    @classmethod
    def from_dict(cls, data: Any, source: str) -> BenchmarkDefinition:
        """Validate a parsed definition against ``benchmark.schema.json``; unknown keys are
        ignored with a warning."""
        import jsonschema

        validator = jsonschema.Draft202012Validator(benchmark_schema())
        error = jsonschema.exceptions.best_match(validator.iter_errors(data))
        if error is not None:
            raise BenchmarkError(f"{source}: {error.json_path}: {error.message}")
        unknown = sorted(set(data) - set(benchmark_schema()["properties"]))
        if unknown:
            warnings.warn(f"{source}: ignoring unknown field(s) {', '.join(unknown)}", stacklevel=2)
        splits = data["splits"]
        # a value that must be one of another field's keys: beyond what JSON Schema can say
        default_split = data.get("default_split", "test" if "test" in splits else next(iter(splits)))
        if default_split not in splits:
            raise BenchmarkError(f"{source}: $.default_split: '{default_split}' is not one of "
                                 f"the splits ({', '.join(splits)})")
        return cls(name=data["name"], task=data["task"], format=data["format"],
                   schema=data["schema"], splits=dict(splits), language=data.get("language"),
                   modes=tuple(data.get("modes", MODES)),
                   reader_options=dict(data.get("reader_options", {})),
                   description=data.get("description", ""), default_split=default_split,
                   data_note=data.get("data_note", ""),
                   trim_punctuation=data.get("trim_punctuation", True), source=source)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "description": self.description, "task": self.task,
               "format": self.format, "schema": self.schema, "language": self.language,
               "splits": self.splits, "default_split": self.default_split,
               "modes": list(self.modes), "reader_options": self.reader_options}
        if self.data_note:
            out["data_note"] = self.data_note
        if not self.trim_punctuation:
            out["trim_punctuation"] = False
        return out


def _definitions_dir():
    return resources.files("deepke_llm").joinpath("benchmark_defs")


@functools.cache
def benchmark_schema() -> dict[str, Any]:
    """The JSON Schema of a definition (``benchmark.schema.json`` beside the bundled ones)."""
    return json.loads(_definitions_dir().joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


def bundled_benchmarks() -> list[str]:
    """Names of the benchmark definitions shipped with the package."""
    return sorted(p.name[:-5] for p in _definitions_dir().iterdir()
                  if p.name.endswith(".json") and p.name != SCHEMA_FILE)


def load_benchmark(name_or_path: str | Path) -> BenchmarkDefinition:
    """A bundled benchmark by name (``conll03``) or a definition JSON file by path."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".json" or "/" in text or path.is_file():
        if not path.is_file():
            raise BenchmarkError(f"benchmark definition {text} does not exist")
        source, raw = text, path.read_text(encoding="utf-8")
    else:
        resource = _definitions_dir().joinpath(f"{text}.json")
        if not resource.is_file():
            raise BenchmarkError(f"unknown benchmark '{text}': use a definition file path or one "
                                 f"of {', '.join(bundled_benchmarks())}")
        source, raw = f"benchmark_defs/{text}.json", resource.read_text(encoding="utf-8")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BenchmarkError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return BenchmarkDefinition.from_dict(data, source)


def _checkout_data_dir() -> Path | None:
    # deepke_llm/ sits in the repo root of a source checkout; ../shared/data is its neighbour
    candidate = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def resolve_data_path(definition: BenchmarkDefinition, split: str,
                      data_dir: str | Path | None = None) -> Path:
    """The data file of ``split``: absolute as given, else under the first data dir configured."""
    if split not in definition.splits:
        raise BenchmarkError(f"benchmark '{definition.name}' has no split '{split}': use one of "
                             f"{', '.join(definition.splits)}")
    relative = definition.splits[split]
    note = f"; {definition.data_note}" if definition.data_note else ""
    if Path(relative).is_absolute():
        path, origin = Path(relative), f"given in {definition.source}"
    else:
        bases = ((data_dir, "--data-dir"), (os.environ.get("DEEPKE_DATA"), "DEEPKE_DATA"),
                 (_checkout_data_dir(), "../shared/data"))
        chosen = next(((base, origin) for base, origin in bases if base), None)
        if chosen is None:
            raise BenchmarkError(f"benchmark '{definition.name}': no data dir; pass --data-dir DIR "
                                 f"or set DEEPKE_DATA (DIR must contain {relative}){note}")
        path, origin = Path(chosen[0]) / relative, chosen[1]
    if not path.is_file():
        raise BenchmarkError(f"benchmark '{definition.name}' split '{split}': data file {path} "
                             f"not found (data dir from {origin}){note}")
    return path
