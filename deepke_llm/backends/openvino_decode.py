"""Constrained generation on OpenVINO: the exported model run step by step, the vocabulary head
computed only for the tokens a row may take.

OpenVINO GenAI's ``LLMPipeline`` takes no per-row logits mask, so under a decoding constraint
(:mod:`deepke_llm.decoding`) the ``openvino`` engine runs the exported stateful IR itself:

- the IR is compiled without its last MatMul, the vocabulary head (262,144 x 640 on Gemma 3
  270M: more arithmetic than the whole transformer per generated token), and returns the final
  hidden state (``benchmarks/perf/engines.py`` measures what that buys);
- each row's next token is picked among the ids its constraint allows, their logits computed as
  ``W[allowed] @ h`` with the head's weights read from the IR; where the answer's structure
  leaves one token (a key, a bracket) no logits are computed at all;
- the rows of a batch share the model's KV-cache state: a finished row leaves it through
  ``beam_idx`` (the gather the exporter puts on every cache input); tokens a row takes back
  (``escape``) stay in the cache, masked out by ``attention_mask``, and position ids count a
  row's real tokens only. Each row's answer is the one it gets alone.

No jump-forward (feeding the answer's forced structure several tokens per step, as the
llama.cpp engine can): a forced token already costs no vocabulary logits here, and rows of one
batch feeding different numbers of tokens per step would leave padding slots inside each row's
cache, which a sliding-window layer counts (transformers' windows are cache slots, not
positions): rows would no longer answer as they do alone.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepke_llm.backends.base import GenerationCancelled, GenerationConfig
from deepke_llm.decoding.tokens import sample

__all__ = ["HeadlessModel"]


@dataclass
class _Row:
    """One prompt in the batch: its next position id, what it generated and where that sits."""

    index: int
    constraint: Any
    position: int
    out: list[int] = field(default_factory=list)
    queue: list[int] = field(default_factory=list)  # tokens to feed, one per step
    slots: list[int] = field(default_factory=list)  # the cache slot of each token fed


class _Logits:
    """One row's logits over the whole vocabulary, computed only when read (``np.asarray``):
    :meth:`~deepke_llm.decoding.RowConstraint.escaped` reads them at a mention's start only."""

    def __init__(self, model: HeadlessModel, hidden: np.ndarray) -> None:
        self.model, self.hidden = model, hidden

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        self.model.vocab_logits += 1
        values = self.model.head @ self.hidden
        return values if dtype is None else values.astype(dtype)


class HeadlessModel:
    """The exported IR compiled without its vocabulary head, plus the head's weights."""

    def __init__(self, ir_dir: Path, properties: dict[str, Any], device: str = "CPU") -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(Path(ir_dir) / "openvino_model.xml"))
        matmul = model.output("logits").get_node().input_value(0).get_node()
        if matmul.get_type_name() != "MatMul":
            raise ValueError(f"{ir_dir}: the logits do not come from a MatMul (found "
                             f"{matmul.get_type_name()}); re-export the model")
        weight = matmul.input_value(1).get_node()
        while weight.get_type_name() == "Convert":  # a compressed constant, widened
            weight = weight.input_value(0).get_node()
        head = np.asarray(weight.get_data(), dtype=np.float32)  # a view of the weights file
        self.head = head if matmul.get_attributes().get("transpose_b") else head.T
        result = ov.opset13.result(matmul.input_value(0))
        headless = ov.Model([result], model.get_sinks(), model.get_parameters(), "headless")
        self.compiled = core.compile_model(headless, device, {"PERFORMANCE_HINT": "LATENCY",
                                                              **properties})
        self.vocab_logits = 0
        """Logits computed over the whole vocabulary (rows without a constraint, escapes)."""
        self.allowed_logits = 0
        """Logits computed for allowed tokens only."""
        self.steps = 0
        """Decoding steps run (model calls after the prompts')."""

    def generate(self, encoded: Sequence[list[int]], constraints: Sequence[Any],
                 config: GenerationConfig, pad_id: int, end_ids: Sequence[int],
                 cancel: threading.Event) -> list[list[int]]:
        """The generated ids of each prompt (end-of-sequence left out), one batch in one state.

        ``constraints`` holds a :class:`~deepke_llm.decoding.RowConstraint` made without a
        tokenizer (no jump-forward), or None (the row is decoded over the whole vocabulary),
        per prompt."""
        request = self.compiled.create_infer_request()
        request.reset_state()
        count, width = len(encoded), max(len(ids) for ids in encoded)
        ids = np.full((count, width), pad_id, dtype=np.int64)
        mask = np.zeros((count, width), dtype=np.int64)
        positions = np.zeros((count, width), dtype=np.int64)
        for b, prompt in enumerate(encoded):  # left padding: every row's last token is last
            ids[b, width - len(prompt):] = prompt
            mask[b, width - len(prompt):] = 1
            positions[b, width - len(prompt):] = np.arange(len(prompt))
        # the output buffer is reused by the next call: copied
        hidden = self._infer(request, ids, mask, positions, np.arange(count))[:, -1].copy()
        live = [_Row(b, c, len(encoded[b])) for b, c in enumerate(constraints)]
        results: list[list[int]] = [[] for _ in encoded]
        ends = {int(t) for t in end_ids}
        rng = np.random.default_rng(config.seed)
        while live:
            if cancel.is_set():
                raise GenerationCancelled("generation cancelled")
            keep = []
            for b, row in enumerate(live):
                # a row with tokens still queued (an escape's closing) feeds them first
                if row.queue or self._choose(row, hidden[b], mask[b], config, rng, ends):
                    keep.append(b)
                else:
                    results[row.index] = row.out
            if not keep:
                break
            beam = np.asarray(keep, dtype=np.int32)
            live, mask = [live[b] for b in keep], mask[beam]
            past = mask.shape[1]
            ids = np.array([[row.queue.pop(0)] for row in live], dtype=np.int64)
            positions = np.array([[row.position] for row in live], dtype=np.int64)
            for row in live:
                row.slots.append(past)
                row.position += 1
            mask = np.concatenate([mask, np.ones((len(live), 1), dtype=np.int64)], axis=1)
            hidden = self._infer(request, ids, mask, positions, beam)[:, 0].copy()
            self.steps += 1
        return results

    def _choose(self, row: _Row, hidden: np.ndarray, mask: np.ndarray,
                config: GenerationConfig, rng: Any, ends: set[int]) -> bool:
        """Queue ``row``'s next token(s) from its hidden state; False when it is finished."""
        constraint = row.constraint
        if constraint is None:
            self.vocab_logits += 1
            logits = self.head @ hidden
            token = int(np.argmax(logits)) if config.temperature <= 0 else \
                sample(logits, rng, config.temperature, config.top_p)
            if token in ends:
                return False
            row.queue = [token]
        else:
            escaped = constraint.escaped(_Logits(self, hidden))
            if escaped is not None:  # tokens taken back: masked out of the cache
                back, row.queue = escaped
                mask[row.slots[len(row.slots) - back:]] = 0
                del row.out[len(row.out) - back:], row.slots[len(row.slots) - back:]
                row.position -= back
            else:
                allowed = constraint.options().ids
                if len(allowed) == 0:
                    return False
                if len(allowed) == 1:  # the structure leaves one token: no logits needed
                    token = int(allowed[0])
                else:
                    self.allowed_logits += len(allowed)
                    token = constraint.pick_among(self.head[allowed] @ hidden, rng,
                                                  config.temperature, config.top_p)
                if token in ends:
                    return False
                constraint.advance(token)
                row.queue = [token]
        row.out += row.queue
        return len(row.out) < config.max_new_tokens and \
            not (constraint is not None and constraint.finished)

    def _infer(self, request: Any, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray,
               beam: np.ndarray) -> np.ndarray:
        request.infer({"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                       "beam_idx": beam.astype(np.int32)})
        return request.get_output_tensor(0).data  # [rows, steps, hidden]

