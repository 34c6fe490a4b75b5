"""The in-memory knowledge base: entities, an alias gazetteer and a relation index.

Sized for millions of aliases: the gazetteer is a pyahocorasick automaton storing plain C ints
(alias numbers), candidate lists live in flat ``array`` buffers (CSR layout), and entity pairs are
packed into single int keys. Worker processes forked after loading share all of it copy-on-write.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deepke_llm.problems import Problems
from kg2instruction.inputs import (
    EntityRecord,
    InputError,
    RelationInfo,
    read_entities,
    read_relations,
    read_triples,
)

# a relation is treated as symmetric when more than this share of its triples also hold reversed
SYMMETRIC_SHARE = 0.5


def fold_case(text: str) -> str:
    """Lower-case ``text`` keeping its length, so offsets into the folded text hold for the original.

    A character whose lower case is longer (Turkish "İ" -> "i̇") stays as written; the rest of
    the text is still folded, so one such character does not switch case-insensitive matching
    off for a whole document.
    """
    folded = text.lower()
    if len(folded) == len(text):  # str.lower never shortens a character: all are one-to-one
        return folded
    # the runs between such characters are lowered whole, so context rules (final sigma)
    # fold them as they fold an alias
    pieces, start = [], 0
    for i, char in enumerate(text):
        if len(char.lower()) != 1:
            pieces += [text[start:i].lower(), char]
            start = i + 1
    pieces.append(text[start:].lower())
    return "".join(pieces)


@dataclass
class KBStats:
    entities: int = 0
    aliases: int = 0
    ambiguous_aliases: int = 0
    triples: int = 0
    relations: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class KnowledgeBase:
    """Entities (by dense index), alias -> candidates, (head, tail) -> relations."""

    def __init__(self, relations: Iterable[RelationInfo], ignore_case: bool = False) -> None:
        self.relations: list[RelationInfo] = list(relations)
        self.relation_index = {r.id: i for i, r in enumerate(self.relations)}
        self.ignore_case = ignore_case
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.labels: list[str] = []
        self.aliases: list[tuple[str, ...]] = []
        self.descriptions: list[str] = []
        self.types: list[tuple[str, ...]] = []
        self.popularity: list[float | None] = []
        self._alias_entities: dict[str, list[int]] | None = {}
        self.automaton = None
        self.alias_length = array("i")
        self.alias_start = array("q", [0])
        self.alias_candidates = array("i")
        self.pairs: dict[int, int | tuple[int, ...]] = {}
        self.degree = array("i")
        self.neighbor_start = array("q", [0])
        self.neighbors = array("i")
        self.symmetric: list[bool] = []
        self.stats = KBStats(relations=len(self.relations))

    # ---- construction -------------------------------------------------------------------------
    def add_entity(self, record: EntityRecord) -> None:
        if self._alias_entities is None:
            raise RuntimeError("add entities before finalize()")
        if self.pairs:  # pair keys are head * entity count + tail: the count must not change
            raise RuntimeError("add every entity before add_triples()")
        idx = len(self.ids)
        self.ids.append(record.id)
        self.index[record.id] = idx
        self.labels.append(record.label or (record.aliases[0] if record.aliases else record.id))
        self.aliases.append(record.aliases)
        self.descriptions.append(record.description)
        self.types.append(record.types)
        self.popularity.append(record.popularity)
        for alias in record.aliases:
            key = self.key(alias)
            bucket = self._alias_entities.setdefault(key, [])
            if not bucket or bucket[-1] != idx:
                bucket.append(idx)

    def key(self, alias: str) -> str:
        """The gazetteer key of an alias or of text to match: case-folded with ``ignore_case``."""
        return fold_case(alias) if self.ignore_case else alias

    def add_triples(self, triples: Iterable[tuple[str, str, str, str]],
                    issues: Problems) -> None:
        """Index triples; unknown entities or relations are counted and skipped."""
        size = len(self.ids)
        for head, relation, tail, where in triples:
            h, t = self.index.get(head), self.index.get(tail)
            r = self.relation_index.get(relation)
            if h is None or t is None:
                missing = head if h is None else tail
                issues.add("unknown_entity", f"{where}: entity '{missing}' is not in the KB "
                                             "entities; triple skipped")
                continue
            if r is None:
                issues.add("unknown_relation", f"{where}: relation '{relation}' is not in the "
                                               "relation inventory; triple skipped")
                continue
            key = h * size + t
            known = self.pairs.get(key)
            if known is None:
                self.pairs[key] = r
            elif known == r or (isinstance(known, tuple) and r in known):
                issues.add("duplicate_triple", f"{where}: duplicate triple; skipped")
                continue
            else:
                self.pairs[key] = (*known, r) if isinstance(known, tuple) else (known, r)
            self.stats.triples += 1

    def finalize(self) -> None:
        """Build the automaton, candidate table, adjacency and symmetric-relation flags."""
        import ahocorasick

        aliases = self._alias_entities or {}
        self._alias_entities = None
        self.automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for number, (alias, entities) in enumerate(aliases.items()):
            self.automaton.add_word(alias, number)
            self.alias_length.append(len(alias))
            self.alias_candidates.extend(entities)
            self.alias_start.append(len(self.alias_candidates))
            if len(entities) > 1:
                self.stats.ambiguous_aliases += 1
        self.stats.aliases = len(aliases)
        self.stats.entities = len(self.ids)
        del aliases
        if len(self.automaton):
            self.automaton.make_automaton()
        self._build_adjacency()
        self._infer_symmetric()

    def _build_adjacency(self) -> None:
        size = len(self.ids)
        degree = array("i", bytes(4 * size))
        for key in self.pairs:
            h, t = divmod(key, size)
            degree[h] += 1
            degree[t] += 1
        starts = array("q", [0])
        for d in degree:
            starts.append(starts[-1] + d)
        fill = array("q", starts[:-1])
        neighbors = array("i", bytes(4 * starts[-1]))
        for key in self.pairs:
            h, t = divmod(key, size)
            neighbors[fill[h]] = t
            fill[h] += 1
            neighbors[fill[t]] = h
            fill[t] += 1
        self.degree, self.neighbor_start, self.neighbors = degree, starts, neighbors

    def _infer_symmetric(self) -> None:
        size = len(self.ids) or 1
        total: Counter = Counter()
        mirrored: Counter = Counter()
        for key, rels in self.pairs.items():
            h, t = divmod(key, size)
            back = self.pairs.get(t * size + h)
            for r in rels if isinstance(rels, tuple) else (rels,):
                total[r] += 1
                if back is not None and (back == r or (isinstance(back, tuple) and r in back)):
                    mirrored[r] += 1
        self.symmetric = [
            rel.symmetric if rel.symmetric is not None
            else bool(total[i]) and mirrored[i] / total[i] > SYMMETRIC_SHARE
            for i, rel in enumerate(self.relations)]

    # ---- lookups ------------------------------------------------------------------------------
    def candidates(self, alias: int) -> array:
        """Entity indices an alias may name."""
        return self.alias_candidates[self.alias_start[alias]:self.alias_start[alias + 1]]

    def relations_between(self, head: int, tail: int) -> tuple[int, ...]:
        """Relation indices r with (head, r, tail) in the KB."""
        found = self.pairs.get(head * len(self.ids) + tail)
        if found is None:
            return ()
        return found if isinstance(found, tuple) else (found,)

    def related(self, a: int, b: int) -> bool:
        size = len(self.ids)
        return a * size + b in self.pairs or b * size + a in self.pairs

    def related_among(self, entity: int, others: set[int]) -> set[int]:
        """The members of ``others`` the KB relates to ``entity`` (either direction)."""
        start, stop = self.neighbor_start[entity], self.neighbor_start[entity + 1]
        if stop - start <= 4 * len(others):  # walk the neighbours when that is cheaper
            return others.intersection(self.neighbors[start:stop])
        return {o for o in others if self.related(entity, o)}

    def aliases_of(self, entity: int) -> tuple[str, ...]:
        return self.aliases[entity]

    def neighbors_of(self, entity: int, limit: int) -> list[tuple[int, tuple[int, ...]]]:
        """Up to ``limit`` KB neighbours of an entity with the relations linking them."""
        start = self.neighbor_start[entity]
        out = []
        for n in self.neighbors[start:min(self.neighbor_start[entity + 1], start + limit)]:
            out.append((n, self.relations_between(entity, n) or self.relations_between(n, entity)))
        return out

    def prior(self, entity: int) -> float:
        """Popularity when the KB gives it, else the entity's KB degree (both unnormalised)."""
        popularity = self.popularity[entity]
        return popularity if popularity is not None else float(self.degree[entity])


def load_knowledge_base(entities: str | Path, triples: str | Path, relations: str | Path,
                        issues: Problems | None = None,
                        ignore_case: bool = False) -> KnowledgeBase:
    """Read the three KB inputs into a :class:`KnowledgeBase`; problems go to ``issues``."""
    issues = issues if issues is not None else Problems()
    inventory = read_relations(relations, issues)
    if not inventory:
        raise InputError(f"{relations}: the relation inventory defines no usable relation")
    kb = KnowledgeBase(inventory, ignore_case=ignore_case)
    for record in read_entities(entities, issues):
        kb.add_entity(record)
    kb.add_triples(read_triples(triples, issues), issues)
    kb.finalize()
    return kb
