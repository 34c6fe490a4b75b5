"""Documents + schema -> IEPile-format instruction lines (training and test), and back.

One line per (document, task, schema chunk). Training lines carry ``output`` (the gold answer in
the prompt style's format); test lines carry ``label`` (gold in IEPile's list form, as a JSON
string, exactly as IEPile writes it) so IEPile's evaluator and ours read the same file.

Negative schema sampling follows IEPile: every type present in the document is asked; each absent
type joins with probability ``neg_ratio`` (1 = ask the whole schema), at least one when the
document has no positives. Sampling is seeded per document id, so a line never depends on which
other documents are in the file or how it is sharded.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from deepke_llm.problems import ErrorCallback
from deepke_llm.prompts.styles import get_style, split_schema
from deepke_llm.records import Document
from deepke_llm.schema import Schema, load_schema
from deepke_llm.tasks import get_task, task_names
from deepke_llm.tasks.base import Task

__all__ = ["documents_to_instructions", "schema_tasks"]


def schema_tasks(schema: Schema) -> list[str]:
    """Tasks a schema defines types for, in registry order (ner, re, ee)."""
    return [task for task in task_names() if schema.defines(task)]


def _positive_types(task: Task, document: Document) -> set[str]:
    return {record.type for record in task.records(document)}


def _sample_types(names: Sequence[str], positives: set[str], neg_ratio: float,
                  rng: random.Random, shuffle: bool) -> list[str]:
    negatives = [n for n in names if n not in positives]
    if neg_ratio < 1:
        chosen = [n for n in negatives if rng.random() < neg_ratio]
        if not positives and not chosen and negatives:
            chosen = [rng.choice(negatives)]
        negatives = chosen
    keep = set(negatives) | positives
    ordered = [n for n in names if n in keep]  # schema order unless asked to shuffle
    if shuffle:
        rng.shuffle(ordered)
    return ordered


def documents_to_instructions(documents: Iterable[Document], schema: str | Schema,
                              tasks: Sequence[str] | str | None = None, *,
                              split: str = "train", language: str | None = None,
                              split_num: int | None = None, neg_ratio: float = 1.0,
                              seed: int = 42, shuffle_schema: bool = False,
                              prompt_style: str = "iepile", source: str | None = None,
                              on_error: ErrorCallback | None = None
                              ) -> Iterator[dict[str, Any]]:
    """Yield IEPile lines ``{"id", "task", "source", "instruction", "output"|"label"}``.

    ``tasks`` defaults to every task the schema defines. ``split="test"`` writes ``label`` instead
    of ``output``. Records whose type the schema does not know are reported to ``on_error``.
    With ``prompt_style="knowlm"`` lines are Alpaca records (``instruction``/``input``/``output``)
    in the ZhiXi format.
    """
    schema = load_schema(schema)
    if split not in ("train", "test"):
        raise ValueError(f"unknown split '{split}': use train or test")
    if not 0 <= neg_ratio <= 1:
        raise ValueError(f"neg_ratio must be within [0, 1], got {neg_ratio}")
    if split == "test" and neg_ratio < 1:
        # a test line's label holds all gold: asking part of the schema would cap recall
        raise ValueError("test lines ask the whole schema: use neg_ratio 1 with split test")
    task_names = [tasks] if isinstance(tasks, str) else list(tasks or schema_tasks(schema))
    task_objs = [get_task(t) for t in task_names]
    style = get_style(prompt_style)
    source = source or schema.name
    for document in documents:
        lang = language or document.language or schema.language
        for task in task_objs:
            names = [t.name for t in schema.types_for(task.name)]
            unknown = sorted({r.type for r in task.records(document)} - set(names))
            if unknown and on_error is not None:
                on_error(f"document '{document.id}': {task.name} type(s) "
                           f"{', '.join(map(repr, unknown))} not in schema '{schema.name}' (their "
                           f"records are left out; convert the data with --schema {schema.name} "
                           "so dataset labels become schema names)")
            rng = random.Random(f"{seed}\x00{document.id}\x00{task.name}")
            asked = _sample_types(names, _positive_types(task, document), neg_ratio, rng,
                                  shuffle_schema)
            size = split_num if split_num is not None else task.chunk_size
            for chunk_names in split_schema(asked, size):
                chunk = schema.subset(task.name, chunk_names, ordered=True)
                prompt = style.build(task, chunk, document.text, lang)
                line: dict[str, Any] = {"id": document.id, "task": task.iepile_name,
                                        "source": source, "instruction": prompt.user}
                if prompt.input is not None:
                    line["input"] = prompt.input
                if split == "train":
                    line["output"] = style.target(task, document, chunk, lang)
                else:
                    line["label"] = json.dumps(task.to_label(document, schema, lang), ensure_ascii=False)
                yield line
