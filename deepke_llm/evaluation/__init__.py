"""Scoring and benchmark runs: micro P/R/F1 in strict, boundary and string modes, side by side.

Rules (DESIGN.md "Scoring"; the tuple of each mode is tabled in :mod:`.spans`):

* Record files (``deepke-llm score --gold --pred``) compare per-document SETS of tuples in every
  mode: records with the same tuple are one mention and count once on either side, so a repeated
  prediction is neither rewarded nor punished. Documents pair by id; a gold document without a
  prediction scores its gold as missed; predictions for unknown ids are reported, not scored.
* strict: NER (type, span); RE (head span + type, relation, tail span + type); EE trigger
  identification (span), classification (span, event type), argument identification
  (event type, span), classification (event type, role, span).
* boundary: strict without entity types: NER the span alone (no per-type breakdown), RE
  (head span, relation, tail span); EE boundary equals strict.
* string: exact unnormalised strings: NER (text, type), RE (head, relation, tail), EE
  (event type, trigger) and (event type, argument, role).
* A mention without offsets never matches in strict/boundary (a false positive) but counts by
  its text in string mode.
* IEPile-format files (``--format iepile``) follow IEPile's evaluator, multiset (``normal``) or
  set matching, with its silent failures fixed and counted (:mod:`.iepile_eval`).
* P = tp/(tp+fp), R = tp/(tp+fn), F1 = 2PR/(P+R), each 0 when undefined; JSON carries fractions,
  tables percentages with two decimals. Strict NER equals seqeval (strict, IOB2) to the bit.

Modules: :mod:`.spans` (records -> tuples), :mod:`.metrics` (matching and counts),
:mod:`.scoring` (documents -> TaskScore), :mod:`.diagnostics` (bad input, counted),
:mod:`.iepile_eval`, :mod:`.bootstrap`, :mod:`.iob` (seqeval bridge), :mod:`.definitions`,
:mod:`.runner`, :mod:`.report`, :mod:`.cli`.
"""

from __future__ import annotations

from .scoring import TaskScore, score_documents

__all__ = ["TaskScore", "score_documents"]
