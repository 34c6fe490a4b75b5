"""KG2Instruction with a spaCy NER model: NER confirms or proposes mentions."""

from __future__ import annotations

import json

import pytest
from kg2instruction_helpers import DATA, write

from kg2instruction.build import build
from kg2instruction.pipeline import BuildConfig


def test_spacy_ner_confirms_and_proposes_mentions(tmp_path):
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": "Steve Jobs"},
                        {"label": "ORG", "pattern": [{"LOWER": "apple"}]}])
    nlp.to_disk(tmp_path / "ner")
    corpus = write(tmp_path / "c.jsonl", json.dumps(
        {"id": "n", "text": "Steve Jobs founded APPLE in Cupertino."}) + "\n")
    base = DATA / "en"
    args = [base / "entities.jsonl", base / "triples.tsv", base / "relations.json", corpus]
    confirm = build(*args, tmp_path / "c.out", config=BuildConfig(
        ner_model=str(tmp_path / "ner"), ner_mode="confirm"))
    # Cupertino is no NER entity here: unconfirmed; "APPLE" is no alias as written
    assert confirm["ner"] == {"entities": 2, "unconfirmed": 1}
    assert confirm["mentions"] == 1 and confirm["triples"] == 0
    propose = build(*args, tmp_path / "p.out", config=BuildConfig(
        ner_model=str(tmp_path / "ner"), ner_mode="propose"))
    assert propose["ner"] == {"entities": 2, "proposed": 1}
    doc = json.loads((tmp_path / "p.out").read_text())
    assert [(e["text"], e["kb_id"]) for e in doc["entities"]] == [
        ("Steve Jobs", "Q7"), ("APPLE", "Q5"), ("Cupertino", "Q8")]
    assert [(r["head"]["text"], r["type"], r["tail"]["text"]) for r in doc["relations"]] == [
        ("APPLE", "founded by", "Steve Jobs"), ("APPLE", "headquarters location", "Cupertino")]
