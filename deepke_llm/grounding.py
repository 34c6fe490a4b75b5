"""Ground mention strings to character offsets in the text they came from.

Matching is exact first; when that finds nothing, it is case-, width- (NFKC) and
whitespace-insensitive ("Allenby's" finds "Allenby 's", "ＩＢＭ" finds "IBM"), with offsets mapped
back to the original text. English mentions prefer occurrences on word boundaries ("Ira" does not
land inside "Iran" when a standalone "Ira" exists); Chinese text has no spaces and needs none.

- NER labels every non-overlapping occurrence of each predicted mention (longer mentions first).
- RE picks the (head, tail) occurrence pair nearest to each other.
- EE picks the trigger occurrence closest to its arguments, then each argument nearest the trigger.

Every choice is O(n log n) in the number of occurrences (sorted spans and binary search): a
mention that occurs 100,000 times in a window grounds in under a second (measured by
benchmarks/reliability/fuzz.py).

A grounded record's text is always ``text[start:end]`` (after a fuzzy match, the text as it
appears). A mention that cannot be found keeps null offsets and adds one error line; nothing is
dropped.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache, partial
from itertools import compress
from operator import not_
from typing import Any

from deepke_llm.cjk import is_cjk
from deepke_llm.records import Argument, Entity, Event, Relation
from deepke_llm.span_index import Offsets, SpanIndex, TakenSpans

__all__ = ["GroundingOptions", "find_mention", "ground_entities", "ground_events", "ground_relations",
           "is_word_char", "nearest_pair"]


@dataclass(frozen=True)
class GroundingOptions:
    """How mention strings are matched to the text (one object, passed through every grounder)."""

    trim_punctuation: bool = True
    """Leave out sentence/clause punctuation the model copied with a mention (see
    :func:`_without_clause_punctuation`); off for corpora whose gold spans keep it."""


DEFAULT_GROUNDING = GroundingOptions()


def is_word_char(ch: str) -> bool:
    """A letter or digit of a language that separates words (CJK characters are not)."""
    # CJK characters are "word" characters but Chinese has no word boundaries to respect
    return ch.isalnum() and not is_cjk(ch)


def _on_boundary(text: str, start: int, end: int) -> bool:
    before = start == 0 or not (is_word_char(text[start - 1]) and is_word_char(text[start]))
    after = end == len(text) or not (is_word_char(text[end]) and is_word_char(text[end - 1]))
    return before and after


def _exact(text: str, mention: str) -> list[Offsets]:
    out = []
    i = text.find(mention)
    while i >= 0:
        out.append((i, i + len(mention)))
        i = text.find(mention, i + len(mention))
    return out


_ASCII_RUN = re.compile(r"[\x00-\x7f]+")


def _fold(text: str) -> tuple[str, array]:
    """``text`` without whitespace, NFKC-normalised and lower-cased, with each char's origin."""
    pieces: list[str] = []
    origin = array("I" if len(text) < 1 << 32 else "Q")
    done = 0
    for run in _ASCII_RUN.finditer(text):
        _fold_chars(text, done, run.start(), pieces, origin)
        # ASCII is NFKC already and lower-cases one to one: a run folds in bulk, not per char
        kept = list(map(not_, map(str.isspace, run.group())))
        pieces.append("".join(compress(run.group(), kept)).lower())
        origin.extend(compress(range(run.start(), run.end()), kept))
        done = run.end()
    _fold_chars(text, done, len(text), pieces, origin)
    return "".join(pieces), origin


def _fold_chars(text: str, start: int, end: int, pieces: list[str], origin: array) -> None:
    for i in range(start, end):
        ch = text[i]
        if ch.isspace():
            continue
        for piece in unicodedata.normalize("NFKC", ch).lower():
            if not piece.isspace():
                pieces.append(piece)
                origin.append(i)


# Grounding goes window by window and asks about one text many times in a row: caching only the
# latest text keeps the memory bound to one text (a cache of many whole texts held gigabytes).
_folded_text = lru_cache(maxsize=1)(_fold)


def _fuzzy(text: str, mention: str) -> list[Offsets]:
    folded_text, origin = _folded_text(text)
    # every non-space character folds to at least one: a longer mention cannot be in the text
    if len(mention) - sum(map(str.isspace, mention)) > len(folded_text):
        return []
    folded_mention, _ = _fold(mention)
    if not folded_mention:
        return []
    return [(origin[s], origin[e - 1] + 1) for s, e in _exact(folded_text, folded_mention)]


def find_mention(text: str, mention: str, options: GroundingOptions = DEFAULT_GROUNDING
                 ) -> list[Offsets]:
    """All non-overlapping occurrences of ``mention`` in ``text`` as (start, end) offsets."""
    if not mention or not mention.strip():
        return []
    found = _exact(text, mention)
    if found:
        found = _exact_on_boundary(text, mention, found)
        return _trim_exact(text, mention, found) if options.trim_punctuation else found
    found = _fuzzy(text, mention)
    found = [o for o in found if _on_boundary(text, *o)] or found
    if not options.trim_punctuation:
        return found
    return [_without_clause_punctuation(text, o) for o in found]


def _exact_on_boundary(text: str, mention: str, found: list[Offsets]) -> list[Offsets]:
    """:func:`_on_boundary` for exact matches, whose first and last characters are known."""
    check_start, check_end = is_word_char(mention[0]), is_word_char(mention[-1])
    if not (check_start or check_end):
        return found
    n = len(text)
    kept = [(start, end) for start, end in found
            if (not check_start or start == 0 or not is_word_char(text[start - 1]))
            and (not check_end or end == n or not is_word_char(text[end]))]
    return kept or found


_CLAUSE_PUNCTUATION = ",;:"
_NON_SPACE = re.compile(r"\S")
_CJK_PUNCTUATION = "。，；：、！？"
_TRIMMED = frozenset(_CLAUSE_PUNCTUATION + _CJK_PUNCTUATION + ".")


def _without_clause_punctuation(text: str, span: Offsets) -> Offsets:
    """``span`` without the sentence or clause punctuation a model copied along with the mention.

    Models trained on tokenised corpora see "Syria ." and, on running text, answer "Syria." for
    "... against Syria.". A trailing comma, semicolon or colon before a space or the end of the
    text (Chinese punctuation anywhere) is never part of a name; a trailing period is dropped only
    where it ends a sentence (end of text, or a space and a capital letter next) and does not close
    an abbreviation ("U.S.", "J.", "Corp."): "Acme Corp. said" and "the U.S. Open" stay whole.
    """
    start, end = span
    last = text[end - 1]
    if end - start < 2:
        return span
    if last in _CJK_PUNCTUATION:
        return _rstrip(text, start, end - 1)
    if end < len(text) and not text[end].isspace():
        return span
    if last in _CLAUSE_PUNCTUATION:
        return _rstrip(text, start, end - 1)
    if last != ".":
        return span
    following = _NON_SPACE.search(text, end)  # not text[end:]: that copy made grounding quadratic
    if following and not (following.group().isupper() or following.group() in "\"'“‘("):
        return span
    words = text[start:end - 1].rsplit(None, 1)
    if not words or not _may_end_sentence(words[-1]):  # " ." has no word the period could end
        return span
    return _rstrip(text, start, end - 1)


def _may_end_sentence(word: str) -> bool:
    """Can a period after ``word`` end a sentence (not "J.", "U.S.", "Corp.")?"""
    return len(word) > 1 and "." not in word and word[-1].isalnum() and word.lower() not in _ABBREVIATIONS


def _trim_exact(text: str, mention: str, found: list[Offsets]) -> list[Offsets]:
    """:func:`_without_clause_punctuation` for exact matches: what depends only on the mention
    is decided once, not once per occurrence."""
    last = mention[-1]
    if len(mention) < 2 or last not in _TRIMMED:
        return found
    cut = max(len(mention[:-1].rstrip()), 1)  # what _rstrip leaves of the mention
    if last in _CJK_PUNCTUATION:
        return [(start, start + cut) for start, _ in found]
    words = mention[:-1].rsplit(None, 1)
    if last == "." and not (words and _may_end_sentence(words[-1])):
        return found
    n = len(text)
    out = []
    for start, end in found:
        if end < n and not text[end].isspace():
            out.append((start, end))
        elif last != ".":
            out.append((start, start + cut))
        else:
            following = _NON_SPACE.search(text, end)
            ends_sentence = not following or following.group().isupper() or following.group() in "\"'“‘("
            out.append((start, start + cut) if ends_sentence else (start, end))
    return out


def _rstrip(text: str, start: int, end: int) -> Offsets:
    """(start, end) without trailing whitespace: a fuzzy "Bob," matches "Bob ," in token text."""
    while end > start + 1 and text[end - 1].isspace():
        end -= 1
    return start, end


# Why a list: titles and company suffixes keep their period even at the end of a sentence
# ("works for Acme Corp."); splitting that last period off would cut the name.
_ABBREVIATIONS = frozenset({
    "inc", "corp", "co", "ltd", "llc", "plc", "bhd", "jr", "sr", "st", "dr", "mr", "mrs", "ms",
    "prof", "gen", "col", "capt", "lt", "sgt", "rev", "bros", "ave"})


def ground_entities(text: str, entities: Sequence[Entity],
                    options: GroundingOptions = DEFAULT_GROUNDING
                    ) -> tuple[list[Entity], list[str]]:
    """Ground NER predictions: every non-overlapping occurrence becomes one entity."""
    errors: list[str] = []
    taken = TakenSpans()
    by_span: dict[Offsets, Entity] = {}
    position: dict[Offsets, int] = {}  # where by_span's entity stands in ``out``
    # output order: by start (ungrounded last), then input order; one int per key, not a tuple:
    # 100,000 occurrences make 100,000 records, and every extra object is work for the collector
    out: list[Entity] = []
    keys: list[int] = []
    stride, last = len(entities) + 1, 1 << 60
    order = sorted(range(len(entities)), key=lambda i: -len(entities[i].text))
    for i in order:
        entity = entities[i]
        if entity.start is not None:
            out.append(entity)
            keys.append(entity.start * stride + i)
            continue
        occurrences = find_mention(text, entity.text, options)
        if not occurrences:
            errors.append(f"entity '{_shown(entity.text)}' ({entity.type}) not found in the text")
            out.append(entity)
            keys.append(last * stride + i)
            continue
        free = [o for o in occurrences if not taken.overlaps(o)]
        if not free:
            same = [o for o in occurrences if o in by_span]
            if same:  # already labelled: by this answer's type, or by another
                # One mention under two types: the later answer wins. Why: on the default
                # model's answers the later type was the gold one in 8 of 8 such cases on
                # CoNLL-2003 dev[:500] (and 28 vs 18 on test, 34 vs 24 on People's Daily
                # test); the model tends to list a name early and correct itself later.
                other = [o for o in same if by_span[o].type != entity.type]
                if other:
                    errors.append(f"entity '{_shown(entity.text)}' predicted as both "
                                  f"{by_span[other[0]].type} and {entity.type}; kept "
                                  f"{entity.type} (the later answer)")
                for span in other:
                    relabelled = replace(by_span[span], type=entity.type)
                    out[position[span]] = by_span[span] = relabelled
                continue
            free = occurrences[:1]  # nested inside a longer mention: keep one, do not lose it
        labelled = []
        place = _placer(entity)
        for span in free:
            start, end = span
            grounded = place(text=text[start:end], start=start, end=end)
            if span in by_span and by_span[span] == grounded:
                continue
            labelled.append(span)
            by_span[span] = grounded
            position[span] = len(out)
            out.append(grounded)
            keys.append(start * stride + i)
        taken.add(labelled)
    return [out[k] for k in sorted(range(len(out)), key=keys.__getitem__)], errors


def ground_relations(text: str, relations: Sequence[Relation],
                     options: GroundingOptions = DEFAULT_GROUNDING
                     ) -> tuple[list[Relation], list[str]]:
    """Ground RE predictions: head and tail at the nearest pair of occurrences."""
    errors: list[str] = []
    out: list[Relation] = []
    for relation in relations:
        heads = [(relation.head.start, relation.head.end)] if relation.head.start is not None \
            else find_mention(text, relation.head.text, options)
        tails = [(relation.tail.start, relation.tail.end)] if relation.tail.start is not None \
            else find_mention(text, relation.tail.text, options)
        for side, found in (("head", heads), ("tail", tails)):
            if not found:
                mention = relation.head.text if side == "head" else relation.tail.text
                errors.append(f"relation '{relation.type}': {side} '{_shown(mention)}' not found in the text")
        head, tail = nearest_pair(heads, tails)
        out.append(replace(relation, head=_at(relation.head, text, head),
                           tail=_at(relation.tail, text, tail)))
    return out, errors


def nearest_pair(heads: list[Offsets], tails: list[Offsets]) -> tuple[Offsets | None, Offsets | None]:
    """The (head, tail) pair nearest to each other, head != tail unless nothing else exists;
    ties go to the earliest head start, then tail start (then list order): deterministic."""
    if not heads or not tails:
        return (heads[0] if heads else None), (tails[0] if tails else None)
    best: tuple[int, int, int, int, int] | None = None
    for h, (head, found) in enumerate(zip(heads, SpanIndex(tails).nearest(heads), strict=True)):
        if found is not None:
            key = (found[0], head[0], found[1], h, found[2])
            best = key if best is None or key < best else best
    if best is None:  # every tail is the head itself
        return heads[0], tails[0]
    return heads[best[3]], tails[best[4]]


def _closest(triggers: list[Offsets], arguments: list[list[Offsets]]) -> Offsets:
    """The trigger with the smallest summed distance to the nearest option of each argument
    (ties: earliest start, then list order)."""
    costs = [0] * len(triggers)
    for options in arguments:
        distances = SpanIndex(options).distances(triggers)
        costs = [cost + d for cost, d in zip(costs, distances, strict=True)]
    return triggers[_first_best(costs, triggers)]


def _first_best(costs: list[int], spans: Sequence[Offsets]) -> int:
    """The index of the lowest cost; ties go to the earliest start, then the earliest index
    (the order of ``min(..., key=(cost, start))``, without a key tuple per span)."""
    lowest = min(costs)
    return min((spans[k][0], k) for k, cost in enumerate(costs) if cost == lowest)[1]


def ground_events(text: str, events: Sequence[Event],
                  options: GroundingOptions = DEFAULT_GROUNDING
                  ) -> tuple[list[Event], list[str]]:
    """Ground EE predictions: trigger nearest its arguments, arguments nearest the trigger."""
    errors: list[str] = []
    out: list[Event] = []
    for event in events:
        if event.trigger.start is not None:
            trigger_options = [(event.trigger.start, event.trigger.end)]
        else:
            trigger_options = find_mention(text, event.trigger.text, options)
        if not trigger_options:
            errors.append(f"event '{event.type}': trigger '{_shown(event.trigger.text)}' not found in the text")
        arg_options = [
            [(a.start, a.end)] if a.start is not None
            else find_mention(text, a.text, options)
            for a in event.arguments
        ]
        trigger: Offsets | None = None
        if trigger_options:
            trigger = _closest(trigger_options, [opts for opts in arg_options if opts])
        arguments: list[Argument] = []
        for argument, places in zip(event.arguments, arg_options, strict=True):
            if not places:
                errors.append(f"event '{event.type}': argument '{_shown(argument.text)}' "
                              f"({argument.role}) not found in the text")
                arguments.append(argument)
                continue
            a_start, a_end = trigger or places[0]
            distances = [max(0, max(a_start, s) - min(a_end, e)) for s, e in places]
            arguments.append(_at(argument, text, places[_first_best(distances, places)]))
        span = _at(event.trigger, text, trigger)
        out.append(Event(event.type, span, tuple(arguments)))
    return out, errors


def _shown(mention: str, limit: int = 200) -> str:
    """``mention`` for an error line: a 1 MB "mention" must not make a 1 MB error."""
    return mention if len(mention) <= limit else mention[:limit] + f"... ({len(mention):,} characters)"


def _placer(item) -> Callable[..., Any]:
    """``dataclasses.replace(item, text=..., start=..., end=...)`` at a third of its cost, for
    the mention that occurs 100,000 times."""
    kept = {f.name: getattr(item, f.name) for f in fields(item)
            if f.init and f.name not in ("text", "start", "end")}
    return partial(type(item), **kept)


def _at(item, text: str, offsets: Offsets | None):
    """``item`` placed at ``offsets``, its text the text found there (a fuzzy match may differ
    from what the model wrote: "japan's" grounds as "Japan 's"), or unchanged when not found."""
    if offsets is None:
        return item
    start, end = offsets
    return replace(item, text=text[start:end], start=start, end=end)
