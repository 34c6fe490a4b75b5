"""DuIE 2.0 reader on self-written lines: grounding, complex objects, qualifier modes, bad lines."""

from __future__ import annotations

import json

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.duie import read_duie

FILM = {"text": "老李在电影《晴天》中饰演林川，该片票房过亿。", "spo_list": [
    {"predicate": "饰演", "subject": "老李", "subject_type": "娱乐人物",
     "object": {"@value": "林川", "inWork": "晴天"},
     "object_type": {"@value": "人物", "inWork": "影视作品"}},
    {"predicate": "主演", "subject": "晴天", "subject_type": "影视作品",
     "object": {"@value": "老李"}, "object_type": {"@value": "人物"}}]}
# two 张伟: the one nearest 李娜 is hers
NAMESAKES = {"text": "张伟是王芳的丈夫。李娜的丈夫也叫张伟。", "spo_list": [
    {"predicate": "丈夫", "subject": "李娜", "subject_type": "人物", "object": {"@value": "张伟"},
     "object_type": {"@value": "人物"}}]}
BROKEN = {"text": "小王毕业于北方大学。", "spo_list": [
    {"predicate": "毕业院校", "subject": "小王", "subject_type": "人物"},
    {"predicate": "毕业院校", "subject": "小王", "subject_type": "人物",
     "object": {"@value": "南方大学"}, "object_type": {"@value": "学校"}}]}


def _write(tmp_path, lines):
    path = tmp_path / "duie_dev.json"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)
                              for x in lines) + "\n", encoding="utf-8")
    return path


def _triples(doc):
    return [(r.head.text, r.head.start, r.type, r.tail.text, r.tail.start, r.tail.type)
            for r in doc.relations]


def test_duie_grounds_subjects_and_objects_and_flattens_complex_objects(tmp_path):
    path = _write(tmp_path, [FILM, NAMESAKES])
    errors: list[str] = []
    film, namesakes = read_duie(path, errors=errors)
    assert errors == []
    assert (film.id, film.language, film.entities) == ("duie_dev-0", "zh", ())
    assert _triples(film) == [("老李", 0, "饰演", "林川", 12, "人物"),
                              ("老李", 0, "饰演_inWork", "晴天", 6, "影视作品"),
                              ("晴天", 6, "主演", "老李", 0, "人物")]
    assert _triples(namesakes) == [("李娜", 9, "丈夫", "张伟", 16, "人物")]
    for doc in (film, namesakes):
        for relation in doc.relations:
            for entity in (relation.head, relation.tail):
                assert doc.text[entity.start:entity.end] == entity.text


def test_duie_qualifier_modes_follow_the_schema(tmp_path):
    path = _write(tmp_path, [FILM])
    # the bundled schema has the 48 plain predicates: qualifier gold it never asks for is left out
    (auto,) = read_dataset("duie", path, schema="duie")
    assert [r.type for r in auto.relations] == ["饰演", "主演"]
    errors: list[str] = []
    (forced,) = read_dataset("duie", path, schema="duie", qualifiers="relations", errors=errors)
    assert [r.type for r in forced.relations] == ["饰演", "饰演_inWork", "主演"]
    assert len(errors) == 1 and "relation type label '饰演_inWork' is not in schema" in errors[0]
    (dropped,) = read_duie(path, qualifiers="drop")
    assert [r.type for r in dropped.relations] == ["饰演", "主演"]


def test_duie_bad_lines_and_ungroundable_objects(tmp_path):
    path = _write(tmp_path, [BROKEN, "[1, 2", FILM])
    errors: list[str] = []
    docs = list(read_duie(path, errors=errors))
    assert [d.id for d in docs] == ["duie_dev-0", "duie_dev-2"]
    (kept,) = docs[0].relations  # the ungroundable object keeps null offsets, never dropped
    assert (kept.head.start, kept.tail.text, kept.tail.start) == (0, "南方大学", None)
    assert [m.split(": ")[0] for m in errors] == [f"{path}:1", f"{path}:1", f"{path}:2"]
    assert "spo_list[0]: needs string 'subject'" in errors[0]
    assert "spo_list[1]" in errors[1] and "南方大学" in errors[1]
