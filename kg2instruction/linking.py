"""Candidate generation and disambiguation of gazetteer mentions.

Evidence for a candidate entity of an ambiguous mention, strongest first:
1. KB coherence in the sentence: other mentions of the sentence have a candidate the KB relates
   to it (weighted by how sure we are of that other mention) — the pair the KB relates wins;
2. KB coherence in the document: the same, from mentions in other sentences, and the entity
   being named unambiguously elsewhere in the document;
3. context similarity between the sentence and the entity's profile (TF-IDF or embeddings);
4. the prior: popularity when the KB gives it, else KB degree, normalised over the candidates.
Two rounds: the second uses the first round's decisions, so two ambiguous mentions can resolve
each other. Every decision records which evidence decided it (for the stats); when the best
candidates score exactly the same it is a tie, marked uncertain with the tied candidates (the
pipeline then leaves the mention unlinked: choosing the first would be a coin flip).
"""

from __future__ import annotations

from dataclasses import dataclass

from deepke_llm.config import config_field
from kg2instruction.kb import KnowledgeBase
from kg2instruction.mentions import Mention


@dataclass(frozen=True)
class LinkerConfig:
    """Weights of the evidence (see the module docstring) and candidate limits."""

    sentence_coherence: float = config_field(4.0, help="Weight per related mention in the same "
                                                       "sentence.")
    document_coherence: float = config_field(1.0, help="Weight per related mention elsewhere in "
                                                       "the document.")
    same_entity_in_document: float = config_field(2.0, help="Weight of the entity being named "
                                                            "unambiguously elsewhere in the "
                                                            "document.")
    context: float = config_field(2.0, help="Times the context similarity in [0, 1].")
    prior: float = config_field(0.5, help="Times the normalised prior in [0, 1].")
    proximity_scale: float = config_field(50.0, help="Characters at which a partner's weight is "
                                                     "3/4 of an adjacent one.")
    max_candidates: int = config_field(50, minimum=1, help="Keep the most prior-likely "
                                                           "candidates of very ambiguous aliases.")
    max_document_mentions: int = config_field(200, help="Coherence partners per mention: the "
                                                        "nearest ones.")

    def __post_init__(self) -> None:
        if self.max_candidates < 1:
            raise ValueError("max_candidates must be at least 1")


@dataclass(slots=True)
class Link:
    entity: int
    how: str  # single, coherence, context, prior, combined (no one kind alone) or tie
    candidates: int
    certain: bool = True  # False when another candidate scored exactly as high
    tied: tuple[int, ...] = ()  # a tie's equally scored candidates (the chosen one included)


def candidate_lists(kb: KnowledgeBase, mentions: list[Mention],
                    config: LinkerConfig) -> list[list[int]]:
    """Candidate entities per mention, truncated to the most likely ``max_candidates``."""
    out = []
    for mention in mentions:
        candidates = list(kb.candidates(mention.alias))
        if len(candidates) > config.max_candidates:
            candidates.sort(key=lambda c: -kb.prior(c))
            candidates = candidates[:config.max_candidates]
        out.append(candidates)
    return out


def _argmax_unique(values: list[float]) -> int | None:
    best = max(values)
    if best <= 0 or values.count(best) > 1:
        return None
    return values.index(best)


def disambiguate(kb: KnowledgeBase, text: str, sentences: list[tuple[int, int]],
                 mentions: list[Mention], candidates: list[list[int]], config: LinkerConfig,
                 context_scorer=None) -> list[Link]:
    """Choose one entity per mention (see the module docstring)."""
    links: list[Link | None] = [Link(c[0], "single", 1) if len(c) == 1 else None
                                for c in candidates]
    ambiguous = [i for i, link in enumerate(links) if link is None]
    if not ambiguous:
        return links  # type: ignore[return-value]
    fixed_entities = {link.entity for link in links if link is not None}
    local = {i: _local_scores(kb, text, sentences, mentions[i], candidates[i], config,
                              context_scorer) for i in ambiguous}
    # belief over each mention's candidates: 1 for sure mentions, local-score share otherwise
    belief: list[dict[int, float]] = []
    for i, cands in enumerate(candidates):
        if links[i] is not None:
            belief.append({cands[0]: 1.0})
        else:
            total = sum(s for s, _, _ in local[i])
            belief.append({c: (s / total if total > 0 else 1.0 / len(cands))
                           for c, (s, _, _) in zip(cands, local[i], strict=True)})
    in_document = {c for cands in candidates for c in cands}
    related = {c: kb.related_among(c, in_document) - {c} for i in ambiguous
               for c in candidates[i]}
    for _ in range(2):
        decided = {}
        for i in ambiguous:
            # the nearest mentions of a long document are its coherence partners
            half = config.max_document_mentions // 2
            partners = range(max(0, i - half), min(len(mentions), i + half + 1))
            decided[i] = _decide(i, mentions, candidates, belief, partners, fixed_entities,
                                 related, local[i], config)
        for i, link in decided.items():
            # a tie stays soft: making a coin flip firm would let it "confirm" its partner
            if link.certain:
                belief[i] = {link.entity: 1.0}
            links[i] = link
    return links  # type: ignore[return-value]


def _local_scores(kb: KnowledgeBase, text: str, sentences: list[tuple[int, int]],
                  mention: Mention, cands: list[int], config: LinkerConfig,
                  context_scorer) -> list[tuple[float, float, float]]:
    """Per candidate: (weighted local score, context similarity, normalised prior)."""
    priors = [kb.prior(c) + 1.0 for c in cands]  # +1: unseen entities keep some mass
    total = sum(priors)
    priors = [p / total for p in priors]
    if context_scorer is not None:
        start, end = sentences[mention.sentence]
        # TF-IDF leaves out the mention's own words (every candidate shares them); an
        # embedding scorer sees the whole sentence
        context = text[start:end]
        similarity = context_scorer.scores(context, text[mention.start:mention.end], cands)
    else:
        similarity = [0.0] * len(cands)
    return [(config.context * s + config.prior * p, s, p)
            for s, p in zip(similarity, priors, strict=True)]


def _decide(i: int, mentions: list[Mention], candidates: list[list[int]],
            belief: list[dict[int, float]], partners: range, fixed_entities: set[int],
            related: dict[int, set[int]], local: list[tuple[float, float, float]],
            config: LinkerConfig) -> Link:
    mention = mentions[i]
    cands = candidates[i]
    coherence = [0.0] * len(cands)
    for j in partners:
        other = mentions[j]
        if j == i or other.alias == mention.alias:
            continue
        if other.sentence == mention.sentence:
            # nearer mentions are likelier to be what this one relates to: the weight falls
            # from 1 (adjacent) towards 1/2 (far apart) so that counts of support still rule
            gap = max(other.start - mention.end, mention.start - other.end, 0)
            weight = config.sentence_coherence * (0.5 + 0.5 / (1.0 + gap / config.proximity_scale))
        else:
            weight = config.document_coherence
        beliefs = belief[j]
        for k, c in enumerate(cands):
            linked = related[c]
            if linked:
                support = max((b for e, b in beliefs.items() if e in linked), default=0.0)
                coherence[k] += weight * support
    for k, c in enumerate(cands):
        if c in fixed_entities:
            coherence[k] += config.same_entity_in_document
    totals = [coherence[k] + local[k][0] for k in range(len(cands))]
    best = max(range(len(cands)), key=lambda k: (totals[k], -k))
    tied = tuple(cands[k] for k in range(len(cands)) if totals[best] - totals[k] <= 1e-9)
    if len(tied) > 1:
        # the first listed candidate would win: a coin flip, whatever its id
        return Link(cands[best], "tie", len(cands), certain=False, tied=tied)
    how = "combined"
    for name, values in (("coherence", coherence), ("context", [s for _, s, _ in local]),
                         ("prior", [p for _, _, p in local])):
        if _argmax_unique(values) == best:
            how = name
            break
    return Link(cands[best], how, len(cands))
