"""From byte automata to token masks: which token ids a row may take next.

A :class:`TokenIndex` holds a vocabulary as sorted byte strings; the tokens an automaton state
allows are found by walking the automaton along that sorted list (a trie walked with binary
search: no per-vocabulary table is built, memory is the list itself), so the work per step is
proportional to the allowed tokens' prefixes, not to the vocabulary (262k for Gemma). Each row's
:class:`RowConstraint` caches the mask and the next state per automaton state: structure tokens
and the start of a mention are computed once per prompt, not once per step.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepke_llm.decoding.automaton import Automaton, Literal, State

__all__ = ["RowConstraint", "TokenIndex"]

# tokens left when a row starts closing its answer, on top of the closing bytes themselves
CLOSING_MARGIN = 2


class TokenIndex:
    """A vocabulary's tokens as bytes (special and empty tokens left out), sorted for walking."""

    def __init__(self, token_bytes: Sequence[bytes | None], end_ids: Sequence[int]) -> None:
        by_bytes: dict[bytes, list[int]] = {}
        for token_id, data in enumerate(token_bytes):
            if data:
                by_bytes.setdefault(data, []).append(token_id)
        self.keys = sorted(by_bytes)
        self.ids = [by_bytes[k] for k in self.keys]
        self.end_ids = np.asarray(sorted(set(end_ids)), dtype=np.int64)
        self.size = len(token_bytes)

    def walk(self, automaton: Automaton | Literal, state: State) -> dict[int, State]:
        """Every token id the automaton can consume whole from ``state``, with its next state."""
        out: dict[int, State] = {}
        keys, ids = self.keys, self.ids
        stack: list[tuple[bytes, int, int, State]] = [(b"", 0, len(keys), state)]
        while stack:
            prefix, lo, hi, current = stack.pop()
            for byte in automaton.next_bytes(current):
                after = automaton.step(current, byte)
                if not after:
                    continue
                longer = prefix + bytes((byte,))
                start = bisect_left(keys, longer, lo, hi)
                if start >= hi or not keys[start].startswith(longer):
                    continue
                stop = hi if byte == 255 else bisect_left(keys, prefix + bytes((byte + 1,)),
                                                          start, hi)
                if keys[start] == longer:
                    for token_id in ids[start]:
                        out[token_id] = after
                    start += 1
                if start < stop:
                    stack.append((longer, start, stop, after))
        return out


@dataclass
class _Options:
    ids: np.ndarray
    next: dict[int, State]
    end: bool


@dataclass
class RowConstraint:
    """One row's constraint during generation: allowed ids now, advance by the chosen id."""

    automaton: Automaton
    index: TokenIndex
    max_new_tokens: int
    state: State = field(init=False)
    generated: int = 0
    closing: Automaton | Literal | None = None
    _cache: dict[tuple[int, State], _Options] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.state = self.automaton.start()

    @property
    def _current(self) -> Automaton | Literal:
        return self.closing or self.automaton

    def options(self) -> _Options:
        """The allowed token ids (end-of-sequence ids included when the answer may end)."""
        if self.closing is None and self.max_new_tokens - self.generated <= self._closing_room():
            completion = self.automaton.shortest_completion(self.state) or b""
            if self.max_new_tokens - self.generated <= len(completion) + CLOSING_MARGIN:
                self.closing = Literal(completion)
                self.state = self.closing.start()
        key = (id(self._current), self.state)
        found = self._cache.get(key)
        if found is None:
            walked = self.index.walk(self._current, self.state)
            end = self._current.accepts(self.state)
            allowed = np.fromiter(walked, dtype=np.int64, count=len(walked))
            if end:
                allowed = np.concatenate([allowed, self.index.end_ids])
            found = self._cache[key] = _Options(allowed, walked, end)
        return found

    def _closing_room(self) -> int:
        # a cheap upper bound of any closing string: worth checking only near the limit
        return len(self.automaton.program.code) + 64

    @property
    def finished(self) -> bool:
        """The answer is complete and nothing may follow (the row needs no more tokens)."""
        options = self.options()
        return options.end and not options.next

    def advance(self, token_id: int) -> None:
        """Move past ``token_id`` (an end-of-sequence id or a disallowed id ends the row)."""
        self.generated += 1
        options = self.options()
        self.state = options.next.get(int(token_id), frozenset())

    def pick(self, logits: Any, rng: Any = None, temperature: float = 0.0,
             top_p: float = 1.0) -> int:
        """The best allowed token of a row of logits (greedy, or a draw when ``temperature``)."""
        allowed = self.options().ids
        if len(allowed) == 0:
            return int(self.index.end_ids[0]) if len(self.index.end_ids) else int(np.argmax(logits))
        values = np.asarray(logits)[allowed]
        if temperature <= 0 or rng is None:
            return int(allowed[int(np.argmax(values))])
        scaled = (values - values.max()) / temperature
        probs = np.exp(scaled.astype(np.float64))
        probs /= probs.sum()
        order = np.argsort(-probs)
        keep = np.searchsorted(np.cumsum(probs[order]), top_p) + 1
        chosen = order[:keep]
        return int(allowed[rng.choice(chosen, p=probs[chosen] / probs[chosen].sum())])
