"""Documents + schema -> IEPile-format instruction lines (training and test), and back.

One line per (document, task, schema chunk). Training lines carry ``output`` (the gold answer in
the prompt style's format); test lines carry ``label`` (gold in IEPile's list form, as a JSON
string, exactly as IEPile writes it) so IEPile's evaluator and ours read the same file.

Negative schema sampling follows IEPile: every type present in the document is asked; each absent
type joins with probability ``neg_ratio`` (1 = ask the whole schema), at least one when the
document has no positives. Sampling is seeded per document id, so a line never depends on which
other documents are in the file or how it is sharded.

Hard negatives (``hard_negatives=True``, training lines only) aim at the relation errors a small
model makes (issue 15): a relation whose head and tail are the same span is left out of the gold
(reported: training on it teaches self-relations); absent relation types whose head and tail entity
types both occur in the document are always asked, whatever ``neg_ratio`` (so "live in" next to a
person and a place is seen answered with nothing); and each document with an asymmetric relation
gets a counterfactual twin (id ``{id}#swap``, relation lines only) where the names of that
relation's head and tail trade places in the text, so the relation now runs the other way: the
answer's direction has to be read from the sentence, not from which name is which.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from deepke_llm.problems import ErrorCallback
from deepke_llm.prompts.styles import get_style, split_schema
from deepke_llm.records import Document
from deepke_llm.schema import Schema, load_schema
from deepke_llm.tasks import get_task, task_names
from deepke_llm.tasks.base import Task

__all__ = ["documents_to_instructions", "hard_negative_documents", "schema_tasks",
           "swapped_direction"]


def schema_tasks(schema: Schema) -> list[str]:
    """Tasks a schema defines types for, in registry order (ner, re, ee)."""
    return [task for task in task_names() if schema.defines(task)]


def _positive_types(task: Task, document: Document) -> set[str]:
    return {record.type for record in task.records(document)}


def _sample_types(names: Sequence[str], positives: set[str], neg_ratio: float,
                  rng: random.Random, shuffle: bool, always: frozenset[str] = frozenset()
                  ) -> list[str]:
    negatives = [n for n in names if n not in positives]
    if neg_ratio < 1:
        # the draw happens for every type, so `always` does not change the other types' draws
        chosen = [n for n in negatives if rng.random() < neg_ratio or n in always]
        if not positives and not chosen and negatives:
            chosen = [rng.choice(negatives)]
        negatives = chosen
    keep = set(negatives) | positives
    ordered = [n for n in names if n in keep]  # schema order unless asked to shuffle
    if shuffle:
        rng.shuffle(ordered)
    return ordered


def _check_options(split: str, neg_ratio: float, hard_negatives: bool) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split '{split}': use train or test")
    if not 0 <= neg_ratio <= 1:
        raise ValueError(f"neg_ratio must be within [0, 1], got {neg_ratio}")
    if split == "test" and neg_ratio < 1:
        # a test line's label holds all gold: asking part of the schema would cap recall
        raise ValueError("test lines ask the whole schema: use neg_ratio 1 with split test")
    if split == "test" and hard_negatives:
        raise ValueError("hard negatives change the gold: they are for training lines only")


def documents_to_instructions(documents: Iterable[Document], schema: str | Schema,
                              tasks: Sequence[str] | str | None = None, *,
                              split: str = "train", language: str | None = None,
                              split_num: int | None = None, neg_ratio: float = 1.0,
                              seed: int = 42, shuffle_schema: bool = False,
                              prompt_style: str = "iepile", source: str | None = None,
                              on_error: ErrorCallback | None = None,
                              hard_negatives: bool = False) -> Iterator[dict[str, Any]]:
    """Yield IEPile lines ``{"id", "task", "source", "instruction", "output"|"label"}``.

    ``tasks`` defaults to every task the schema defines. ``split="test"`` writes ``label`` instead
    of ``output``. Records whose type the schema does not know are reported to ``on_error``.
    With ``prompt_style="knowlm"`` lines are Alpaca records (``instruction``/``input``/``output``)
    in the ZhiXi format. ``hard_negatives`` adds the relation hard negatives of the module doc.
    """
    schema = load_schema(schema)
    _check_options(split, neg_ratio, hard_negatives)
    if hard_negatives:
        documents = hard_negative_documents(documents, schema, on_error)
    task_names = [tasks] if isinstance(tasks, str) else list(tasks or schema_tasks(schema))
    task_objs = [get_task(t) for t in task_names]
    style = get_style(prompt_style)
    source = source or schema.name
    for document in documents:
        lang = language or document.language or schema.language
        for task in task_objs:
            if task.name != "re" and "swapped_from" in document.meta:
                continue  # a twin is about relation direction: its other lines say nothing new
            names = [t.name for t in schema.types_for(task.name)]
            unknown = sorted({r.type for r in task.records(document)} - set(names))
            if unknown and on_error is not None:
                on_error(f"document '{document.id}': {task.name} type(s) "
                           f"{', '.join(map(repr, unknown))} not in schema '{schema.name}' (their "
                           f"records are left out; convert the data with --schema {schema.name} "
                           "so dataset labels become schema names)")
            rng = random.Random(f"{seed}\x00{document.id}\x00{task.name}")
            always = _typed_absent(schema, document) if hard_negatives and task.name == "re" \
                else frozenset()
            asked = _sample_types(names, _positive_types(task, document), neg_ratio, rng,
                                  shuffle_schema, always)
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


def _typed_absent(schema: Schema, document: Document) -> frozenset[str]:
    """Relation types whose head and tail entity types both occur in the document (types
    without head/tail types in the schema never qualify: nothing says they are tempting)."""
    present = {e.type for e in document.entities}
    present |= {end.type for r in document.relations for end in (r.head, r.tail)}
    return frozenset(t.name for t in schema.relation_types
                     if present & set(t.head_types) and present & set(t.tail_types))


def hard_negative_documents(documents: Iterable[Document], schema: Schema,
                            on_error: ErrorCallback | None = None) -> Iterator[Document]:
    """Each document without self-relations (reported), then its direction counterfactual
    (:func:`swapped_direction`) when one can be made."""
    for document in documents:
        kept = tuple(r for r in document.relations if not _self_relation(r))
        if len(kept) != len(document.relations):
            if on_error is not None:
                on_error(f"document '{document.id}': {len(document.relations) - len(kept)} "
                         f"relation(s) with the same span as head and tail left out")
            document = replace(document, relations=kept)
        yield document
        twin = swapped_direction(document, schema)
        if twin is not None:
            yield twin


def _self_relation(relation: Any) -> bool:
    head, tail = relation.head, relation.tail
    if head.start is None or tail.start is None:
        return head.text == tail.text
    return (head.start, head.end) == (tail.start, tail.end)


def swapped_direction(document: Document, schema: Schema) -> Document | None:
    """``document`` with the names of its first swappable relation's head and tail exchanged
    in the text and every record moved with its text, or None when no relation qualifies.

    A relation qualifies when its type is not symmetric, both ends are grounded, of one entity
    type (a person and a company trading places would make nonsense), do not overlap, differ,
    each name occurs once in the text, and no other record straddles either name.
    """
    symmetric = {t.name for t in schema.relation_types if t.symmetric}
    for relation in document.relations:
        head, tail = relation.head, relation.tail
        if relation.type in symmetric or head.start is None or tail.start is None \
                or head.type != tail.type or head.text == tail.text or head.end > tail.start and tail.end > head.start \
                or document.text.count(head.text) != 1 or document.text.count(tail.text) != 1:
            continue
        twin = _swap(document, *sorted([(head.start, head.end), (tail.start, tail.end)]))
        if twin is not None:
            return twin
    return None


def _swap(document: Document, first: tuple[int, int], second: tuple[int, int]
          ) -> Document | None:
    (s1, e1), (s2, e2) = first, second
    text = document.text
    new_text = text[:s1] + text[s2:e2] + text[e1:s2] + text[s1:e1] + text[e2:]
    shift = (e2 - s2) - (e1 - s1)
    slots = {first: (s1, s1 + e2 - s2), second: (s2 + shift, e2)}

    def move(item: Any) -> Any:
        if item.start is None:
            return item
        span = (item.start, item.end)
        if span in slots:
            start, end = slots[span]
        elif item.end <= s1 or item.start >= e2:
            start, end = span
        elif item.start >= e1 and item.end <= s2:
            start, end = item.start + shift, item.end + shift
        else:
            raise _Straddles
        return replace(item, text=new_text[start:end], start=start, end=end)

    try:
        return Document(
            id=f"{document.id}#swap", text=new_text, language=document.language,
            entities=tuple(move(e) for e in document.entities),
            relations=tuple(replace(r, head=move(r.head), tail=move(r.tail))
                            for r in document.relations),
            events=tuple(replace(e, trigger=move(e.trigger),
                                 arguments=tuple(move(a) for a in e.arguments))
                         for e in document.events),
            meta={"swapped_from": document.id})
    except _Straddles:
        return None


class _Straddles(Exception):
    """A record overlaps a swapped name without being it: the twin cannot be made."""
