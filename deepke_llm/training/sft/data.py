"""Instruction data for SFT: read IEPile / Alpaca lines, tokenize them exactly as inference does,
drop over-long examples, optionally pack, and collate batches with response-only labels.

Prompt fidelity is the point of this module: a training prompt is built as the extractor builds
it (``Prompt(user=line["instruction"])`` for IEPile lines), rendered by the one renderer
(:func:`~deepke_llm.prompts.chat.render_prompt`) and tokenized with the rule the HF backend uses
(:func:`encode_prompt`), so the model is trained on the token ids it will be conditioned on.
The response is tokenized on its own (no special tokens) and closed with EOS.

Packing concatenates whole examples into rows of at most ``max_len`` tokens (first-fit
decreasing). Position ids restart at 0 for every example and the attention mask is left out, so
transformers builds a block-diagonal causal mask from the position ids (sdpa / eager / flex; flash
attention reads them as varlen boundaries): examples never attend to each other and the packed
loss equals the unpacked one.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepke_llm.io import read_jsonl
from deepke_llm.prompts.chat import Prompt, encode_rendered, render_prompt

__all__ = ["IGNORE_INDEX", "DataStats", "SftCollator", "SftRecord", "encode_prompt",
           "pack_examples", "read_sft_records", "split_validation", "tokenize_records"]

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label value torch's cross-entropy skips


@dataclass(frozen=True)
class SftRecord:
    """One training pair: the prompt as the extractor would build it, and the target text."""

    prompt: Prompt
    output: str
    id: str = ""
    task: str = ""
    label: Any = field(default=None, compare=False, hash=False)
    """Gold in IEPile's list form when the line carries one (test-file layout), for scoring."""


@dataclass
class DataStats:
    """What tokenization kept and dropped (written to the run summary)."""

    examples: int = 0
    dropped_too_long: int = 0
    longest_dropped: int = 0
    prompt_tokens: int = 0
    response_tokens: int = 0
    rows: int = 0


def read_sft_records(path: str | Path, data_format: str = "auto") -> list[SftRecord]:
    """Read IEPile or Alpaca JSON lines; a malformed line raises a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: training data file not found")
    records = [_record(data, data_format, f"{path}:{number}")
               for number, data in read_jsonl(path)]  # a bad line raises io.LineError
    if not records:
        raise ValueError(f"{path}: no records (expected JSON lines with instruction and output)")
    return records


def _record(data: Any, data_format: str, where: str) -> SftRecord:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object with 'instruction' and 'output'")
    for key in ("instruction", "output"):
        if key not in data:
            raise ValueError(f"{where}: field '{key}' is missing")
    instruction, output = data["instruction"], data["output"]
    if not isinstance(instruction, str):
        raise ValueError(f"{where}: field 'instruction' must be a string")
    if not isinstance(output, str):
        # Some IEPile-like files store the answer as an object; IEPile writes it as this string.
        output = json.dumps(output, ensure_ascii=False)
    is_alpaca = data_format == "alpaca" or (data_format == "auto" and "input" in data)
    if is_alpaca:
        extra = data.get("input") or ""
        if not isinstance(extra, str):
            raise ValueError(f"{where}: field 'input' must be a string")
        prompt = Prompt(user=instruction, input=extra or None, template="alpaca")
    else:
        prompt = Prompt(user=instruction)
    return SftRecord(prompt=prompt, output=output, id=str(data.get("id", "")),
                     task=str(data.get("task", "")), label=data.get("label"))


def split_validation(records: Sequence[SftRecord], val_size: float,
                     seed: int) -> tuple[list[SftRecord], list[SftRecord]]:
    """(train, validation): ``val_size`` lines (a fraction if < 1) held out by a seeded shuffle."""
    if val_size <= 0:
        return list(records), []
    count = round(len(records) * val_size) if val_size < 1 else int(val_size)
    count = max(1, count)
    if count >= len(records):
        raise ValueError(f"val_size: {val_size} leaves no training data ({len(records)} lines)")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    train = [r for i, r in enumerate(records) if i not in held]
    return train, [records[i] for i in sorted(held)]


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt, by the rule extraction uses (``encode_rendered``)."""
    return encode_rendered(tokenizer, text)


def encode_response(tokenizer: Any, output: str) -> list[int]:
    """Token ids the model must generate for ``output``: the text, then EOS."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token: set eos_token in tokenizer_config.json")
    return list(tokenizer(output, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]


def render_record(record: SftRecord, tokenizer: Any, chat_template: str) -> str:
    """The prompt string of ``record`` (what the extractor renders for the same prompt)."""
    return render_prompt(record.prompt, chat_template, tokenizer)


def tokenize_records(records: Iterable[SftRecord], tokenizer: Any, chat_template: str,
                     max_len: int, train_on_inputs: bool = False,
                     stats: DataStats | None = None) -> list[dict[str, list[int]]]:
    """Examples ``{"input_ids", "labels"}``; labels are -100 on the prompt unless
    ``train_on_inputs``. Examples over ``max_len`` are dropped and counted in ``stats``."""
    stats = stats if stats is not None else DataStats()
    examples = []
    for record in records:
        prompt_ids = encode_prompt(tokenizer, render_record(record, tokenizer, chat_template))
        response_ids = encode_response(tokenizer, record.output)
        total = len(prompt_ids) + len(response_ids)
        if total > max_len:
            # Truncating would teach the model to stop mid-answer (or never see the answer).
            stats.dropped_too_long += 1
            stats.longest_dropped = max(stats.longest_dropped, total)
            continue
        input_ids = prompt_ids + response_ids
        if train_on_inputs:
            labels = [IGNORE_INDEX] + input_ids[1:]  # the first token is never predicted
        else:
            labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
        examples.append({"input_ids": input_ids, "labels": labels})
        stats.examples += 1
        stats.prompt_tokens += len(prompt_ids)
        stats.response_tokens += len(response_ids)
    stats.rows = len(examples)
    if stats.dropped_too_long:
        logger.warning("dropped %d of %d examples longer than max_len %d tokens (longest %d): "
                       "raise --max-len to keep them", stats.dropped_too_long,
                       stats.dropped_too_long + stats.examples, max_len, stats.longest_dropped)
    return examples


def pack_examples(examples: Sequence[dict[str, list[int]]],
                  max_len: int) -> list[dict[str, list[int]]]:
    """Concatenate whole examples into rows of at most ``max_len`` tokens (first-fit decreasing),
    with ``position_ids`` restarting at 0 for each example."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]), reverse=True)
    bins: list[list[int]] = []
    room: list[int] = []
    for index in order:
        length = len(examples[index]["input_ids"])
        for b, free in enumerate(room):
            if length <= free:
                bins[b].append(index)
                room[b] -= length
                break
        else:
            bins.append([index])
            room.append(max_len - length)
    rows = []
    for members in bins:
        row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
        for index in members:
            example = examples[index]
            row["input_ids"] += example["input_ids"]
            row["labels"] += example["labels"]
            row["position_ids"] += list(range(len(example["input_ids"])))
        rows.append(row)
    return rows


class SftCollator:
    """Right-pads a batch into tensors: ``input_ids``, ``labels`` (-100 on padding) and either
    ``attention_mask`` (unpacked rows) or ``position_ids`` (packed rows; padding becomes its own
    block so no real token attends to it)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        packed = "position_ids" in features[0]
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        batch["position_ids" if packed else "attention_mask"] = []
        for feature in features:
            pad = width - len(feature["input_ids"])
            batch["input_ids"].append(feature["input_ids"] + [self.pad_token_id] * pad)
            batch["labels"].append(feature["labels"] + [IGNORE_INDEX] * pad)
            if packed:
                batch["position_ids"].append(feature["position_ids"] + list(range(pad)))
            else:
                batch["attention_mask"].append([1] * len(feature["input_ids"]) + [0] * pad)
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
