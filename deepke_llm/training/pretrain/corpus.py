"""Pretraining corpus pieces: source readers and greedy packing.

The ``prepare`` pipeline that drives them (workers, dedup, indexed output) is in
:mod:`deepke_llm.training.pretrain.prepare`.

Sentence splitting is :mod:`deepke_llm.sentences` (one splitter for the whole package).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from deepke_llm.io import open_input

COMPRESSED_SUFFIXES = (".gz", ".bz2")

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
        suffixes = [s for s in self.path.suffixes if s not in COMPRESSED_SUFFIXES]
        return bool(suffixes) and suffixes[-1] in (".jsonl", ".json", ".ndjson")


# Plain-text documents longer than this are cut at a line break so reading stays bounded in memory.
MAX_TEXT_DOCUMENT_CHARS = 1_000_000


@dataclass(frozen=True)
class BadLine:
    """A line that could not be decoded; reported as ``file:line: reason`` and skipped."""

    reason: str


def iter_lines(path: Path) -> Iterator[tuple[int, str | BadLine]]:
    """``(line_number, text)`` of each line, ``BadLine`` for a line that is not valid UTF-8.

    Decoding is strict on purpose: replacing bad bytes would put U+FFFD into the corpus without a
    trace; a bad line is reported with its number instead (fix the file, e.g. with iconv).
    """
    with open_input(path) as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, BadLine(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1}); "
                                      "convert the file to UTF-8, e.g. with iconv")


def iter_raw_records(spec: SourceSpec, text_mode: str = "paragraph") -> Iterator[tuple[int, str | BadLine]]:
    """Yield ``(line_number, raw)`` per document: a JSON line, or a plain-text document.

    Plain text: ``text_mode="paragraph"`` makes documents of blank-line separated paragraphs,
    ``"line"`` one document per line; the line break that ends a document is a separator, not
    text. JSON lines are parsed later, in the workers. An undecodable line comes as a ``BadLine``
    (in paragraph mode it spoils its whole paragraph, whose line number it then carries).
    """
    lines_in = iter_lines(spec.path)
    if spec.is_jsonl or text_mode == "line":
        for number, line in lines_in:
            if isinstance(line, BadLine):
                yield number, line
            elif line.strip():
                yield number, line if spec.is_jsonl else _strip_newline(line)
        return
    lines: list[str] = []
    bad: tuple[int, BadLine] | None = None
    size = 0
    first = 0
    for number, line in lines_in:
        if isinstance(line, BadLine):
            bad = bad or (number, line)
            line = "x\n"  # keeps the paragraph open; the whole paragraph is reported and skipped
        if not line.strip():
            if lines:
                yield bad or (first, _strip_newline("".join(lines)))
            lines, size, bad = [], 0, None
            continue
        if not lines:
            first = number
        lines.append(line)
        size += len(line)
        if size >= MAX_TEXT_DOCUMENT_CHARS:
            # cut inside a paragraph: the text goes on in the next document, so keep the break
            yield bad or (first, "".join(lines))
            lines, size, bad = [], 0, None
    if lines:
        yield bad or (first, _strip_newline("".join(lines)))


def _strip_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith(("\n", "\r")) else text


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
