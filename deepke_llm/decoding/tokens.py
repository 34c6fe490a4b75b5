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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepke_llm.decoding.automaton import SUB, Automaton, State

__all__ = ["RowConstraint", "TokenIndex", "sample"]

# tokens left when a row starts closing its answer, on top of the closing bytes themselves
CLOSING_MARGIN = 2
# what may close a list from the point where its last item ended, or (a token such as `": ["`
# may hold the list's opening and its first quote) before the list opened: it is then empty
LIST_CLOSINGS = (b"]", b'"]', b"}]", b'"}]', b"[]")
MAX_ESCAPES = 8  # per row: each escape closes one list, so a handful covers any answer


class TokenIndex:
    """A vocabulary's tokens as bytes (special and empty tokens left out), sorted for walking."""

    def __init__(self, token_bytes: Sequence[bytes | None], end_ids: Sequence[int]) -> None:
        by_bytes: dict[bytes, list[int]] = {}
        for token_id, data in enumerate(token_bytes):
            if data:
                by_bytes.setdefault(data, []).append(token_id)
        self.keys = sorted(by_bytes)
        self.ids = [by_bytes[k] for k in self.keys]
        self._by_bytes = {k: v[0] for k, v in by_bytes.items()}
        self._longest = max(map(len, self.keys), default=1)
        self.end_ids = np.asarray(sorted(set(end_ids)), dtype=np.int64)
        self.size = len(token_bytes)

    @classmethod
    def from_huggingface(cls, tokenizer: Any, vocab_size: int,
                         end_ids: Sequence[int]) -> TokenIndex:
        """The index of a transformers tokenizer; xgrammar's reader knows each tokenizer
        family's byte encoding (byte fallback, BPE byte-level, metaspace). Special tokens are
        left out: a constrained answer never writes them."""
        import xgrammar

        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        special.update(tokenizer.all_special_ids)
        return cls([None if i in special else piece for i, piece in enumerate(info.decoded_vocab)],
                   end_ids)

    def tokenize(self, data: bytes) -> list[int] | None:
        """``data`` as tokens, longest match first (None when some byte has no token)."""
        out, i = [], 0
        while i < len(data):
            for size in range(min(self._longest, len(data) - i), 0, -1):
                token = self._by_bytes.get(data[i:i + size])
                if token is not None:
                    out.append(token)
                    i += size
                    break
            else:
                return None
        return out

    def walk(self, automaton: Automaton, state: State) -> dict[int, State]:
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
    encode: Callable[[bytes], list[int]] | None = None
    """The engine's tokenizer, for :meth:`forced` (jump-forward); None: no jump-forward."""
    state: State = field(init=False)
    generated: int = 0
    closing: list[int] | None = None
    """Near the token limit: the tokens that close the answer, forced one by one."""
    escape: bool = False
    """Drop a mention the model cannot start from the text (see :meth:`escaped`)."""
    escapes: int = 0
    _cache: dict[State, _Options] = field(default_factory=dict, repr=False)
    _closings: dict[State, list[int] | None] = field(default_factory=dict, repr=False)
    _history: list[State] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.state = self.automaton.start()

    def options(self) -> _Options:
        """The allowed token ids (end-of-sequence ids included when the answer may end)."""
        remaining = self.max_new_tokens - self.generated
        near_limit = remaining <= self._closing_room()
        if self.closing is None and near_limit:
            closing = self._closing(self.state)
            if closing is not None and (remaining <= len(closing) + CLOSING_MARGIN or
                                        not len(self._walked(remaining - 1).ids)):
                self.closing = list(closing)
        if self.closing is not None:
            if not self.closing:
                return _Options(self.index.end_ids, {}, True)
            return _Options(np.asarray(self.closing[:1]), {self.closing[0]: self.state}, False)
        return self._walked(remaining - 1 if near_limit else None)

    def _walked(self, left: int | None) -> _Options:
        found = self._cache.get(self.state)
        if found is None:
            walked = self.index.walk(self.automaton, self.state)
            end = self.automaton.accepts(self.state)
            allowed = np.fromiter(walked, dtype=np.int64, count=len(walked))
            if end:
                allowed = np.concatenate([allowed, self.index.end_ids])
            found = self._cache[self.state] = _Options(allowed, walked, end)
        return found if left is None else self._fitting(found, left)

    def _fitting(self, options: _Options, left: int) -> _Options:
        """Only the tokens after which the answer can still be closed in ``left`` tokens (a
        token may commit to more text: a new item needs its keys written)."""
        fit = {token: state for token, state in options.next.items()
               if (closing := self._closing(state)) is not None and len(closing) <= left}
        allowed = np.fromiter(fit, dtype=np.int64, count=len(fit))
        if options.end:
            allowed = np.concatenate([allowed, self.index.end_ids])
        return _Options(allowed, fit, options.end)

    def _closing(self, state: State) -> list[int] | None:
        if state not in self._closings:
            completion = self.automaton.shortest_completion(state)
            self._closings[state] = None if completion is None else \
                self.index.tokenize(completion)
        return self._closings[state]

    def _closing_room(self) -> int:
        # a cheap upper bound of the tokens any closing needs: checked only near the limit
        return len(self.automaton.program.code) + 64

    @property
    def finished(self) -> bool:
        """The answer is complete and nothing may follow (the row needs no more tokens)."""
        options = self.options()
        return options.end and not options.next

    def advance(self, token_id: int) -> None:
        """Move past ``token_id`` (an end-of-sequence id or a disallowed id ends the row)."""
        options = self.options()
        self.generated += 1
        self._history.append(self.state)
        if self.closing:
            self.closing.pop(0)
            return
        self.state = options.next.get(int(token_id), frozenset())

    def escaped(self, logits: Any) -> tuple[int, list[int]] | None:
        """Where the model's own best token cannot start a mention (it wants a name that is not
        in the text, e.g. ``"Irish"`` for a text that says ``Ireland``), the item is dropped
        instead of forcing the nearest copyable name on it, which drags the rest of the list
        with it (after a forced ``"New Zealand"`` under ``person``, a model goes on listing
        countries as persons): the row goes back to where the list's last complete item ended
        and closes the list there, as a free answer whose hallucinated item grounding drops.

        Returns ``(tokens to take back, tokens to feed)`` and moves the row there; None when
        the row goes on as usual. Only with ``escape``, at a mention's first token, and not
        while closing at the token limit; at most ``MAX_ESCAPES`` times per row."""
        if not self.escape or self.closing is not None or self.escapes >= MAX_ESCAPES \
                or not self._at_mention_start():
            return None
        options = self.options()
        best = int(np.argmax(np.asarray(logits)))
        if best in options.next or (options.end and best in self.index.end_ids):
            return None
        for back in range(1, len(self._history) + 1):
            state = self._history[-back]
            for closing in LIST_CLOSINGS:
                after = state
                for byte in closing:
                    after = self.automaton.step(after, byte) if after else after
                tokens = self.index.tokenize(closing) if after else None
                if tokens and len(self._history) - back + len(tokens) < self.max_new_tokens:
                    self.escapes += 1
                    self.state = state
                    del self._history[len(self._history) - back:]
                    self.generated -= back
                    for token in tokens:
                        self.advance(token)
                    return back, tokens
        return None

    def _at_mention_start(self) -> bool:
        code = self.automaton.program.code
        return bool(self.state) and all(code[pc][0] == SUB and p < 0 for pc, p in self.state)

    def forced(self) -> list[int]:
        """Tokens the answer must continue with whatever the model prefers (the structure
        between two choices: ``, "location": [``), to be fed without asking the model
        (jump-forward: no logits over the vocabulary for them).

        The forced bytes are tokenized by the engine's tokenizer and the last token is left to
        the model, which may merge it with what it writes next (``["`` rather than ``[`` +
        ``"``), as its training answers were tokenized. Each token is advanced past here.
        """
        if self.encode is None or self.closing is not None:
            return []
        data, state = bytearray(), self.state
        while not self.automaton.accepts(state):
            following = self.automaton.next_bytes(state)
            if len(following) != 1:
                break
            byte = following.pop()
            data.append(byte)
            state = self.automaton.step(state, byte)
        if len(data) < 2:
            return []
        out: list[int] = []
        for token in self.encode(bytes(data))[:-1]:
            options = self.options()  # near the limit: only tokens that leave room to close
            if self.closing is not None or token not in options.next:
                break
            self.advance(token)
            out.append(token)
        return out

    def pick(self, logits: Any, rng: Any = None, temperature: float = 0.0,
             top_p: float = 1.0) -> int:
        """The best allowed token of a row of logits (greedy, or a draw when ``temperature``)."""
        allowed = self.options().ids
        if len(allowed) == 0:
            return int(self.index.end_ids[0]) if len(self.index.end_ids) else int(np.argmax(logits))
        return self.pick_among(np.asarray(logits)[allowed], rng, temperature, top_p)

    def pick_among(self, values: Any, rng: Any = None, temperature: float = 0.0,
                   top_p: float = 1.0) -> int:
        """:meth:`pick` from the logits of the allowed tokens only (``options().ids``, in that
        order): an engine may compute just those instead of the whole vocabulary."""
        allowed = self.options().ids
        if temperature <= 0 or rng is None:
            return int(allowed[int(np.argmax(values))])
        return int(allowed[sample(np.asarray(values), rng, temperature, top_p)])


def sample(logits: np.ndarray, rng: Any, temperature: float, top_p: float) -> int:
    """The index of a temperature / top-p draw from ``logits`` (every engine's sampler)."""
    scaled = (logits - logits.max()) / temperature
    probs = np.exp(scaled.astype(np.float64))
    probs /= probs.sum()
    order = np.argsort(-probs)
    chosen = order[:np.searchsorted(np.cumsum(probs[order]), top_p) + 1]
    return int(rng.choice(chosen, p=probs[chosen] / probs[chosen].sum()))
