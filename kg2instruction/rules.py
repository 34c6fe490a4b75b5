"""Distant supervision and the rule filters that drop illegal or doubtful candidate triples.

Distant supervision: every ordered pair of linked mentions in one sentence whose entities the KB
relates gives one candidate per relation. Filters run in a fixed order and each counts what it
drops (``RULES`` lists their names; user rules count as ``user:<name>``):

- ``not_in_schema``: the relation is not among the types asked for (``--schema``);
- ``self_relation``: head and tail are the same entity or overlapping mentions;
- ``uncertain_link``: the head or tail link was a tie — another candidate had exactly the same
  evidence (e.g. two different "2014" editions both related to two different "2013" editions), so
  which triple the sentence supports is a guess;
- ``type_constraint``: an entity's KB types miss the relation's head/tail types (domain/range);
  untyped entities or relations without constraints pass;
- ``max_distance``: more than ``max_distance`` characters between the two mentions;
- ``duplicate_mention_pair``: the same (head entity, relation, tail entity) already came from a
  closer pair of mentions in the sentence;
- ``conflicting_relations``: one entity pair carries relations declared incompatible, or one
  non-symmetric relation in both directions (a contradiction). A declared conflict (inventory
  ``conflicts_with``, or a rules-file pair) fires whatever the directions: "A r1 B" conflicts
  with both "A r2 B" and "B r2 A". A rules-file entry ``{"relations": [r1, r2], "direction":
  "same"}`` fires only when both share head and tail, ``"opposite"`` only when they are
  reversed; every candidate of a conflicting pair is dropped;
- ``symmetric_duplicate``: a symmetric relation in both directions keeps only the direction whose
  head comes first in the text;
- user rules from a JSON file (see :func:`load_user_rules`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepke_llm.problems import Problems
from kg2instruction.inputs import InputError
from kg2instruction.kb import KnowledgeBase
from kg2instruction.mentions import Mention

RULES = ("not_in_schema", "self_relation", "uncertain_link", "type_constraint", "max_distance",
         "duplicate_mention_pair", "conflicting_relations", "symmetric_duplicate")


@dataclass(slots=True)
class Candidate:
    head: int  # mention index
    tail: int
    relation: int  # relation index in the KB inventory


@dataclass(frozen=True)
class UserRule:
    """Drop a candidate when every given condition holds (regexes use ``re.search``)."""

    name: str
    relations: frozenset[str] = frozenset()
    head: frozenset[str] = frozenset()
    tail: frozenset[str] = frozenset()
    head_type: frozenset[str] = frozenset()
    tail_type: frozenset[str] = frozenset()
    head_text: re.Pattern | None = None
    tail_text: re.Pattern | None = None
    sentence: re.Pattern | None = None
    min_distance: int | None = None
    max_distance: int | None = None


@dataclass
class RuleSet:
    """Everything the filters need besides the KB; ``allowed`` None means every relation."""

    max_distance: int = 300
    allowed: frozenset[int] | None = None
    drop_uncertain: bool = True
    user_rules: tuple[UserRule, ...] = ()
    # (relation, relation) -> "any", "same" or "opposite": the directions in which they conflict
    conflicts: dict[tuple[int, int], str] = field(default_factory=dict)
    symmetric: dict[int, bool] = field(default_factory=dict)


def distant_candidates(kb: KnowledgeBase, mentions: list[Mention], entities: list[int],
                       members: list[int]) -> list[Candidate]:
    """Candidate triples among the linked mentions ``members`` (indices) of one sentence."""
    out = []
    for a in members:
        for b in members:
            if a != b:
                for r in kb.relations_between(entities[a], entities[b]):
                    out.append(Candidate(a, b, r))
    return out


def _gap(mentions: list[Mention], c: Candidate) -> int:
    head, tail = mentions[c.head], mentions[c.tail]
    return max(0, max(head.start, tail.start) - min(head.end, tail.end))


def apply_rules(kb: KnowledgeBase, rules: RuleSet, text: str, sentence: tuple[int, int],
                mentions: list[Mention], entities: list[int], certain: list[bool],
                candidates: list[Candidate], dropped: Counter) -> list[Candidate]:
    """Run every filter in order; count drops per rule name in ``dropped``."""

    def keep(name: str, survivors: list[Candidate]) -> list[Candidate]:
        if len(survivors) != len(candidates):
            dropped[name] += len(candidates) - len(survivors)
        return survivors

    if rules.allowed is not None:
        candidates = keep("not_in_schema", [c for c in candidates if c.relation in rules.allowed])
    candidates = keep("self_relation", [c for c in candidates
                                        if _distinct(mentions, entities, c)])
    if rules.drop_uncertain:
        candidates = keep("uncertain_link", [c for c in candidates
                                             if certain[c.head] and certain[c.tail]])
    candidates = keep("type_constraint", [c for c in candidates
                                          if _types_ok(kb, c, entities)])
    if rules.max_distance > 0:
        candidates = keep("max_distance", [c for c in candidates
                                           if _gap(mentions, c) <= rules.max_distance])
    candidates = keep("duplicate_mention_pair", _closest_pairs(candidates, mentions, entities))
    candidates = keep("conflicting_relations", _without_conflicts(kb, rules, candidates, entities))
    candidates = keep("symmetric_duplicate",
                      _one_direction(kb, rules, candidates, mentions, entities))
    for rule in rules.user_rules:
        candidates = keep(f"user:{rule.name}", [
            c for c in candidates
            if not _user_rule_matches(kb, rule, text, sentence, mentions, entities, c)])
    return candidates


def _distinct(mentions: list[Mention], entities: list[int], c: Candidate) -> bool:
    head, tail = mentions[c.head], mentions[c.tail]
    return entities[c.head] != entities[c.tail] and (head.end <= tail.start
                                                     or tail.end <= head.start)


def _types_ok(kb: KnowledgeBase, c: Candidate, entities: list[int]) -> bool:
    rel = kb.relations[c.relation]
    for allowed, entity in ((rel.head_types, entities[c.head]), (rel.tail_types, entities[c.tail])):
        types = kb.types[entity]
        if allowed and types and not set(types) & set(allowed):
            return False
    return True


def _closest_pairs(candidates: list[Candidate], mentions: list[Mention],
                   entities: list[int]) -> list[Candidate]:
    best: dict[tuple[int, int, int], Candidate] = {}
    for c in candidates:
        key = (entities[c.head], c.relation, entities[c.tail])
        if key not in best or _gap(mentions, c) < _gap(mentions, best[key]):
            best[key] = c
    winners = {id(c) for c in best.values()}
    return [c for c in candidates if id(c) in winners]


def _is_symmetric(kb: KnowledgeBase, rules: RuleSet, relation: int) -> bool:
    return rules.symmetric.get(relation, kb.symmetric[relation])


def _without_conflicts(kb: KnowledgeBase, rules: RuleSet, candidates: list[Candidate],
                       entities: list[int]) -> list[Candidate]:
    by_pair: dict[frozenset[int], list[Candidate]] = {}
    for c in candidates:
        by_pair.setdefault(frozenset((entities[c.head], entities[c.tail])), []).append(c)
    doomed: set[int] = set()
    for group in by_pair.values():
        if len(group) < 2:
            continue
        for x in group:
            for y in group:
                if x is y:
                    continue
                same_direction = entities[x.head] == entities[y.head]
                declared = rules.conflicts.get((x.relation, y.relation))
                if declared == "any" or declared == ("same" if same_direction else "opposite") \
                        or (not same_direction and x.relation == y.relation
                            and not _is_symmetric(kb, rules, x.relation)):
                    doomed.update((id(x), id(y)))
    return [c for c in candidates if id(c) not in doomed]


def _one_direction(kb: KnowledgeBase, rules: RuleSet, candidates: list[Candidate],
                   mentions: list[Mention], entities: list[int]) -> list[Candidate]:
    kept: list[Candidate] = []
    seen: dict[tuple[frozenset[int], int], Candidate] = {}
    for c in sorted(candidates, key=lambda c: (mentions[c.head].start, mentions[c.tail].start)):
        if _is_symmetric(kb, rules, c.relation):
            key = (frozenset((entities[c.head], entities[c.tail])), c.relation)
            if key in seen:
                continue
            seen[key] = c
        kept.append(c)
    kept_ids = {id(c) for c in kept}
    return [c for c in candidates if id(c) in kept_ids]


def _user_rule_matches(kb: KnowledgeBase, rule: UserRule, text: str, sentence: tuple[int, int],
                       mentions: list[Mention], entities: list[int], c: Candidate) -> bool:
    rel = kb.relations[c.relation]
    head, tail = entities[c.head], entities[c.tail]
    checks = (
        not rule.relations or bool(rule.relations & {rel.id, rel.name, rel.name_zh}),
        not rule.head or kb.ids[head] in rule.head,
        not rule.tail or kb.ids[tail] in rule.tail,
        not rule.head_type or bool(rule.head_type & set(kb.types[head])),
        not rule.tail_type or bool(rule.tail_type & set(kb.types[tail])),
        rule.head_text is None or bool(rule.head_text.search(
            text[mentions[c.head].start:mentions[c.head].end])),
        rule.tail_text is None or bool(rule.tail_text.search(
            text[mentions[c.tail].start:mentions[c.tail].end])),
        rule.sentence is None or bool(rule.sentence.search(text[sentence[0]:sentence[1]])),
        rule.min_distance is None or _gap(mentions, c) >= rule.min_distance,
        rule.max_distance is None or _gap(mentions, c) <= rule.max_distance,
    )
    return all(checks)


_RULE_FIELDS = {"name", "relation", "relations", "head", "tail", "head_type", "tail_type",
                "head_text", "tail_text", "sentence", "min_distance", "max_distance"}


def load_user_rules(path: str | Path) -> dict[str, Any]:
    """Read a rules file: ``{"drop": [rule...], "conflicts": [[r1, r2]...], "symmetric": [r...],
    "asymmetric": [r...]}`` (a bare JSON list is read as ``drop``).

    A drop rule holds any of: ``relation`` (id or name, or a list), ``head``/``tail`` (entity ids),
    ``head_type``/``tail_type``, ``head_text``/``tail_text``/``sentence`` (regexes),
    ``min_distance``/``max_distance`` (characters between the mentions); it drops a candidate
    when all of them hold. A conflict is ``[r1, r2]`` (any directions) or ``{"relations": [r1,
    r2], "direction": "any"|"same"|"opposite"}``. Raises :class:`InputError` naming the bad
    field. ``references`` lists ``(where, relation name)`` for checking against the inventory.
    """
    path = str(path)
    raw, data = _read_rules_file(path)
    references: list[tuple[str, str]] = []

    def refer(json_path: str, names) -> None:
        for name in [names] if isinstance(names, str) else names:
            references.append((f"{path}:{_line_of(raw, name)}: {json_path}", name))

    drops = _drop_rules(data, path, refer)
    conflicts = _conflicts(data, path, refer)
    for key in ("symmetric", "asymmetric"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{path}: $.{key}: expected a list of relation ids or names")
        for i, name in enumerate(value):
            refer(f"$.{key}[{i}]", name)
    return {"drop": tuple(drops), "conflicts": conflicts,
            "symmetric": list(data.get("symmetric", [])),
            "asymmetric": list(data.get("asymmetric", [])), "references": references}


def _read_rules_file(path: str) -> tuple[str, dict[str, Any]]:
    """The file's text and its JSON object (a bare list read as ``drop``); InputError if not."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = handle.read()
        data = json.loads(raw)
    except FileNotFoundError:
        raise InputError(f"{path}: rules file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid UTF-8 JSON ({exc})") from None
    if isinstance(data, list):
        data = {"drop": data}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with 'drop', 'conflicts', 'symmetric'")
    unknown = set(data) - {"drop", "conflicts", "symmetric", "asymmetric"}
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; use drop, "
                         "conflicts, symmetric, asymmetric")
    return raw, data


def _drop_rules(data: dict[str, Any], path: str, refer: Callable[[str, Any], None]) -> list:
    """The ``drop`` rules; each rule's relations are passed to ``refer``."""
    if not isinstance(data.get("drop", []), list):
        raise InputError(f"{path}: $.drop: expected a list of rules")
    drops = []
    for i, item in enumerate(data.get("drop", [])):
        where = f"{path}: $.drop[{i}]"
        if not isinstance(item, dict) or set(item) - _RULE_FIELDS:
            bad = sorted(set(item) - _RULE_FIELDS) if isinstance(item, dict) else []
            raise InputError(f"{where}: expected an object with fields from "
                             f"{', '.join(sorted(_RULE_FIELDS))}" +
                             (f" (unknown: {', '.join(bad)})" if bad else ""))
        rule = _user_rule(item, where, i)
        drops.append(rule)
        refer(f"$.drop[{i}].relation", sorted(rule.relations))
    return drops


def _conflicts(data: dict[str, Any], path: str, refer: Callable[[str, Any], None]
               ) -> list[tuple[str, str, str]]:
    """The ``conflicts`` as ``(r1, r2, direction)``; each pair is passed to ``refer``."""
    conflicts = []
    for i, entry in enumerate(data.get("conflicts", [])):
        pair, direction = entry, "any"
        if isinstance(entry, dict):
            pair, direction = entry.get("relations"), entry.get("direction", "any")
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
                and direction in CONFLICT_DIRECTIONS):
            raise InputError(f"{path}: $.conflicts[{i}]: expected [r1, r2] or {{\"relations\": "
                             "[r1, r2], \"direction\": \"any\"|\"same\"|\"opposite\"}")
        conflicts.append((pair[0], pair[1], direction))
        refer(f"$.conflicts[{i}]", pair)
    return conflicts


CONFLICT_DIRECTIONS = ("any", "same", "opposite")


def _line_of(raw: str, name: str) -> int:
    """Line of the first JSON string literal ``name`` in the file (1 when not found verbatim)."""
    found = raw.find(json.dumps(name, ensure_ascii=False))
    if found < 0:
        found = raw.find(json.dumps(name))
    return raw.count("\n", 0, found) + 1 if found >= 0 else 1


def _user_rule(item: dict[str, Any], where: str, index: int) -> UserRule:
    def names(key: str) -> frozenset[str]:
        value = item.get(key, [])
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{where}.{key}: expected a string or a list of strings")
        return frozenset(value)

    def pattern(key: str) -> re.Pattern | None:
        if key not in item:
            return None
        try:
            return re.compile(item[key])
        except (re.error, TypeError) as exc:
            raise InputError(f"{where}.{key}: not a valid regular expression ({exc})") from None

    def number(key: str) -> int | None:
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"{where}.{key}: expected an integer")
        return value

    return UserRule(
        name=str(item.get("name") or f"rule{index}"),
        relations=names("relation") | names("relations"), head=names("head"),
        tail=names("tail"), head_type=names("head_type"), tail_type=names("tail_type"),
        head_text=pattern("head_text"), tail_text=pattern("tail_text"),
        sentence=pattern("sentence"), min_distance=number("min_distance"),
        max_distance=number("max_distance"))


def make_rule_set(kb: KnowledgeBase, max_distance: int, allowed: frozenset[int] | None,
                  user: dict[str, Any] | None, drop_uncertain: bool = True,
                  issues: Problems | None = None) -> RuleSet:
    """Resolve relation names in user rules and inventory conflicts to relation indices.

    A name that is no relation id or name of the inventory cannot fire; it is reported to
    ``issues`` as ``unknown_relation`` with the rules file's line.
    """
    user = user or {}
    lookup: dict[str, int] = {}
    for i, rel in enumerate(kb.relations):
        for key in (rel.id, rel.name, rel.name_zh):
            if key:
                lookup.setdefault(key, i)
    if issues is not None:
        for where, name in user.get("references", ()):
            if name not in lookup:
                issues.add("unknown_relation", f"{where}: relation '{name}' is not in the "
                                               "relation inventory; this part of the rule "
                                               "never applies")
        for rel in kb.relations:
            for other in rel.conflicts_with:
                if other not in lookup:
                    issues.add("unknown_relation", f"relation inventory: '{rel.id}' "
                                                   f"conflicts_with unknown relation '{other}'")
    conflicts: dict[tuple[int, int], str] = {}
    pairs = [(rel.id, other, "any") for rel in kb.relations for other in rel.conflicts_with]
    pairs += list(user.get("conflicts", []))
    for a, b, direction in pairs:
        if a in lookup and b in lookup:
            for key in ((lookup[a], lookup[b]), (lookup[b], lookup[a])):
                known = conflicts.get(key)
                conflicts[key] = direction if known in (None, direction) else "any"
    symmetric: dict[int, bool] = {}
    for key, flag in (("symmetric", True), ("asymmetric", False)):
        for name in user.get(key, []):
            if name in lookup:
                symmetric[lookup[name]] = flag
    return RuleSet(max_distance=max_distance, allowed=allowed, drop_uncertain=drop_uncertain,
                   user_rules=tuple(user.get("drop", ())), conflicts=conflicts,
                   symmetric=symmetric)
