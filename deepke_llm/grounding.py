"""Ground mention strings to character offsets in the text they came from.

Matching is exact first; when that finds nothing, it is case-, width- (NFKC) and
whitespace-insensitive ("Allenby's" finds "Allenby 's", "ＩＢＭ" finds "IBM"), with offsets mapped
back to the original text. English mentions prefer occurrences on word boundaries ("Ira" does not
land inside "Iran" when a standalone "Ira" exists); Chinese text has no spaces and needs none.

- NER labels every non-overlapping occurrence of each predicted mention (longer mentions first).
- RE picks the (head, tail) occurrence pair nearest to each other.
- EE picks the trigger occurrence closest to its arguments, then each argument nearest the trigger.

A grounded record's text is always ``text[start:end]`` (after a fuzzy match, the text as it
appears). A mention that cannot be found keeps null offsets and adds one error line; nothing is
dropped.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import lru_cache

from deepke_llm.cjk import is_cjk
from deepke_llm.records import Argument, Entity, Event, Relation

__all__ = ["find_mention", "ground_entities", "ground_events", "ground_records",
           "ground_relations", "shift"]

Offsets = tuple[int, int]


def _is_word_char(ch: str) -> bool:
    # CJK characters are "word" characters but Chinese has no word boundaries to respect
    return ch.isalnum() and not is_cjk(ch)


def _on_boundary(text: str, start: int, end: int) -> bool:
    before = start == 0 or not (_is_word_char(text[start - 1]) and _is_word_char(text[start]))
    after = end == len(text) or not (_is_word_char(text[end]) and _is_word_char(text[end - 1]))
    return before and after


def _exact(text: str, mention: str) -> list[Offsets]:
    out = []
    i = text.find(mention)
    while i >= 0:
        out.append((i, i + len(mention)))
        i = text.find(mention, i + len(mention))
    return out


@lru_cache(maxsize=64)
def _folded(text: str) -> tuple[str, tuple[int, ...]]:
    """``text`` without whitespace, NFKC-normalised and lower-cased, with each char's origin."""
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


def _fuzzy(text: str, mention: str) -> list[Offsets]:
    folded_text, origin = _folded(text)
    folded_mention, _ = _folded(mention)
    if not folded_mention:
        return []
    return [(origin[s], origin[e - 1] + 1) for s, e in _exact(folded_text, folded_mention)]


def find_mention(text: str, mention: str, trim_punctuation: bool = True) -> list[Offsets]:
    """All non-overlapping occurrences of ``mention`` in ``text`` as (start, end) offsets.

    ``trim_punctuation`` leaves out sentence/clause punctuation the model copied with the mention
    (see :func:`_without_clause_punctuation`); turn it off for corpora whose gold spans keep it.
    """
    if not mention or not mention.strip():
        return []
    found = _exact(text, mention) or _fuzzy(text, mention)
    found = [o for o in found if _on_boundary(text, *o)] or found
    if not trim_punctuation:
        return found
    return [_without_clause_punctuation(text, o) for o in found]


_CLAUSE_PUNCTUATION = ",;:"
_CJK_PUNCTUATION = "。，；：、！？"


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
    rest = text[end:].lstrip()
    if rest and not (rest[0].isupper() or rest[0] in "\"'“‘("):
        return span
    word = text[start:end - 1].rsplit(None, 1)[-1]
    if len(word) <= 1 or "." in word or not word[-1].isalnum() or word.lower() in _ABBREVIATIONS:
        return span
    return _rstrip(text, start, end - 1)


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


def _distance(a: Offsets, b: Offsets) -> int:
    return max(0, max(a[0], b[0]) - min(a[1], b[1]))


def _overlaps(span: Offsets, taken: Iterable[Offsets]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in taken)


def ground_entities(text: str, entities: Sequence[Entity], trim_punctuation: bool = True
                    ) -> tuple[list[Entity], list[str]]:
    """Ground NER predictions: every non-overlapping occurrence becomes one entity."""
    errors: list[str] = []
    taken: list[Offsets] = []
    by_span: dict[Offsets, Entity] = {}
    out: list[tuple[int, Entity]] = []
    order = sorted(range(len(entities)), key=lambda i: -len(entities[i].text))
    for i in order:
        entity = entities[i]
        if entity.start is not None:
            out.append((i, entity))
            continue
        occurrences = find_mention(text, entity.text, trim_punctuation)
        if not occurrences:
            errors.append(f"entity '{entity.text}' ({entity.type}) not found in the text")
            out.append((i, entity))
            continue
        free = [o for o in occurrences if not _overlaps(o, taken)]
        if not free:
            same = [o for o in occurrences if o in by_span]
            if same and all(by_span[o].type != entity.type for o in same):
                errors.append(f"entity '{entity.text}' predicted as both {by_span[same[0]].type} "
                              f"and {entity.type}; kept {by_span[same[0]].type}")
                continue
            free = occurrences[:1]  # nested inside a longer mention: keep one, do not lose it
        for start, end in free:
            grounded = replace(entity, text=text[start:end], start=start, end=end)
            if (start, end) in by_span and by_span[(start, end)] == grounded:
                continue
            taken.append((start, end))
            by_span[(start, end)] = grounded
            out.append((i, grounded))
    out.sort(key=lambda pair: (pair[1].start if pair[1].start is not None else 1 << 60, pair[0]))
    return [entity for _, entity in out], errors


def ground_relations(text: str, relations: Sequence[Relation], trim_punctuation: bool = True
                     ) -> tuple[list[Relation], list[str]]:
    """Ground RE predictions: head and tail at the nearest pair of occurrences."""
    errors: list[str] = []
    out: list[Relation] = []
    for relation in relations:
        heads = [(relation.head.start, relation.head.end)] if relation.head.start is not None \
            else find_mention(text, relation.head.text, trim_punctuation)
        tails = [(relation.tail.start, relation.tail.end)] if relation.tail.start is not None \
            else find_mention(text, relation.tail.text, trim_punctuation)
        for side, found in (("head", heads), ("tail", tails)):
            if not found:
                mention = relation.head.text if side == "head" else relation.tail.text
                errors.append(f"relation '{relation.type}': {side} '{mention}' not found in the text")
        head, tail = _nearest_pair(heads, tails)
        out.append(replace(relation, head=_at(relation.head, text, head),
                           tail=_at(relation.tail, text, tail)))
    return out, errors


def _nearest_pair(heads: list[Offsets], tails: list[Offsets]) -> tuple[Offsets | None, Offsets | None]:
    if not heads or not tails:
        return (heads[0] if heads else None), (tails[0] if tails else None)
    candidates = [(h, t) for h in heads for t in tails if h != t] or [(heads[0], tails[0])]
    # nearest first; ties go to the earliest pair, which keeps results deterministic
    return min(candidates, key=lambda pair: (_distance(*pair), pair[0][0], pair[1][0]))


def ground_events(text: str, events: Sequence[Event], trim_punctuation: bool = True
                  ) -> tuple[list[Event], list[str]]:
    """Ground EE predictions: trigger nearest its arguments, arguments nearest the trigger."""
    errors: list[str] = []
    out: list[Event] = []
    for event in events:
        if event.trigger.start is not None:
            trigger_options = [(event.trigger.start, event.trigger.end)]
        else:
            trigger_options = find_mention(text, event.trigger.text, trim_punctuation)
        if not trigger_options:
            errors.append(f"event '{event.type}': trigger '{event.trigger.text}' not found in the text")
        arg_options = [
            [(a.start, a.end)] if a.start is not None
            else find_mention(text, a.text, trim_punctuation)
            for a in event.arguments
        ]
        trigger: Offsets | None = None
        if trigger_options:
            trigger = min(trigger_options, key=lambda t: (
                sum(min(_distance(t, o) for o in opts) for opts in arg_options if opts), t[0]))
        arguments: list[Argument] = []
        for argument, options in zip(event.arguments, arg_options, strict=True):
            if not options:
                errors.append(f"event '{event.type}': argument '{argument.text}' "
                              f"({argument.role}) not found in the text")
                arguments.append(argument)
                continue
            anchor = trigger or options[0]
            best = min(options, key=lambda o: (_distance(anchor, o), o[0]))
            arguments.append(_at(argument, text, best))
        span = _at(event.trigger, text, trigger)
        out.append(Event(event.type, span, tuple(arguments)))
    return out, errors


def _at(item, text: str, offsets: Offsets | None):
    """``item`` placed at ``offsets``, its text the text found there (a fuzzy match may differ
    from what the model wrote: "japan's" grounds as "Japan 's"), or unchanged when not found."""
    if offsets is None:
        return item
    start, end = offsets
    return replace(item, text=text[start:end], start=start, end=end)


def ground_records(task: str, text: str, records: Sequence, trim_punctuation: bool = True
                   ) -> tuple[list, list[str]]:
    """Ground the records of one task (``ner``/``re``/``ee``) against ``text``."""
    grounders = {"ner": ground_entities, "re": ground_relations, "ee": ground_events}
    return grounders[task](text, records, trim_punctuation)


def _shift_offsets(item, delta: int):
    if getattr(item, "start", None) is None:
        return item
    return replace(item, start=item.start + delta, end=item.end + delta)


def shift(record, delta: int):
    """The record with all offsets moved by ``delta`` (window -> document coordinates)."""
    if delta == 0:
        return record
    if isinstance(record, Relation):
        return replace(record, head=_shift_offsets(record.head, delta),
                       tail=_shift_offsets(record.tail, delta))
    if isinstance(record, Event):
        return Event(record.type, _shift_offsets(record.trigger, delta),
                     tuple(_shift_offsets(a, delta) for a in record.arguments))
    return _shift_offsets(record, delta)
