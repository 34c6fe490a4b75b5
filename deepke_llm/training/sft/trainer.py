"""The transformers pieces of SFT: the Trainer with the response-only loss, and the callbacks that
write the JSON-lines training log, run the extraction eval hook and measure throughput.

Imports transformers at module level, so :mod:`deepke_llm.training.sft.run` imports this module only
inside :func:`~deepke_llm.training.sft.run_sft`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback

from deepke_llm.io import atomic_path
from deepke_llm.training.sft.loss import causal_lm_loss

__all__ = ["EvalFnCallback", "JsonlLogCallback", "SftTrainer", "ThroughputCallback"]


class SftTrainer(Trainer):
    """A Trainer whose loss projects only labelled positions through the LM head."""

    def __init__(self, *args: Any, response_only_head: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.response_only_head = response_only_head
        # Our loss divides by num_items_in_batch itself: have the Trainer count labelled tokens
        # (after the shift) and not divide again by the gradient accumulation steps.
        self.model_accepts_loss_kwargs = True
        self._loss_shifts_labels = True

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        loss = causal_lm_loss(model, inputs, num_items_in_batch, self.response_only_head)
        averaged = getattr(self.args, "average_tokens_across_devices", False)
        if averaged and num_items_in_batch is not None:
            # num_items_in_batch counts every process's tokens while DDP averages gradients.
            loss = loss * self.accelerator.num_processes
        return (loss, {"loss": loss}) if return_outputs else loss


def append_jsonl(path: Path, entry: dict[str, Any]) -> None:
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


class JsonlLogCallback(TrainerCallback):
    """Writes every log event (loss per step, learning rate, eval loss) as one JSON line.

    On resume, lines after the checkpoint's step are dropped so the log matches the run.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        kept = []
        if state.global_step > 0 and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip() and json.loads(line).get("step", 0) <= state.global_step:
                    kept.append(line)
        with atomic_path(self.path) as tmp:  # a crash here keeps the old log, never half of it
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if state.is_world_process_zero and logs:
            append_jsonl(self.path, {"step": state.global_step, **logs})


class EvalFnCallback(TrainerCallback):
    """After each evaluation, runs ``eval_fn(model, tokenizer, records)`` (e.g. generate and
    score extraction F1) and logs its metrics with an ``eval_`` prefix."""

    def __init__(self, eval_fn: Callable[..., dict[str, float]], model: Any, tokenizer: Any,
                 records: Sequence[Any], log_path: Path) -> None:
        self.eval_fn, self.model, self.tokenizer = eval_fn, model, tokenizer
        self.records, self.log_path = list(records), Path(log_path)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None,
                    **kwargs: Any) -> None:
        was_training = self.model.training
        self.model.eval()
        scores = self.eval_fn(self.model, self.tokenizer, self.records)
        if was_training:
            self.model.train()
        scores = {f"eval_{k}": v for k, v in scores.items()}
        if metrics is not None:
            metrics.update(scores)
        state.log_history.append({**scores, "step": state.global_step})
        if state.is_world_process_zero:
            append_jsonl(self.log_path, {"step": state.global_step, **scores})


class ThroughputCallback(TrainerCallback):
    """Non-padding input tokens per second of this ``train()`` call (resumes count only their part)."""

    def __init__(self) -> None:
        self.tokens_per_second: float | None = None
        self._start = (0.0, 0)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = (time.perf_counter(), state.num_input_tokens_seen)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        seconds = time.perf_counter() - self._start[0]
        tokens = state.num_input_tokens_seen - self._start[1]
        self.tokens_per_second = tokens / seconds if seconds > 0 else None
