"""Grounding is O(n log n) in the occurrences of a mention and chooses exactly what the old
brute-force grounding chose (a copy of it lives here, and only here, as the reference)."""

from __future__ import annotations

import random
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest

from deepke_llm import grounding
from deepke_llm.grounding import (
    GroundingOptions,
    _exact,
    _on_boundary,
    _rstrip,
    find_mention,
    ground_entities,
    ground_events,
    ground_relations,
    nearest_pair,
)
from deepke_llm.records import Argument, Entity, Event, Relation, Span
from deepke_llm.span_index import SpanIndex
from deepke_llm.span_index import distance as _distance

Offsets = tuple[int, int]


# --- the brute-force reference: grounding as it was before it was made O(n log n) -------------

def _reference_folded(text: str) -> tuple[str, tuple[int, ...]]:
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        for piece in unicodedata.normalize("NFKC", ch).lower():
            if not piece.isspace():
                chars.append(piece)
                origin.append(i)
    return "".join(chars), tuple(origin)


def _reference_find_mention(text: str, mention: str, trim_punctuation: bool = True) -> list[Offsets]:
    if not mention or not mention.strip():
        return []
    found = _exact(text, mention)
    if not found:
        folded_text, origin = _reference_folded(text)
        folded_mention, _ = _reference_folded(mention)
        if folded_mention:
            found = [(origin[s], origin[e - 1] + 1) for s, e in _exact(folded_text, folded_mention)]
    found = [o for o in found if _on_boundary(text, *o)] or found
    if not trim_punctuation:
        return found
    return [_reference_trim(text, o) for o in found]


def _reference_trim(text: str, span: Offsets) -> Offsets:
    start, end = span
    last = text[end - 1]
    if end - start < 2:
        return span
    if last in grounding._CJK_PUNCTUATION:
        return _rstrip(text, start, end - 1)
    if end < len(text) and not text[end].isspace():
        return span
    if last in grounding._CLAUSE_PUNCTUATION:
        return _rstrip(text, start, end - 1)
    if last != ".":
        return span
    rest = text[end:].lstrip()
    if rest and not (rest[0].isupper() or rest[0] in "\"'“‘("):
        return span
    words = text[start:end - 1].rsplit(None, 1)
    if not words:  # the one change: the old code raised IndexError on " ." (test_grounding.py)
        return span
    word = words[-1]
    if len(word) <= 1 or "." in word or not word[-1].isalnum() or word.lower() in grounding._ABBREVIATIONS:
        return span
    return _rstrip(text, start, end - 1)


def _reference_entities(text: str, entities: Sequence[Entity], trim: bool) -> tuple[list, list]:
    errors: list[str] = []
    taken: list[Offsets] = []
    by_span: dict[Offsets, Entity] = {}
    out: list[tuple[int, Entity]] = []
    for i in sorted(range(len(entities)), key=lambda i: -len(entities[i].text)):
        entity = entities[i]
        if entity.start is not None:
            out.append((i, entity))
            continue
        occurrences = _reference_find_mention(text, entity.text, trim)
        if not occurrences:
            errors.append(f"entity '{entity.text}' ({entity.type}) not found in the text")
            out.append((i, entity))
            continue
        free = [o for o in occurrences if not any(o[0] < e and s < o[1] for s, e in taken)]
        if not free:
            same = [o for o in occurrences if o in by_span]
            if same:
                other = [o for o in same if by_span[o].type != entity.type]
                if other:
                    errors.append(f"entity '{entity.text}' predicted as both {by_span[other[0]].type} "
                                  f"and {entity.type}; kept {entity.type} (the later answer)")
                for span in other:  # the later answer relabels every occurrence
                    old, by_span[span] = by_span[span], replace(by_span[span], type=entity.type)
                    out = [(j, by_span[span] if e is old else e) for j, e in out]
                continue
            free = occurrences[:1]
        for start, end in free:
            grounded = replace(entity, text=text[start:end], start=start, end=end)
            if (start, end) in by_span and by_span[(start, end)] == grounded:
                continue
            taken.append((start, end))
            by_span[(start, end)] = grounded
            out.append((i, grounded))
    out.sort(key=lambda pair: (pair[1].start if pair[1].start is not None else 1 << 60, pair[0]))
    return [entity for _, entity in out], errors


def _reference_pair(heads: list[Offsets], tails: list[Offsets]) -> tuple:
    if not heads or not tails:
        return (heads[0] if heads else None), (tails[0] if tails else None)
    candidates = [(h, t) for h in heads for t in tails if h != t] or [(heads[0], tails[0])]
    return min(candidates, key=lambda pair: (_distance(*pair), pair[0][0], pair[1][0]))


def _options(text: str, part, trim: bool) -> list[Offsets]:
    if part.start is not None:
        return [(part.start, part.end)]
    return _reference_find_mention(text, part.text, trim)


def _at(item, text: str, offsets):
    if offsets is None:
        return item
    return replace(item, text=text[offsets[0]:offsets[1]], start=offsets[0], end=offsets[1])


def _reference_relations(text: str, relations: Sequence[Relation], trim: bool) -> tuple[list, list]:
    errors, out = [], []
    for relation in relations:
        heads, tails = _options(text, relation.head, trim), _options(text, relation.tail, trim)
        for side, found, mention in (("head", heads, relation.head.text),
                                     ("tail", tails, relation.tail.text)):
            if not found:
                errors.append(f"relation '{relation.type}': {side} '{mention}' not found in the text")
        head, tail = _reference_pair(heads, tails)
        out.append(replace(relation, head=_at(relation.head, text, head),
                           tail=_at(relation.tail, text, tail)))
    return out, errors


def _reference_events(text: str, events: Sequence[Event], trim: bool) -> tuple[list, list]:
    errors, out = [], []
    for event in events:
        trigger_options = _options(text, event.trigger, trim)
        if not trigger_options:
            errors.append(f"event '{event.type}': trigger '{event.trigger.text}' not found in the text")
        arg_options = [_options(text, a, trim) for a in event.arguments]
        trigger = None
        if trigger_options:
            trigger = min(trigger_options, key=lambda t: (
                sum(min(_distance(t, o) for o in opts) for opts in arg_options if opts), t[0]))
        arguments = []
        for argument, options in zip(event.arguments, arg_options, strict=True):
            if not options:
                errors.append(f"event '{event.type}': argument '{argument.text}' "
                              f"({argument.role}) not found in the text")
                arguments.append(argument)
                continue
            anchor = trigger or options[0]
            arguments.append(_at(argument, text, min(options, key=lambda o: (_distance(anchor, o), o[0]))))
        out.append(Event(event.type, _at(event.trigger, text, trigger), tuple(arguments)))
    return out, errors


# --- random texts and mentions that reach every branch ----------------------------------------

# words that fold ("ⅲ" is three letters in one character, "ﬁ" two, "İ" lower-cases to two),
# abbreviations, Chinese; separators with Unicode and ASCII control whitespace
_WORDS = ["Bob", "bob", "Ann", "ann", "Acme", "Corp.", "U.S.", "ⅲ", "iii", "i", "ﬁ", "fi", "Ｂob",
          "张三", "北京", "上海", "york", "New", "York", "Syria", "a", "aa", "x.", "St.", "'s",
          "İ", "i̇", "Straße", "STRASSE", "ǅ"]
_SEPARATORS = [" ", " ", "  ", ", ", ". ", "; ", "，", "。", "", "\n", " ( ", ": ", "\u00a0",
               "\x1c", "\u3000", " . ", " ，"]


def _random_text(rng: random.Random) -> str:
    pieces = []
    for _ in range(rng.randint(1, 40)):
        pieces.append(rng.choice(_WORDS))
        pieces.append(rng.choice(_SEPARATORS))
    return "".join(pieces)


def _random_mention(rng: random.Random, text: str) -> str:
    roll = rng.random()
    if roll < 0.5 and text:
        start = rng.randrange(len(text))
        mention = text[start:start + rng.randint(1, 12)]
    elif roll < 0.8:
        mention = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))
    else:
        mention = rng.choice(_WORDS) + rng.choice([".", ",", "。", "，", " ", "", " .", " ，"])
    if rng.random() < 0.2:
        mention = mention.upper() if rng.random() < 0.5 else mention.lower()
    return mention


def _random_part(rng: random.Random, text: str, make: Callable):
    mention = _random_mention(rng, text)
    if rng.random() < 0.1 and text:  # already grounded (a record read from a file)
        start = rng.randrange(len(text))
        end = rng.randint(start, len(text))
        return make(text[start:end], start, end)
    return make(mention, None, None)


@pytest.mark.parametrize("seed", range(40))
def test_grounding_chooses_what_the_brute_force_reference_chooses(seed):
    rng = random.Random(seed)
    for _ in range(60):
        text = _random_text(rng)
        trim = rng.random() < 0.7
        options = GroundingOptions(trim_punctuation=trim)
        for _ in range(3):
            mention = _random_mention(rng, text)
            assert find_mention(text, mention, options) == _reference_find_mention(text, mention, trim)
        entities = [_random_part(rng, text, lambda m, s, e: Entity(rng.choice("PL"), m, s, e))
                    for _ in range(rng.randint(1, 8))]
        assert ground_entities(text, entities, options) == _reference_entities(text, entities, trim)
        relations = [Relation("r", _random_part(rng, text, lambda m, s, e: Entity("", m, s, e)),
                              _random_part(rng, text, lambda m, s, e: Entity("", m, s, e)))
                     for _ in range(rng.randint(1, 4))]
        assert ground_relations(text, relations, options) == _reference_relations(text, relations, trim)
        events = [Event("e", _random_part(rng, text, lambda m, s, e: Span(m, s, e)),
                        tuple(_random_part(rng, text, lambda m, s, e, r=r: Argument(r, m, s, e))
                              for r in rng.sample("abcd", rng.randint(0, 4))))
                  for _ in range(rng.randint(1, 3))]
        assert ground_events(text, events, options) == _reference_events(text, events, trim)


def _random_spans(rng: random.Random, n: int) -> list[Offsets]:
    spans = []
    for _ in range(n):
        start = rng.randint(0, 30)
        spans.append((start, start + rng.choice([0, 1, 1, 2, 3, 5, 9])))
    if spans and rng.random() < 0.3:  # duplicates, as one wide character folding to "iii" gives
        spans += rng.choices(spans, k=rng.randint(1, 3))
    if rng.random() < 0.5:
        spans.sort()
    return spans


@pytest.mark.parametrize("seed", range(20))
def test_nearest_pair_and_distance_match_brute_force_on_any_spans(seed):
    """Unsorted, overlapping, nested, empty and repeated spans: same pair, same tie-breaks."""
    rng = random.Random(seed)
    for _ in range(300):
        heads, tails = _random_spans(rng, rng.randint(0, 6)), _random_spans(rng, rng.randint(0, 6))
        if rng.random() < 0.2 and heads:  # heads that are also tails
            tails = tails + rng.sample(heads, k=rng.randint(1, len(heads)))
        assert nearest_pair(heads, tails) == _reference_pair(heads, tails), (heads, tails)
        if tails:
            assert SpanIndex(tails).distances(heads) == [min(_distance(h, t) for t in tails)
                                                          for h in heads]


def _python_work(function: Callable[[], object]) -> int:
    """How many Python lines ``function`` runs (a count of work that does not depend on the
    machine's speed, unlike a timing)."""
    lines = 0

    def trace(frame, event, arg):
        nonlocal lines
        if event == "line":
            lines += 1
        return trace

    sys.settrace(trace)
    try:
        function()
    finally:
        sys.settrace(None)
    return lines


def _grounding_work(task: str, n: int) -> int:
    text = " ".join(["Bob met Ann ."] * n)
    if task == "ner":  # the second entity checked against every span the first one took
        return _python_work(lambda: ground_entities(text, [Entity("person", "Bob"),
                                                           Entity("location", "Bob"),
                                                           Entity("person", "Ann")]))
    if task == "re":
        return _python_work(lambda: ground_relations(
            text, [Relation("knows", Entity("person", "Bob"), Entity("person", "Ann"))]))
    return _python_work(lambda: ground_events(
        text, [Event("meet", Span("met"), (Argument("a", "Bob"), Argument("b", "Ann")))]))


@pytest.mark.parametrize("task", ["ner", "re", "ee"])
def test_grounding_work_grows_like_n_log_n_not_n_squared(task):
    """Doubling the occurrences of a mention about doubles the work (the old grounding
    compared every occurrence with every other one: four times the work)."""
    small, large = _grounding_work(task, 300), _grounding_work(task, 600)
    assert large < 2.6 * small, (small, large)


class _CountingText(str):
    """A text that counts the characters copied out of it by slicing."""

    copied = 0

    def __getitem__(self, key):
        item = str.__getitem__(self, key)
        if isinstance(key, slice):
            _CountingText.copied += len(item)
        return item


def test_trimming_a_sentence_final_period_does_not_copy_the_rest_of_the_text():
    """Deciding whether "Ann." ends a sentence looked at ``text[end:]``: a copy of the rest of
    the text per occurrence, quadratic in the occurrences."""
    text = _CountingText("Bob met Ann. " * 2000)
    _CountingText.copied = 0
    found = find_mention(text, "Ann.")
    assert len(found) == 2000 and all(text[s:e] == "Ann" for s, e in found)
    assert _CountingText.copied < 4 * len(text)  # the old code copied ~1,000 texts' worth
