"""Answer automata: every byte string a model may write as its answer to one prompt.

An :class:`AnswerProgram` is compiled once per (prompt style, task, schema chunk, language) from
the style's own answer format: IEPile's JSON object with exactly the chunk's keys in schema
order (relations as ``{"subject", "object"}``, events as ``{"trigger", "arguments"}`` with that
event type's roles, ``"NAN"`` for an absent argument), or KnowLM's tuple lines. Type and role
names are literals of the program, so nothing outside the schema can be written. Every mention
is a ``SUB`` instruction: a non-empty substring of the prompt's text that starts and ends on a
character boundary, not on whitespace and (outside CJK) not inside a word.

An :class:`Automaton` runs a program on one text (a Thompson NFA over UTF-8 bytes: a thread is
``(pc, p)``, ``p`` the end of the text consumed by a mention, -1 elsewhere). States are
frozensets of threads, so engines can cache per state. Why not a grammar engine such as
xgrammar or outlines: they compile a grammar against the whole vocabulary, and the span-copy
part changes with every prompt's text (a new grammar, and seconds of compiling on a 262k
vocabulary, per prompt); here only the text-independent part is compiled once per chunk and the
per-text part is a table of byte positions.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepke_llm.grounding import is_word_char

__all__ = ["AnswerProgram", "Automaton", "State", "TextSpans", "compile_program"]

Thread = tuple[int, int]
State = frozenset[Thread]

CHAR, SPLIT, JMP, SUB, MATCH = range(5)
NAN = "NAN"
TUPLE_SEPARATORS = frozenset(",，#;；()\n")


@dataclass(frozen=True)
class AnswerProgram:
    """A compiled answer format: instructions ``(op, a, b)``; ``escaped`` says whether mentions
    are written JSON-escaped (IEPile) or as they are (KnowLM)."""

    code: tuple[tuple[int, int, int], ...]
    escaped: bool
    exits: frozenset[int] = frozenset()
    """Where an answer cut short may jump to ``final`` (after a complete key of IEPile's
    object: missing keys read as empty), used only to close an answer at the token limit."""
    final: int = -1


class _Builder:
    """Emits instructions; ``alt``/``many`` take callables that emit their branches."""

    def __init__(self) -> None:
        self.code: list[list[int]] = []
        self.exits: list[int] = []
        self.final = -1

    def emit(self, op: int, a: int = 0, b: int = 0) -> int:
        self.code.append([op, a, b])
        return len(self.code) - 1

    def lit(self, text: str) -> None:
        for byte in text.encode("utf-8"):
            self.emit(CHAR, byte)

    def sub(self) -> None:
        self.emit(SUB)

    def alt(self, *branches: Callable[[], None]) -> None:
        """Exactly one of ``branches``."""
        jumps = []
        for i, branch in enumerate(branches):
            if i < len(branches) - 1:
                split = self.emit(SPLIT)
                self.code[split][1] = len(self.code)
                branch()
                jumps.append(self.emit(JMP))
                self.code[split][2] = len(self.code)
            else:
                branch()
        for jump in jumps:
            self.code[jump][1] = len(self.code)

    def separated(self, item: Callable[[], None], separator: str, minimum: int = 1) -> None:
        """``item (separator item)*`` with at least ``minimum`` (1 or 2) items."""
        for i in range(minimum):
            if i:
                self.lit(separator)
            item()
        loop = self.emit(SPLIT)
        self.code[loop][1] = len(self.code)
        self.lit(separator)
        item()
        self.emit(JMP, loop)
        self.code[loop][2] = len(self.code)

    def leading_space(self) -> None:
        """An optional space before the answer: sentencepiece tokenizers that prefix a space
        (LLaMA's) start an answer tokenized on its own with "▁{"; decoding drops it again."""
        self.alt(lambda: None, lambda: self.lit(" "))

    def done(self, escaped: bool) -> AnswerProgram:
        self.emit(MATCH)
        return AnswerProgram(tuple((op, a, b) for op, a, b in self.code), escaped,
                             frozenset(self.exits), self.final)


def _json(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _iepile(task: str, items: Sequence[Any]) -> AnswerProgram:
    build = _Builder()

    def mention() -> None:
        build.lit('"')
        build.sub()
        build.lit('"')

    def json_list(item: Callable[[], None]) -> None:
        build.lit("[")
        build.alt(lambda: None, lambda: build.separated(item, ", "))
        build.lit("]")

    def pair() -> None:
        build.lit('{"subject": ')
        mention()
        build.lit(', "object": ')
        mention()
        build.lit("}")

    def event(roles: Sequence[str]) -> Callable[[], None]:
        def emit() -> None:
            build.lit('{"trigger": ')
            mention()
            build.lit(', "arguments": {')
            for j, role in enumerate(roles):
                build.lit((", " if j else "") + _json(role) + ": ")
                build.alt(lambda: build.lit(_json(NAN)), mention, lambda: (
                    build.lit("["), build.separated(mention, ", ", minimum=2), build.lit("]")))
            build.lit("}}")
        return emit

    build.leading_space()
    build.lit("{")
    for i, item in enumerate(items):
        name = item["event_type"] if isinstance(item, dict) else item
        build.lit((", " if i else "") + _json(name) + ": ")
        if task == "ner":
            json_list(mention)
        elif task == "re":
            json_list(pair)
        else:
            json_list(event(item.get("arguments", [])))
        build.exits.append(len(build.code))
    build.final = len(build.code)
    build.lit("}")
    return build.done(escaped=True)


def _knowlm(task: str, items: Sequence[Any]) -> AnswerProgram:
    build = _Builder()
    names = [item["event_type"] if isinstance(item, dict) else item for item in items]

    def choice(words: Sequence[str]) -> None:
        build.alt(*[(lambda w=w: build.lit(w)) for w in words])

    def argument(roles: Sequence[str]) -> Callable[[], None]:
        def emit() -> None:
            build.sub()
            build.lit("#")
            choice(roles)
        return emit

    def line() -> None:
        build.lit("(")
        build.sub()
        build.lit(",")
        if task == "ner":
            choice(names)
        elif task == "re":
            choice(names)
            build.lit(",")
            build.sub()
        else:
            events = []
            for item in items:
                roles = item.get("arguments", [])

                def one(item=item, roles=roles) -> None:
                    build.lit(item["event_type"] + ",")
                    if roles:
                        build.alt(lambda: None, lambda: build.separated(argument(roles), ";"))
                events.append(one)
            build.alt(*events)
        build.lit(")")

    build.leading_space()
    build.alt(lambda: None, lambda: build.separated(line, "\n"))
    return build.done(escaped=False)


PROGRAMS: dict[str, Callable[[str, Sequence[Any]], AnswerProgram]] = {
    "iepile": _iepile, "knowlm": _knowlm}


def compile_program(style: str, task: str, items: Sequence[Any]) -> AnswerProgram | None:
    """The answer program of ``style`` for ``task`` over one chunk's schema ``items`` (as the
    prompt lists them), or None when the style has no program (then decoding is free)."""
    build = PROGRAMS.get(style)
    if build is None or task not in ("ner", "re", "ee"):
        return None
    return build(task, items)


@dataclass
class TextSpans:
    """The text a prompt's mentions are copied from, as bytes, with the byte positions where a
    mention may start and end."""

    data: bytes
    starts_by_byte: dict[int, list[int]]
    ends: frozenset[int]
    blocked: frozenset[int] = frozenset()
    """Byte positions a mention may not cover: KnowLM's separators, which its tuples cannot
    quote (a trigger "Paris, Texas" would read as trigger "Paris")."""

    @classmethod
    def of(cls, text: str, escaped: bool) -> TextSpans:
        pieces, offsets, blocked = [], [0], set()
        for ch in text:
            piece = (_json(ch)[1:-1] if escaped else ch).encode("utf-8", "replace")
            pieces.append(piece)
            offsets.append(offsets[-1] + len(piece))
        starts: dict[int, list[int]] = {}
        ends = set()
        for i, ch in enumerate(text):
            if not escaped and ch in TUPLE_SEPARATORS:
                blocked.add(offsets[i])
                continue
            inside_word = i > 0 and is_word_char(text[i - 1]) and is_word_char(ch)
            if not ch.isspace() and not inside_word:
                starts.setdefault(pieces[i][0], []).append(offsets[i])
            after_word = i + 1 < len(text) and is_word_char(text[i + 1]) and is_word_char(ch)
            if not ch.isspace() and not after_word:
                ends.add(offsets[i + 1])
        return cls(b"".join(pieces), starts, frozenset(ends), frozenset(blocked))


@dataclass
class Automaton:
    """One program running on one text: start state, byte steps, what may come next."""

    program: AnswerProgram
    spans: TextSpans
    _closures: dict[Thread, State] = field(default_factory=dict, repr=False)

    @classmethod
    def for_text(cls, program: AnswerProgram, text: str) -> Automaton:
        return cls(program, TextSpans.of(text, program.escaped))

    def start(self) -> State:
        return self._close([(0, -1)])

    def _close(self, threads: Iterable[Thread]) -> State:
        out: set[Thread] = set()
        for thread in threads:
            closed = self._closures.get(thread)
            if closed is None:
                closed = self._closures[thread] = self._closure(thread)
            out |= closed
        return frozenset(out)

    def _closure(self, thread: Thread) -> State:
        code, ends = self.program.code, self.spans.ends
        out: set[Thread] = set()
        todo = [thread]
        while todo:
            pc, p = todo.pop()
            if (pc, p) in out:
                continue
            out.add((pc, p))
            op, a, b = code[pc]
            if op == SPLIT:
                todo += [(a, -1), (b, -1)]
            elif op == JMP:
                todo.append((a, -1))
            elif op == SUB and p in ends:
                todo.append((pc + 1, -1))
        return frozenset(t for t in out if code[t[0]][0] in (CHAR, SUB, MATCH))

    def step(self, state: State, byte: int) -> State:
        """The state after ``byte`` (empty: the byte is not allowed)."""
        code, data = self.program.code, self.spans.data
        nxt: list[Thread] = []
        for pc, p in state:
            op, a, _ = code[pc]
            if op == CHAR:
                if a == byte:
                    nxt.append((pc + 1, -1))
            elif op == SUB:
                if p < 0:
                    nxt += [(pc, s + 1) for s in self.spans.starts_by_byte.get(byte, ())]
                elif p < len(data) and data[p] == byte and p not in self.spans.blocked:
                    nxt.append((pc, p + 1))
        return self._close(nxt)

    def next_bytes(self, state: State) -> set[int]:
        """Bytes some thread of ``state`` can consume next."""
        code, data = self.program.code, self.spans.data
        out: set[int] = set()
        for pc, p in state:
            op, a, _ = code[pc]
            if op == CHAR:
                out.add(a)
            elif op == SUB:
                if p < 0:
                    out.update(self.spans.starts_by_byte)
                elif p < len(data) and p not in self.spans.blocked:
                    out.add(data[p])
        return out

    def accepts(self, state: State) -> bool:
        """Whether the answer may end here."""
        return any(self.program.code[pc][0] == MATCH for pc, _ in state)

    def shortest_completion(self, state: State) -> bytes | None:
        """The shortest bytes that take ``state`` to the end of an answer (for closing an
        answer before the token limit cuts it)."""
        code, data = self.program.code, self.spans.data
        seen: set[Thread] = set()
        queue = deque((t, b"") for t in sorted(state))
        while queue:
            (pc, p), path = queue.popleft()
            if (pc, p) in seen:
                continue
            seen.add((pc, p))
            op, a, _ = code[pc]
            if op == MATCH:
                return path
            if pc in self.program.exits:
                queue.appendleft(((self.program.final, -1), path))
            moves: list[tuple[int, Thread]] = []
            if op == CHAR:
                moves.append((a, (pc + 1, -1)))
            elif op == SUB and p < 0:
                moves += [(byte, (pc, starts[0] + 1))
                          for byte, starts in self.spans.starts_by_byte.items()]
            elif op == SUB and p < len(data) and p not in self.spans.blocked:
                moves.append((data[p], (pc, p + 1)))
            for byte, target in moves:
                for closed in sorted(self._close([target])):
                    queue.append((closed, path + bytes([byte])))
        return None
