"""Helpers of the KG2Instruction tests: the bundled tiny KBs and corpora, file writing, a KB of
aliases only."""

from __future__ import annotations

from pathlib import Path

from kg2instruction.inputs import EntityRecord, RelationInfo
from kg2instruction.kb import KnowledgeBase

DATA = Path(__file__).parent / "data" / "kg2instruction"


def write(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` and return the path."""
    path.write_text(text, encoding="utf-8")
    return path


def tiny_kb(aliases: dict[str, list[str]], ignore_case: bool = False) -> KnowledgeBase:
    """A finalized KB of one relation and the given entity id -> aliases."""
    kb = KnowledgeBase([RelationInfo("r", "r")], ignore_case=ignore_case)
    for entity_id, names in aliases.items():
        kb.add_entity(EntityRecord(entity_id, tuple(names)))
    kb.finalize()
    return kb
