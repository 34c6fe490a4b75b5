"""Score IEPile-format test files (lines with ``label`` and the model's ``output``) by IEPile's rule.

This reproduces ``ie2instruction/eval_func.py`` of zjunlp/IEPile (and DeepKE's copy):

* lines sharing ``source`` + ``id`` are one record: every line's output is parsed on its own and
  the tuples are concatenated; the gold is the ``label`` of the record's first line;
* tuples: NER ``(entity, type)``, RE ``(head, relation, tail)``, EE events ``(type, trigger)``
  and arguments ``(type, argument, role)`` — the trigger is not part of the argument tuple;
* ``match="normal"`` matches multisets (a duplicated prediction is a false positive, a
  duplicated gold tuple needs two predictions); ``match="set"`` de-duplicates both sides first;
* an output that is not a JSON object predicts nothing for its line (its gold counts as missed)
  and is counted, like IEPile's ``错误数``; items of the wrong shape are dropped.

Its silent failures are fixed, and every fix is counted in the diagnostics:

* RE outputs may use ``head``/``tail`` as well as ``subject``/``object`` (IEPile reads only the
  latter and scores ``head``/``tail`` outputs as empty strings); labels may use either too;
* EE ``arguments`` that are not an object (IEPile crashes) keep the event without arguments;
  non-string argument values are dropped instead of compared;
* ``"NAN"`` placeholders are dropped from NER and RE outputs too (IEPile drops them only from EE
  arguments), and an EE trigger ``"NAN"`` reads as the empty trigger IEPile's labels use;
* ids may be numbers; records are keyed by ``(source, id)`` instead of the concatenated string;
* lines repeating an identical instruction under one id (IEPile gives records with identical text
  the same id) start a new record with its own label instead of inflating the first one;
* a line without ``output`` or with an unreadable ``label`` is reported instead of crashing.

Scores are exact fractions (``to_dict``); IEPile's own rounded percentages are in
``TaskScore.extra["iepile"]`` for comparison with published tables.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from deepke_llm.io import read_jsonl
from deepke_llm.tasks import get_task

from .diagnostics import Diagnostics
from .scoring import TaskScore, new_task_score

__all__ = ["score_iepile"]

NAN = "NAN"


@dataclass
class _Record:
    gold: list[tuple]
    label: Any
    pred: list[tuple] = field(default_factory=list)
    lines: int = 0


def _is_nothing(value: Any) -> bool:
    return value is None or value == [] or (isinstance(value, str) and value.strip() in ("", NAN))


class _Reader:
    """Turns outputs and labels into IEPile tuples (the task's ``iepile_tuples`` /
    ``iepile_label_tuple``), reporting what IEPile would drop silently."""

    def __init__(self, task: str, diagnostics: Diagnostics) -> None:
        self.task = get_task(task)
        self.diag = diagnostics

    def output_tuples(self, output: Any, where: str) -> list[tuple] | None:
        """Tuples of one output; None when it is not a JSON object (IEPile's error count)."""
        value = output
        if isinstance(output, str):
            try:
                value = json.loads(output)
            except json.JSONDecodeError:
                value = None
        if not isinstance(value, dict):
            shown = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
            self.diag.add("unparseable_output", f"{where}: output {shown[:60]!r} is not a JSON object")
            return None
        tuples: list[tuple] = []
        for key, values in value.items():
            if not isinstance(values, list):
                if not _is_nothing(values):
                    self.diag.add("skipped_item", f"{where}: '{key}' holds "
                                  f"{type(values).__name__}, not a list")
                continue
            for item in values:
                tuples.extend(self.task.iepile_tuples(key, item, where, self.diag.add))
        return tuples

    def label_tuples(self, label: Any, where: str) -> list[tuple]:
        tuples = []
        for item in label:
            if not isinstance(item, dict):
                self.diag.add("skipped_item", f"{where}: label item {str(item)[:40]!r} is not an object")
                continue
            tuples.append(self.task.iepile_label_tuple(item))
        return tuples


def _parse_label(value: Any) -> Any:
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list):
        raise ValueError("expected a JSON list")
    return value


def read_iepile(path: str, task: str, diagnostics: Diagnostics) -> list[_Record]:
    """Records of an IEPile test file, lines merged by ``(source, id)`` as IEPile merges them."""
    reader = _Reader(task, diagnostics)
    wanted = reader.task.iepile_name
    records: dict[tuple, _Record] = {}
    occurrences: dict[tuple[str, str], Counter] = {}
    skipped: set[tuple] = set()
    errors: list[str] = []
    for number, data in read_jsonl(path, errors.append):
        where = f"{path}:{number}"
        if not isinstance(data, dict) or data.get("id") is None:
            diagnostics.add("unreadable_line", f"{where}: expected an object with an 'id'")
            continue
        group = (str(data.get("source", "None")), str(data["id"]))
        line_task = str(data.get("task", wanted)).upper()
        if line_task != wanted:
            # files from `instruct` hold several tasks under one id: score only --task's lines
            diagnostics.add("other_task", f"{where}: task '{data['task']}' skipped (scoring {task})")
            continue
        instruction = data.get("instruction")
        seen = occurrences.setdefault(group, Counter())
        occurrence = seen[instruction] if isinstance(instruction, str) and instruction else 0
        if isinstance(instruction, str) and instruction:
            seen[instruction] += 1
            if occurrence:
                diagnostics.add("repeated_instruction", f"{where}: id '{group[1]}' repeats an "
                                "identical instruction (a record with the same id)")
        key = (*group, occurrence)
        if key in skipped:
            continue
        record = records.get(key)
        if record is None:
            try:
                label = _parse_label(data.get("label"))
            except (ValueError, TypeError) as exc:
                diagnostics.add("unreadable_line", f"{where}: field 'label' is not a JSON list "
                                f"({exc}); record '{group[1]}' not scored")
                skipped.add(key)
                continue
            record = records[key] = _Record(reader.label_tuples(label, where), label)
        else:
            diagnostics.add("merged_lines", f"{where}: merged into record '{group[1]}'")
            try:
                if _parse_label(data.get("label")) != record.label:
                    diagnostics.add("conflicting_label", f"{where}: label differs from the first "
                                    f"line of record '{group[1]}'")
            except (ValueError, TypeError):
                diagnostics.add("conflicting_label", f"{where}: unreadable label")
        record.lines += 1
        if "output" not in data:
            diagnostics.add("unparseable_output", f"{where}: no 'output' field")
            continue
        tuples = reader.output_tuples(data["output"], where)
        record.pred.extend(tuples or [])
    for message in errors:
        diagnostics.add("unreadable_line", message)
    return list(records.values())


def _iepile_rounded(tp: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """IEPile's percentages: P and R rounded to 2 decimals, F1 computed from the rounded values."""
    p = round(tp / predicted * 100, 2) if predicted else 0.0
    r = round(tp / gold * 100, 2) if gold else 0.0
    f1 = round(2 * p * r / (p + r), 2) if p + r else 0.0
    return p, r, f1


def score_iepile(path: str, task: str, match: str = "normal") -> TaskScore:
    """Score an IEPile-format file in string mode (the only mode strings allow)."""
    if match not in ("normal", "set"):
        raise ValueError(f"unknown match mode '{match}': use normal or set")
    result = new_task_score(task, ["string"], multiset=match == "normal")
    records = read_iepile(path, task, result.diagnostics)
    task_obj = get_task(task)
    for record in records:
        gold, pred = task_obj.iepile_levels(record.gold), task_obj.iepile_levels(record.pred)
        for level, score in result.modes["string"].items():
            score.add_document(gold[level], pred[level])
    result.documents = len(records)
    errors = result.diagnostics.counts.get("unparseable_output", 0)
    iepile: dict[str, Any] = {"总样本数": len(records), "错误数": errors, "match_mode": match}
    for prefix, level in task_obj.iepile_report.items():
        counts = result.modes["string"][level].overall
        p, r, f1 = _iepile_rounded(counts.tp, counts.tp + counts.fp, counts.tp + counts.fn)
        iepile.update({f"{prefix}P": p, f"{prefix}R": r, f"{prefix}F1": f1})
    result.extra["iepile"] = iepile
    return result
