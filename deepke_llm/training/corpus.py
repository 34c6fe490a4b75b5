"""Pretraining corpus pieces: source readers and greedy packing.

The ``prepare`` pipeline that drives them (workers, dedup, indexed output) is in
:mod:`deepke_llm.training.corpus_prepare`.

Sentence splitting is :mod:`deepke_llm.sentences` (one splitter for the whole package).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deepke_llm.sentences import sentence_spans, split_sentences

# The splitter is shared with KG2Instruction; re-exported here for the corpus pipeline.
__all__ = ["sentence_spans", "split_sentences"]


# ---- sources ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceSpec:
    """One input file and the source (mixing group) it belongs to."""

    name: str
    path: Path

    @classmethod
    def parse(cls, spec: str) -> SourceSpec:
        """``NAME=PATH`` or ``PATH`` (the name is then the file name up to its first dot)."""
        name, sep, path = spec.partition("=")
        if not sep or not name or "/" in name:
            name, path = Path(spec).name.split(".")[0], spec
        return cls(name=name, path=Path(path))

    @property
    def is_jsonl(self) -> bool:
        suffixes = [s for s in self.path.suffixes if s != ".gz"]
        return bool(suffixes) and suffixes[-1] in (".jsonl", ".json", ".ndjson")


# Plain-text documents longer than this are cut at a line break so reading stays bounded in memory.
MAX_TEXT_DOCUMENT_CHARS = 1_000_000


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - returned to the caller


def iter_raw_records(spec: SourceSpec, text_mode: str = "paragraph") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, raw)`` per document: a JSON line, or a plain-text document.

    Plain text: ``text_mode="paragraph"`` makes documents of blank-line separated paragraphs,
    ``"line"`` one document per line. JSON lines are parsed later, in the workers.
    """
    with _open_text(spec.path) as handle:
        if spec.is_jsonl or text_mode == "line":
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield number, line
            return
        lines: list[str] = []
        size = 0
        first = 0
        for number, line in enumerate(handle, 1):
            if not line.strip():
                if lines:
                    yield first, "".join(lines)
                lines, size = [], 0
                continue
            if not lines:
                first = number
            lines.append(line)
            size += len(line)
            if size >= MAX_TEXT_DOCUMENT_CHARS:
                yield first, "".join(lines)
                lines, size = [], 0
        if lines:
            yield first, "".join(lines)


# ---- packing ---------------------------------------------------------------------------------

def greedy_pack(unit_lengths: Iterable[int], max_len: int, filled: int = 0) -> tuple[list[int], int]:
    """Greedily pack consecutive units (sentences) into samples of at most ``max_len`` tokens.

    ``filled`` is the size of the sample still open from earlier calls. Returns the sizes of the
    samples closed here, in stream order, and the size of the sample left open. Samples are
    consecutive slices of the token stream: no token is repeated or skipped. A unit that does not
    fit the open sample starts a new one; a unit longer than ``max_len`` closes the open sample and
    is cut into ``max_len`` pieces, its remainder opening the next sample.
    """
    closed: list[int] = []
    for length in unit_lengths:
        if filled + length <= max_len:
            filled += length
            continue
        if filled:
            closed.append(filled)
        if length > max_len:
            full, filled = divmod(length, max_len)
            closed.extend([max_len] * full)
        else:
            filled = length
    return closed, filled


class StreamPacker:
    """Cut a stream of token chunks into packed samples, carrying the open sample across chunks."""

    def __init__(self, max_len: int) -> None:
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.max_len = max_len
        self._open: list = []  # token arrays of the sample still open
        self._filled = 0

    def add(self, tokens, unit_lengths: list[int]) -> list:
        """Add one chunk (flat token array + its unit lengths); return the samples it closes."""
        import numpy as np

        sizes, filled = greedy_pack(unit_lengths, self.max_len, self._filled)
        stream = np.concatenate([*self._open, tokens]) if self._open else tokens
        bounds = np.cumsum(sizes)
        samples = np.split(stream[: bounds[-1]], bounds[:-1]) if sizes else []
        consumed = int(bounds[-1]) if sizes else 0
        rest = stream[consumed:]
        self._open = [rest] if len(rest) else []
        self._filled = filled
        return samples

    def flush(self) -> list:
        """Close the open sample (at the end of a source)."""
        import numpy as np

        samples = [np.concatenate(self._open)] if self._open else []
        self._open, self._filled = [], 0
        return samples
