"""Generation-based evaluation during SFT: greedy outputs for validation records, scored by exact
match and by extraction F1 with the IEPile evaluator (:func:`deepke_llm.evaluation.iepile_eval.
score_iepile`, string mode, IEPile's multiset matching).

This is the ``builtin`` ``eval_fn``; any ``fn(model, tokenizer, records) -> metrics`` can replace it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepke_llm.tasks import get_task, task_names
from deepke_llm.training.sft.data import SftRecord, encode_prompt, render_record

__all__ = ["generate_outputs", "generation_eval", "label_from_output"]

def generate_outputs(model: Any, tokenizer: Any, records: Sequence[SftRecord],
                     chat_template: str = "auto", max_new_tokens: int = 512,
                     batch_size: int = 8) -> list[str]:
    """Greedy outputs for ``records``' prompts from an in-memory model, prompts encoded exactly
    as in training (and as the HF backend encodes them)."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    outputs = []
    for start in range(0, len(records), batch_size):
        batch = [encode_prompt(tokenizer, render_record(r, tokenizer, chat_template))
                 for r in records[start:start + batch_size]]
        width = max(len(ids) for ids in batch)
        # left padding: every row continues from its own last prompt token
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch],
                            device=device)
        with torch.no_grad():
            generated = model.generate(input_ids=input_ids, attention_mask=mask, do_sample=False,
                                       max_new_tokens=max_new_tokens, use_cache=True,
                                       pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        outputs += tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
    return outputs


def label_from_output(task: str, output: str) -> list[dict[str, Any]]:
    """IEPile's list-form gold (the test files' ``label``) from a training line's output JSON."""
    try:
        value = json.loads(output)
    except json.JSONDecodeError:
        return []
    if not isinstance(value, dict):
        return []
    spec = get_task(task)
    label: list[dict[str, Any]] = []
    for key, items in value.items():
        for item in items if isinstance(items, list) else []:
            entry = spec.iepile_label_item(key, item)
            if entry is not None:
                label.append(entry)
    return label


def _iepile_f1(records: Sequence[SftRecord], predictions: Sequence[str]) -> dict[str, float]:
    from deepke_llm.evaluation.iepile_eval import score_iepile

    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in task_names():
            lines = [{"id": r.id or str(i), "source": "validation", "task": task.upper(),
                      "instruction": r.prompt.user, "output": prediction,
                      "label": r.label if r.label is not None else label_from_output(task, r.output)}
                     for i, (r, prediction) in enumerate(zip(records, predictions, strict=True))
                     if r.task.lower() == task]
            if not lines:
                continue
            path = Path(tmp) / f"{task}.jsonl"
            path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                            encoding="utf-8")
            scores = score_iepile(str(path), task).mode_dict("string")
            for infix, level in get_task(task).headline_levels.items():
                metrics[f"{task}_{infix}f1"] = (scores if level is None else scores[level])["f1"]
    return metrics


def generation_eval(model: Any, tokenizer: Any, records: Sequence[SftRecord],
                    chat_template: str = "auto", max_new_tokens: int = 512) -> dict[str, float]:
    """Greedy generation on validation records: ``exact_match`` (share of outputs equal to the
    gold output) and, for NER/RE/EE lines, IEPile string-mode F1 per task."""
    predictions = generate_outputs(model, tokenizer, records, chat_template, max_new_tokens)
    exact = sum(p.strip() == r.output.strip() for p, r in zip(predictions, records, strict=True))
    return {"exact_match": exact / max(len(records), 1), **_iepile_f1(records, predictions)}
