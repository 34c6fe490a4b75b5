"""Bundled schemas: valid, loadable, consistent with the benchmark data, and name <-> label mapping."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from deepke_llm.schema import Schema, SchemaError, bundled_schemas, load_schema

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
BUNDLED = ["ace05", "conll03", "conll04", "duee", "duie", "fewfc_base", "fewfc_trans", "fewrel",
           "finre", "msra", "peoples_daily", "phee"]
OTHER_LANGUAGE = {"en": "zh", "zh": "en"}


def _inventories(schema: Schema):
    """(task, types) for every non-empty inventory of a schema."""
    return [(task, items) for task, items in (("ner", schema.entity_types),
                                              ("re", schema.relation_types),
                                              ("ee", schema.event_types)) if items]


def _iob_labels(path: Path) -> set[str]:
    """Entity labels (tag suffixes) used in a token-per-line IOB/BIO file."""
    labels = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        tag = line.split()[-1] if line.strip() else "O"
        if tag[:2] in ("B-", "I-"):
            labels.add(tag[2:])
    return labels


# ---- every bundled file ----------------------------------------------------------------------

def test_bundled_schemas_lists_all_twelve():
    assert bundled_schemas() == BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_schema_validates_against_meta_schema_and_round_trips(name):
    raw = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    meta = json.loads((SCHEMA_DIR / "schema.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(meta).validate(raw)

    schema = load_schema(name)
    assert schema.name == name
    assert raw["source"] and raw["description"]
    assert Schema.from_dict(schema.to_dict()) == schema


@pytest.mark.parametrize("name", BUNDLED)
def test_labels_and_shown_names_are_unique_per_inventory(name):
    schema = load_schema(name)
    for task, items in _inventories(schema):
        keys = [("label", t.label) for t in items] + [("name", t.name) for t in items]
        for language in ("en", "zh"):
            keys += [(language, t.display(language, schema.language)) for t in items]
        repeated = [key for key, n in Counter(keys).items() if n > 1]
        assert not repeated, f"{name} {task}: {repeated}"
    for event in schema.event_types:
        for language in ("en", "zh"):
            shown = [r.display(language, schema.language) for r in event.roles]
            assert len(shown) == len(set(shown)), f"{name} {event.label} roles ({language})"
        labels = [r.label for r in event.roles]
        assert len(labels) == len(set(labels)), f"{name} {event.label} role labels"


@pytest.mark.parametrize("name", BUNDLED)
def test_every_type_and_role_is_named_in_both_languages_and_described(name):
    schema = load_schema(name)
    other = OTHER_LANGUAGE[schema.language]
    for _task, items in _inventories(schema):
        for item in items:
            assert item.names.get(other), f"{name} {item.label}: no {other} name"
            assert item.description, f"{name} {item.label}: no description"
    for event in schema.event_types:
        assert event.roles, f"{name} {event.label}: no roles"
        for role in event.roles:
            assert role.names.get(other), f"{name} {event.label}/{role.label}: no {other} name"


@pytest.mark.parametrize("name", BUNDLED)
def test_relation_and_role_types_are_entity_types_of_the_same_schema(name):
    schema = load_schema(name)
    if not schema.entity_types:
        assert all(not r.head_types and not r.tail_types for r in schema.relation_types)
        return
    entity_names = {e.name for e in schema.entity_types}
    for relation in schema.relation_types:
        assert relation.head_types and relation.tail_types, relation.label
        assert set(relation.head_types) <= entity_names, relation.label
        assert set(relation.tail_types) <= entity_names, relation.label
    for event in schema.event_types:
        for role in event.roles:
            assert set(role.entity_types) <= entity_names, (event.label, role.label)


@pytest.mark.parametrize("name", BUNDLED)
def test_resolve_maps_labels_names_translations_and_case_variants_back(name):
    schema = load_schema(name)
    for task, items in _inventories(schema):
        for item in items:
            for language in ("en", "zh"):
                for written in {item.label, item.name, *item.names.values(),
                                item.name.upper(), item.label.lower(),
                                item.display(language, schema.language).title()}:
                    resolved = schema.resolve(task, language, written)
                    assert resolved is item, f"{name} {task} {language}: {written!r} -> {resolved}"
        assert schema.resolve(task, "en", "no such type at all") is None


def test_resolve_examples_a_parser_meets():
    conll03 = load_schema("conll03")
    assert conll03.resolve("ner", "en", "else").label == "MISC"
    assert conll03.resolve("ner", "zh", "其他").label == "MISC"
    assert conll03.resolve("ner", "en", "Location").label == "LOC"
    conll04 = load_schema("conll04")
    assert conll04.resolve("re", "en", "Live_In").name == "live in"
    assert conll04.resolve("re", "en", "OrgBased_In").name == "organization based in"
    assert conll04.resolve("re", "en", "Work-For").name == "work for"
    assert conll04.resolve("re", "zh", "工作于").name == "work for"
    duee = load_schema("duee")
    assert duee.resolve("ee", "en", "organization layoff").name == "组织关系-裁员"
    assert duee.resolve("ee", "zh", "Organization Layoff").name == "组织关系-裁员"
    ace05 = load_schema("ace05")
    assert ace05.resolve("ee", "en", "Conflict:Attack").name == "attack"
    assert ace05.resolve("ee", "en", "Start Organization").label == "Business:Start-Org"
    assert ace05.resolve("re", "en", "ORG-AFF").name == "organization affiliation"
    assert ace05.resolve("ner", "en", "GPE").name == "geographical social political"
    duie = load_schema("duie")
    assert duie.resolve("re", "en", "production company").name == "出品公司"
    assert duie.resolve("ner", "zh", "Date").name == "日期"


# ---- loading by path and error messages ------------------------------------------------------

def test_load_by_path_reads_the_file_and_records_where_it_came_from(tmp_path):
    bundled = load_schema(SCHEMA_DIR / "conll04.json")
    assert bundled == load_schema("conll04")
    custom = tmp_path / "mine.json"
    custom.write_text(json.dumps({"name": "mine", "language": "en",
                                  "entity_types": [{"name": "gene"}]}), encoding="utf-8")
    schema = load_schema(str(custom))
    assert schema.path == str(custom)
    assert [(e.name, e.label) for e in schema.entity_types] == [("gene", "gene")]


@pytest.mark.parametrize(("entity_types", "json_path"), [
    ([{"name": "person"}, {"name": ""}], "$.entity_types[1].name"),
    ([{"name": "person"}, {"label": "ORG"}], "$.entity_types[1]"),
    ([{"name": "person"}, {"name": "org", "colour": "red"}], "$.entity_types[1]"),
    ([{"name": "person", "label": "PER"}, {"name": "human", "label": "PER"}],
     "$.entity_types[1]"),
])
def test_invalid_schema_file_gives_one_line_error_naming_file_and_json_path(
        tmp_path, entity_types, json_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"name": "broken", "language": "en",
                                "entity_types": entity_types}), encoding="utf-8")
    with pytest.raises(SchemaError) as caught:
        load_schema(path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    assert f"{json_path}:" in message


def test_schema_without_any_inventory_is_rejected(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"name": "empty", "language": "en"}), encoding="utf-8")
    with pytest.raises(SchemaError, match=r"empty\.json: \$:"):
        load_schema(path)


def test_non_json_schema_file_gives_one_line_error(tmp_path):
    path = tmp_path / "notjson.json"
    path.write_text("{name: conll03", encoding="utf-8")
    with pytest.raises(SchemaError) as caught:
        load_schema(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_unknown_schema_name_lists_the_bundled_ones():
    with pytest.raises(SchemaError) as caught:
        load_schema("conll2099")
    message = str(caught.value)
    assert "conll2099" in message and "\n" not in message
    assert all(name in message for name in BUNDLED)


# ---- agreement with the benchmark data -------------------------------------------------------

def test_conll03_labels_are_the_tags_of_the_data(data_dir):
    schema = load_schema("conll03")
    assert {e.label for e in schema.entity_types} == _iob_labels(data_dir / "conll2003/eng.testb")
    assert [e.name for e in schema.entity_types] == ["person", "location", "organization", "else"]


@pytest.mark.parametrize(("name", "data_file"), [("peoples_daily", "peoples_daily.test"),
                                                  ("msra", "msra.test")])
def test_chinese_ner_labels_are_the_tags_of_the_data(data_dir, name, data_file):
    schema = load_schema(name)
    assert {e.label for e in schema.entity_types} == _iob_labels(data_dir / "chinese_ner" / data_file)
    assert {e.name for e in schema.entity_types} == {"人物", "地理位置", "组织机构"}


def test_conll04_types_and_argument_types_match_the_data(data_dir):
    schema = load_schema("conll04")
    types = json.loads((data_dir / "conll04/conll04_types.json").read_text(encoding="utf-8"))
    assert {e.label for e in schema.entity_types} == set(types["entities"])
    assert {r.label for r in schema.relation_types} == set(types["relations"])
    assert len(schema.relation_types) == 5
    for relation in schema.relation_types:
        assert relation.symmetric == types["relations"][relation.label]["symmetric"]

    entity = schema.by_label("ner")
    relation = schema.by_label("re")
    seen = 0
    for sentence in json.loads((data_dir / "conll04/conll04_test.json").read_text()):
        for rel in sentence["relations"]:
            kind = relation[rel["type"]]
            assert entity[sentence["entities"][rel["head"]]["type"]].name in kind.head_types
            assert entity[sentence["entities"][rel["tail"]]["type"]].name in kind.tail_types
            seen += 1
    assert seen == 422


def test_ace05_inventories_match_the_textee_patterns(data_dir):
    schema = load_schema("ace05")
    data = json.loads((data_dir / "ace05/ace05_schema.json").read_text(encoding="utf-8"))
    assert [e.label for e in schema.entity_types] == data["entity_types"]
    assert {r.label for r in schema.relation_types} == set(data["relation_types"])
    assert len(schema.relation_types) == 6 and len(schema.event_types) == 33
    assert {e.label for e in schema.event_types} == set(data["event_types"])
    entity = schema.by_label("ner")
    for event in schema.event_types:
        expected = data["event_types"][event.label]["roles_textee_oneie"]
        assert sorted(r.label for r in event.roles) == sorted(expected), event.label
        for role in event.roles:
            allowed = {entity[t].name for t in data["role_entity_types_textee"][role.label]}
            assert set(role.entity_types) == allowed, (event.label, role.label)
    for relation in schema.relation_types:
        # the 18 subtypes are documented in the coarse type's description
        for subtype in data["relation_types"][relation.label]["subtypes"]:
            assert subtype.split(":", 1)[1] in relation.description, subtype
    assert schema.by_label("re")["PER-SOC"].symmetric


def test_ace05_names_follow_iepile():
    schema = load_schema("ace05")
    by_label = schema.by_label("ee")
    assert by_label["Business:Start-Org"].name == "start organization"
    assert [r.name for r in by_label["Business:Start-Org"].roles if r.label == "Org"] == \
        ["organization"]
    assert by_label["Life:Be-Born"].name == "born"
    assert by_label["Contact:Phone-Write"].name == "phone write"


def test_duee_inventory_matches_the_data(data_dir):
    schema = load_schema("duee")
    data = json.loads((data_dir / "duee/duee_event_types.json").read_text(encoding="utf-8"))
    assert len(schema.event_types) == len(data) == 65
    by_label = schema.by_label("ee")
    for item in data:
        event = by_label[item["event_type"]]
        assert event.name == item["event_type"]
        assert [r.label for r in event.roles] == item["roles"]
        assert item["class"] in event.description
    assert len({r.label for e in schema.event_types for r in e.roles}) == 121


def test_duie_has_the_48_official_predicates_with_argument_types():
    schema = load_schema("duie")
    assert len(schema.relation_types) == 48
    relation = schema.by_label("re")
    assert (relation["妻子"].head_types, relation["妻子"].tail_types) == (("人物",), ("人物",))
    assert (relation["出品公司"].head_types, relation["出品公司"].tail_types) == \
        (("影视作品",), ("企业",))
    assert relation["成立日期"].tail_types == ("日期",)
    assert schema.by_label("ner")["Date"].name == "日期"
    # complex objects: main value type as tail, qualifier slots named in the description
    for predicate, slots in {"饰演": ["inWork"], "配音": ["inWork"], "票房": ["inArea"],
                             "上映时间": ["inArea"], "获奖": ["inWork", "onDate", "period"]}.items():
        assert all(slot in relation[predicate].description for slot in slots), predicate
    assert relation["饰演"].head_types == ("娱乐人物",) and relation["饰演"].tail_types == ("人物",)
    assert relation["获奖"].tail_types == ("奖项",)


def test_fewrel_relations_are_the_wikidata_properties_of_the_data(data_dir):
    schema = load_schema("fewrel")
    data = json.loads((data_dir / "fewrel/relations.json").read_text(encoding="utf-8"))
    assert {r.label: (r.name, r.description) for r in schema.relation_types} == \
        {pid: (name, description) for pid, (name, description) in data.items()}
    assert schema.resolve("re", "en", "P177").name == "crosses"
