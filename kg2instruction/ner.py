"""Optional spaCy NER over the gazetteer mentions: confirm them or propose more.

- ``confirm``: keep a gazetteer mention only when an NER entity covers it — for gazetteers full of
  common-word aliases ("Gentleman", "second");
- ``propose``: an NER entity the gazetteer missed becomes a mention when its text, as written or
  with changed case, is a KB alias.
Any spaCy pipeline with an ``ner`` or ``entity_ruler`` component works (``spacy.load`` of a name
or directory); nothing is downloaded.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter

from kg2instruction.kb import KnowledgeBase
from kg2instruction.mentions import Mention

MODES = ("confirm", "propose")


class NerFilter:
    """Runs a spaCy pipeline on a document and applies ``mode`` to its mentions."""

    def __init__(self, model: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown NER mode '{mode}': use confirm or propose")
        try:
            import spacy
        except ImportError:
            raise ImportError("--ner-model needs spaCy: pip install spacy") from None
        try:
            self.nlp = spacy.load(model)
        except OSError as exc:
            raise ImportError(f"cannot load spaCy pipeline '{model}' ({exc}); give a "
                              "pipeline directory or an installed pipeline name") from None
        self.mode = mode

    def apply(self, kb: KnowledgeBase, text: str, sentences: list[tuple[int, int]],
              mentions: list[Mention], stats: Counter) -> list[Mention]:
        spans = [(e.start_char, e.end_char) for e in self.nlp(text).ents]
        stats["ner_entities"] += len(spans)
        if self.mode == "confirm":
            kept = [m for m in mentions
                    if any(s <= m.start and m.end <= e for s, e in spans)]
            stats["ner_unconfirmed"] += len(mentions) - len(kept)
            return kept
        taken = [(m.start, m.end) for m in mentions]
        bounds = [s[0] for s in sentences]
        added = []
        for start, end in spans:
            if any(start < e and s < end for s, e in taken):
                continue
            alias = _lookup(kb, text[start:end])
            k = bisect_right(bounds, start) - 1
            if alias is None or k < 0 or end > sentences[k][1]:
                continue
            added.append(Mention(start, end, alias, k))
        stats["ner_proposed"] += len(added)
        return sorted(mentions + added, key=lambda m: m.start)


def _lookup(kb: KnowledgeBase, surface: str) -> int | None:
    # NER spans are names, so capitalised spellings are tried before the lower-case one
    for form in (surface, surface.title(), surface.capitalize(), surface.lower()):
        if len(form) != len(surface):
            continue
        alias = kb.automaton.get(kb.key(form), None) if kb.automaton is not None and len(kb.automaton) \
            else None
        if alias is not None:
            return alias
    return None
