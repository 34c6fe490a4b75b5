"""KG2Instruction: relation-extraction instruction data from a knowledge graph and raw text.

Pipeline (one function per stage, each counted in the run's stats): sentence splitting ->
alias-gazetteer mention detection -> candidate generation -> disambiguation -> distant
supervision -> rule filters -> grounded :class:`deepke_llm.records.Document` records -> IEPile RE
instructions. Entry points: :func:`kg2instruction.pipeline.build` and the ``kg2instruction`` CLI.
"""

from __future__ import annotations

__all__ = ["build", "load_knowledge_base"]


def build(*args, **kwargs):
    """Run the whole pipeline; see :func:`kg2instruction.pipeline.build`."""
    from kg2instruction.pipeline import build as _build

    return _build(*args, **kwargs)


def load_knowledge_base(*args, **kwargs):
    """Load entities, triples and relations; see :func:`kg2instruction.kb.load_knowledge_base`."""
    from kg2instruction.kb import load_knowledge_base as _load

    return _load(*args, **kwargs)
