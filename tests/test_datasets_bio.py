"""Character BIO reader (People's Daily, MSRA): counts, Chinese joining, BIOES, separators."""

from __future__ import annotations

import pytest

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.bio import read_bio


@pytest.mark.parametrize("name, sentences, entities", [
    ("msra.test", 3442, 6190), ("peoples_daily.dev", 2318, 3819),
    ("peoples_daily.test", 4636, 7707)])
def test_chinese_ner_counts_and_offsets(data_dir, name, sentences, entities):
    errors: list[str] = []
    docs = list(read_bio(data_dir / "chinese_ner" / name, errors=errors))
    assert errors == []
    assert len(docs) == sentences
    assert sum(len(d.entities) for d in docs) == entities
    for doc in docs:
        assert doc.language == "zh" and " " not in doc.text
        assert len(doc.meta["tokens"]) == len(doc.text)  # one character per line
        for entity in doc.entities:
            assert doc.text[entity.start:entity.end] == entity.text


def test_msra_with_schema_uses_chinese_names(data_dir):
    docs = read_dataset("bio", data_dir / "chinese_ner" / "msra.test", schema="msra",
                        split="test")
    first = next(docs)
    assert first.id == "msra-test-0"
    assert first.text.startswith("中共中央致中国致公党十一大的贺词")
    assert [(e.type, e.text) for e in first.entities[:2]] == [
        ("组织机构", "中共中央"), ("组织机构", "中国致公党十一大")]


def test_bioes_tags_tab_and_space_separators(tmp_path):
    path = tmp_path / "mixed.bio"
    path.write_text("张\tB-PER\n三\tE-PER\n在\tO\n京\tS-LOC\n\n李 B-PER\n四 I-PER\n好 O\n",
                    encoding="utf-8")
    docs = list(read_bio(path))
    assert [d.text for d in docs] == ["张三在京", "李四好"]
    assert [[(e.type, e.text, e.start, e.end) for e in d.entities] for d in docs] == [
        [("PER", "张三", 0, 2), ("LOC", "京", 3, 4)], [("PER", "李四", 0, 2)]]
    assert [d.id for d in docs] == ["mixed-0", "mixed-1"]


def test_bad_bio_line_reported_and_sentence_kept(tmp_path):
    path = tmp_path / "bad.bio"
    path.write_text("王\tB-PER\n\tO\n五\tI-PER\n来\tQ\n", encoding="utf-8")
    errors: list[str] = []
    docs = list(read_bio(path, errors=errors))
    assert docs[0].text == "王五来"
    assert [e.text for e in docs[0].entities] == ["王五"]
    assert [m.split(": ")[0] for m in errors] == [f"{path}:2", f"{path}:4"]
