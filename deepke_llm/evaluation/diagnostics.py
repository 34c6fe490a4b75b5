"""Problems found while scoring: counted, explained in one line each, never fatal.

They go to :class:`Diagnostics`, the one error sink (:class:`deepke_llm.problems.Problems`) with
the scoring kinds below: unreadable input lines and reader problems as much as what a model's
outputs got wrong, since a report states both side by side.

Gold and predicted documents are paired by id. A gold document without a prediction scores all
its gold records as missed; a prediction whose id is not in the gold file is reported and left
out; a repeated id keeps its first document. Records are checked for offsets outside the text,
offsets that do not cover the mention, missing offsets and types unknown to the schema (or,
without a schema, predicted types the gold never uses).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from deepke_llm.problems import ErrorCallback, Problems
from deepke_llm.records import Document
from deepke_llm.tasks import get_task

__all__ = ["Diagnostics", "check_document", "known_types", "pair_documents", "used_types"]

#: kind -> what it means, in the words a summary line uses
KINDS: dict[str, str] = {
    "unreadable_line": "lines that could not be read (skipped)",
    "dataset_problem": "problems the dataset reader reported (see its messages)",
    "duplicate_id": "repeated document ids (first document kept)",
    "missing_prediction": "gold documents without a prediction (their gold records count as missed)",
    "extra_prediction": "predicted documents whose id is not in the gold file (not scored)",
    "text_mismatch": "predicted documents whose text differs from the gold text",
    "offsets_outside_text": "records whose offsets fall outside the text",
    "offsets_mismatch": "records whose text[start:end] differs from their mention text",
    "ungrounded_prediction": "predicted mentions without offsets (false positives in strict/boundary)",
    "ungrounded_gold": "gold mentions without offsets (never matched in strict/boundary)",
    "unknown_type": "types or roles unknown to the schema",
    "duplicate_record": "records repeated within a document (counted once)",
    "prediction_errors": "predicted documents carrying extraction errors",
    "unparseable_output": "model outputs that are not JSON objects (their lines predict nothing)",
    "skipped_item": "output items of the wrong shape (dropped)",
    "incomplete_item": "output items without a subject, object or trigger (scored with an empty "
                       "string, as IEPile does)",
    "nan_dropped": "\"NAN\" placeholders dropped from predictions",
    "merged_lines": "IEPile lines merged into one record by id",
    "conflicting_label": "IEPile lines of one record carrying different labels (first label used)",
    "repeated_instruction": "IEPile lines repeating an identical instruction under one id "
                            "(scored as separate records)",
    "other_task": "IEPile lines of another task than --task (skipped)",
}

MAX_EXAMPLES = 5


class Diagnostics(Problems):
    """The scoring run's error sink: a :class:`~deepke_llm.problems.Problems` (counts by kind, the
    first few messages of each) whose kinds are the ones in :data:`KINDS`, read back in the
    report's words. A sink given where a list of messages is expected (``append``) counts them as
    ``unreadable_line``."""

    def __init__(self, on_error: ErrorCallback | None = None) -> None:
        super().__init__(on_error, keep=0, per_kind=MAX_EXAMPLES, default_kind="unreadable_line")

    def lines(self, examples: int = 3) -> list[str]:
        """One summary line per kind: ``what: N (e.g. first message; ...)``."""
        out = []
        for kind in KINDS:
            if self.counts.get(kind):
                shown = "; ".join(self.examples.get(kind, [])[:examples])
                out.append(f"{KINDS[kind]}: {self.counts[kind]} (e.g. {shown})")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report's layout: ``{kind: {"count", "examples"}}`` in :data:`KINDS` order."""
        return {kind: {"count": self.counts[kind], "examples": self.examples.get(kind, [])}
                for kind in KINDS if self.counts.get(kind)}


def _unique_by_id(documents: Iterable[Document], name: str, diagnostics: Diagnostics
                  ) -> dict[str, Document]:
    out: dict[str, Document] = {}
    for document in documents:
        if document.id in out:
            diagnostics.add("duplicate_id", f"{name}: id '{document.id}' repeats")
            continue
        out[document.id] = document
    return out


def pair_documents(gold: Iterable[Document], pred: Iterable[Document], diagnostics: Diagnostics,
                   gold_name: str = "gold", pred_name: str = "pred"
                   ) -> Iterator[tuple[Document, Document | None]]:
    """``(gold, prediction or None)`` in gold order; problems go to ``diagnostics``."""
    gold_by_id = _unique_by_id(gold, gold_name, diagnostics)
    pred_by_id = _unique_by_id(pred, pred_name, diagnostics)
    for doc_id in pred_by_id.keys() - gold_by_id.keys():
        diagnostics.add("extra_prediction", f"{pred_name}: id '{doc_id}' is not in {gold_name}")
    for doc_id, document in gold_by_id.items():
        predicted = pred_by_id.get(doc_id)
        if predicted is None:
            diagnostics.add("missing_prediction", f"{pred_name}: no document with id '{doc_id}'")
        elif predicted.text != document.text:
            diagnostics.add("text_mismatch", f"{pred_name}: document '{doc_id}' has another text "
                            "than the gold document (offsets are compared as they are)")
        yield document, predicted


def _mentions(task: str, document: Document) -> Iterator[tuple[str, Any]]:
    """(field path, mention) for every span-bearing part of the task's records."""
    spec = get_task(task)
    for i, record in enumerate(spec.records(document)):
        for suffix, mention in spec.named_mentions(record):
            yield f"{spec.record_field}[{i}]{suffix}", mention


def used_types(task: str, document: Document) -> Iterator[tuple[str, str, str]]:
    """(field path, kind, type name) of every type a task's records use."""
    spec = get_task(task)
    for i, record in enumerate(spec.records(document)):
        for suffix, kind, name in spec.used_types(record):
            yield f"{spec.record_field}[{i}]{suffix}", kind, name


def known_types(task: str, schema: Any) -> set[str]:
    """Type names a schema defines for ``task`` (EE roles as ``event\\x00role``)."""
    return get_task(task).known_types(schema)


def check_document(task: str, document: Document, side: str, name: str,
                   diagnostics: Diagnostics, known: set[str] | None = None) -> None:
    """Report offset, grounding, type and duplicate problems of one document's records."""
    length = len(document.text)
    where = f"{name}: document '{document.id}'"
    for path, mention in _mentions(task, document):
        if mention.start is None:
            diagnostics.add("ungrounded_prediction" if side == "pred" else "ungrounded_gold",
                            f"{where} {path}: '{mention.text}' has no offsets")
        elif mention.end > length:
            diagnostics.add("offsets_outside_text",
                            f"{where} {path}: offsets [{mention.start}, {mention.end}) are outside "
                            f"the text (length {length})")
        elif document.text[mention.start:mention.end] != mention.text:
            diagnostics.add("offsets_mismatch",
                            f"{where} {path}: text[{mention.start}:{mention.end}] is "
                            f"'{document.text[mention.start:mention.end]}', not '{mention.text}'")
    if known is not None:
        for path, kind, value in used_types(task, document):
            if value not in known:
                shown = value.split("\x00")[-1]
                diagnostics.add("unknown_type", f"{where} {path}: {kind} '{shown}' is unknown")
    records = get_task(task).records(document)
    repeats = len(records) - len(set(records))
    if repeats:
        diagnostics.add("duplicate_record", f"{where}: {repeats} repeated record(s)", repeats)
    if side == "pred" and document.errors:
        diagnostics.add("prediction_errors", f"{where}: {document.errors[0]}")
