"""Parsers per task and style: lenient, total, every dropped item explained."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepke_llm.lenient_json import loads_lenient
from deepke_llm.prompts.styles import get_style
from deepke_llm.records import Argument, Entity, Event, Relation, Span
from deepke_llm.schema import load_schema
from deepke_llm.tasks import get_task

IEPILE = get_style("iepile")
KNOWLM = get_style("knowlm")
NER = get_task("ner")
RE = get_task("re")
EE = get_task("ee")
CONLL03 = load_schema("conll03")
CONLL04 = load_schema("conll04")
PD = load_schema("peoples_daily")
DUEE = load_schema("duee")


@pytest.mark.parametrize("raw, expected", [
    ('{"a": [1]}', {"a": [1]}),
    ('```json\n{"a": ["x",],}\n```', {"a": ["x"]}),
    ('Sure! Here is the answer: {"a": ["x"]} Hope this helps.', {"a": ["x"]}),
    ("{'a': ['x', 'y']}", {"a": ["x", "y"]}),
    ('{"a"：["张三"，"李四"]}', {"a": ["张三", "李四"]}),
    ("{“a”：[“张三，李四”]}", {"a": ["张三，李四"]}),
    ('{"a": ["x", "y"], "b": ["z', {"a": ["x", "y"], "b": []}),
    ('{"a": ["x", "yy', {"a": ["x"]}),
    ('Here is [my] answer (see [1]): {"a": ["x"]}', {"a": ["x"]}),
    ('{"a": ["x"]} {"b": ["y"]}', [{"a": ["x"]}, {"b": ["y"]}]),
    ('[see 1] {"a": ["x", "y"], "b": ["z', {"a": ["x", "y"], "b": []}),
    # cut off after an inner object: the answer is the outer object, not the inner one
    ('{"r": [{"subject": "A", "object": "B"}], "k": [], "', {"r": [{"subject": "A", "object": "B"}], "k": []}),
    ('{person: ["A"]}', {"person": ["A"]}),
])
def test_lenient_json_recovers_what_the_model_meant(raw, expected):
    value, _ = loads_lenient(raw)
    assert value == expected


def test_lenient_json_reports_truncation_and_garbage():
    value, errors = loads_lenient('{"a": ["x", "unfinis')
    assert value == {"a": ["x"]} and any("truncated" in e for e in errors)
    value, errors = loads_lenient("I have no idea.")
    assert value is None and errors and "no JSON" in errors[0]
    assert loads_lenient("") == (None, ["empty output"])


def test_ner_iepile_maps_names_labels_and_drops_unknown_keys():
    out = json.dumps({"person": ["Robert Allenby"], "LOC": "Australia", "Location": ["Spain"],
                      "else": "NAN", "animal": ["cat"], "organization": []})
    records, errors = IEPILE.parse(NER, out, CONLL03, "en")
    assert set(records) == {Entity("person", "Robert Allenby"), Entity("location", "Australia"),
                            Entity("location", "Spain")}
    assert errors == ["unknown entity type 'animal' (not in the schema): dropped"]


def test_ner_iepile_chinese_names_from_english_schema_and_chinese_punctuation():
    out = '{"人物"：["张三"], "地理位置"：["北京"，"上海"]}'
    records, errors = IEPILE.parse(NER, out, PD, "zh")
    assert set(records) == {Entity("人物", "张三"), Entity("地理位置", "北京"), Entity("地理位置", "上海")}
    # an English prompt over the Chinese schema shows English names; they map back to canonical
    records, _ = IEPILE.parse(NER, '{"person": ["张三"]}', PD, "en")
    assert records == [Entity("人物", "张三")]


def test_re_iepile_head_tail_synonyms_lists_and_bad_items():
    out = json.dumps({
        "work for": [{"subject": "John Smith", "object": "Acme"},
                     {"head": "Mary", "tail": ["Acme", "Initech"]},
                     {"subject": "Nobody"}],
        "Live_In": {"subject": "John Smith", "object": "Boston"},
        "likes": [{"subject": "a", "object": "b"}],
    })
    records, errors = IEPILE.parse(RE, out, CONLL04, "en")
    pairs = {(r.type, r.head.text, r.tail.text) for r in records}
    assert pairs == {("work for", "John Smith", "Acme"), ("work for", "Mary", "Acme"),
                     ("work for", "Mary", "Initech"), ("live in", "John Smith", "Boston")}
    work = next(r for r in records if r.type == "work for")
    assert (work.head.type, work.tail.type) == ("person", "organization")  # from the schema
    assert len(errors) == 2 and any("likes" in e for e in errors) and any("Nobody" in e for e in errors)


def test_ee_iepile_nan_lists_roles_and_missing_trigger():
    event_type = DUEE.event_types[0]
    roles = [r.name for r in event_type.roles]
    out = json.dumps({event_type.name: [
        {"trigger": "收购", "arguments": {roles[0]: "NAN", roles[1]: ["甲公司", "乙公司"], "不存在的角色": "x"}},
        {"arguments": {roles[0]: "昨天"}},
    ]}, ensure_ascii=False)
    records, errors = IEPILE.parse(EE, out, DUEE, "zh")
    assert records == [Event(event_type.name, Span("收购"),
                             (Argument(roles[1], "甲公司"), Argument(roles[1], "乙公司")))]
    assert len(errors) == 2


def test_knowlm_tuples_for_each_task():
    ner, errors = KNOWLM.parse(NER, "输入中包含的实体是：\n(张三,人物),(北京，地理位置)\n(x,动物)", PD, "zh")
    assert ner == [Entity("人物", "张三"), Entity("地理位置", "北京")] and len(errors) == 1
    rel, errors = KNOWLM.parse(RE, "(John Smith, work for, Acme, Inc.)\n(Boston,located in,USA)\nNAN",
                                  CONLL04, "en")
    assert {(r.head.text, r.type, r.tail.text) for r in rel} == {
        ("John Smith", "work for", "Acme, Inc."), ("Boston", "located in", "USA")}
    event_type = DUEE.event_types[0]
    role = event_type.roles[1]
    ev, errors = KNOWLM.parse(EE, f"(收购,{event_type.name},甲公司#{role.name};乙#没有这个角色)", DUEE, "zh")
    assert ev == [Event(event_type.name, Span("收购"), (Argument(role.name, "甲公司"),))]
    assert len(errors) == 1


def test_round_trip_gold_output_parses_back():
    from deepke_llm.records import Document

    doc = Document("d", "John Smith works for Acme in Boston.",
                   entities=(Entity("person", "John Smith", 0, 10),
                             Entity("organization", "Acme", 21, 25)),
                   relations=(Relation("work for", Entity("person", "John Smith", 0, 10),
                                       Entity("organization", "Acme", 21, 25)),))
    for task, schema in ((NER, CONLL04), (RE, CONLL04)):
        for style in ("iepile", "knowlm"):
            s = get_style(style)
            records, errors = s.parse(task, s.target(task, doc, schema, "en"), schema, "en")
            assert not errors
            strip = {(type(r).__name__, getattr(r, "type", None), getattr(r, "text", None),
                      getattr(getattr(r, "head", None), "text", None)) for r in records}
            gold = {(type(r).__name__, getattr(r, "type", None), getattr(r, "text", None),
                     getattr(getattr(r, "head", None), "text", None)) for r in task.records(doc)}
            assert strip == gold, (task.name, style)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


def _mutations(text: str, data: st.DataObject) -> str:
    cut = data.draw(st.integers(0, len(text)))
    choice = data.draw(st.sampled_from(["truncate", "insert", "prefix", "as_is"]))
    if choice == "truncate":
        return text[:cut]
    if choice == "insert":
        return text[:cut] + data.draw(st.sampled_from(list("{}[]\"',:：，“”\\"))) + text[cut:]
    if choice == "prefix":
        return data.draw(st.text(max_size=10)) + text
    return text


@settings(max_examples=300, deadline=None)
@given(value=json_values, data=st.data())
def test_parsers_never_raise_on_random_and_mutated_outputs(value, data):
    raw = _mutations(json.dumps(value, ensure_ascii=False), data)
    for task, schema in ((NER, CONLL03), (RE, CONLL04), (EE, DUEE), (NER, PD)):
        for style in (IEPILE, KNOWLM):
            records, errors = style.parse(task, raw, schema, schema.language)
            assert isinstance(records, list) and isinstance(errors, list)
            assert all(isinstance(e, str) for e in errors)
            # total by construction: the last-resort guard must never have fired
            assert not any("parser failed" in e for e in errors), errors


@settings(max_examples=200, deadline=None)
@given(raw=st.text(max_size=200))
def test_parsers_never_raise_on_arbitrary_text(raw):
    for task, schema in ((NER, CONLL03), (RE, CONLL04), (EE, DUEE)):
        for style in (IEPILE, KNOWLM):
            records, errors = style.parse(task, raw, schema, "en")
            assert isinstance(records, list) and isinstance(errors, list)
            assert not any("parser failed" in e for e in errors), errors


def test_a_number_past_pythons_int_limit_keeps_the_rest_of_the_answer():
    huge = "9" * 5000  # int() refuses more than 4,300 digits (ValueError)
    for raw in (f'{{"person": ["Robert Allenby", {huge}]}}', f'{{"person": ["Robert Allenby", {huge}'):
        records, errors = IEPILE.parse(NER, raw, CONLL03, "en")
        assert Entity("person", "Robert Allenby") in records
        assert not any("parser failed" in e for e in errors), errors


def test_nan_and_infinity_are_no_value_not_the_mentions_nan_and_inf():
    for raw in ('{"person": ["Bob", NaN, Infinity, -Infinity, 1e999]}',  # strict JSON path
                "{'person': ['Bob', NaN, Infinity, -Infinity, 1e999]}"):  # json_repair path
        records, _ = IEPILE.parse(NER, raw, CONLL03, "en")
        texts = {r.text for r in records}
        assert "Bob" in texts and not texts & {"nan", "inf", "-inf", "NaN", "Infinity", "-Infinity"}
    value, _ = loads_lenient('{"a": NaN, "b": [Infinity]}')
    assert value == {"a": None, "b": [None]}


def test_json_repair_reads_a_bounded_prefix_and_says_so(monkeypatch):
    import json_repair

    from deepke_llm.lenient_json import REPAIR_LIMIT

    seen: list[int] = []
    real = json_repair.loads
    monkeypatch.setattr(json_repair, "loads", lambda text, **kw: seen.append(len(text)) or real(text, **kw))
    names = [f"Person {i}" for i in range(5000)]
    python_style = "{'person': [" + ", ".join(f"'{n}'" for n in names) + "]}"  # ~70 KB
    records, errors = IEPILE.parse(NER, python_style, CONLL03, "en")
    assert seen and max(seen) <= REPAIR_LIMIT
    assert any(f"repaired only the first {REPAIR_LIMIT:,}" in e for e in errors), errors
    assert records[0] == Entity("person", "Person 0")  # what the prefix holds is kept


def test_a_long_answer_cut_off_by_the_token_limit_is_closed_without_json_repair(monkeypatch):
    import json_repair

    monkeypatch.setattr(json_repair, "loads", lambda *a, **k: pytest.fail("json_repair called"))
    names = [f"Person {i}" for i in range(5000)]
    cut = json.dumps({"person": names, "location": ["Paris"]})[:-30]  # stops inside a name
    records, errors = IEPILE.parse(NER, cut, CONLL03, "en")
    assert [r.text for r in records] == names[:len(records)] and len(records) >= 4990
    assert errors == ["output ends inside a string (truncated?); dropped the unfinished item"]
    relations = json.dumps({"work for": [{"subject": f"P{i}", "object": "Acme"} for i in range(900)]})
    records, _ = IEPILE.parse(RE, relations[:relations.rindex('"object"') + 4], CONLL04, "en")
    assert len(records) == 899  # the last item lost its object; the rest are whole


def test_deep_nesting_and_huge_outputs_never_break_a_parser():
    deep = "[" * 900 + '"Bob"' + "]" * 900  # decodes (under the recursion limit): read it without recursing
    records, errors = IEPILE.parse(NER, f'{{"person": {deep}, "location": ["Paris"]}}', CONLL03, "en")
    assert {r.text for r in records} == {"Bob", "Paris"} and not errors
    records, errors = IEPILE.parse(RE, json.dumps({"work for": [{"subject": "A", "object": "B"}]})[:-2]
                                      + f", {deep}]}}", CONLL04, "en")
    assert [(r.head.text, r.tail.text) for r in records] == [("A", "B")]
    assert not any("parser failed" in e for e in errors), errors
    for raw in ("[" * 100_000, "{" * 100_000, '{"a":' * 20_000):
        for task, schema in ((NER, CONLL03), (RE, CONLL04), (EE, DUEE)):
            records, errors = IEPILE.parse(task, raw, schema, schema.language)
            assert records == [] and errors and not any("parser failed" in e for e in errors)


def test_an_output_past_the_size_limit_is_read_up_to_it():
    from deepke_llm.prompts.styles import MAX_OUTPUT_CHARS

    raw = '{"person": ["Bob"]}' + " " * MAX_OUTPUT_CHARS + '{"location": ["Paris"]}'
    for style in (IEPILE, KNOWLM):
        records, errors = style.parse(NER, raw if style is IEPILE else "(Bob,person)" + raw, CONLL03, "en")
        assert [r.text for r in records] == ["Bob"]
        assert errors[0] == f"output is {len(raw) + (0 if style is IEPILE else 12):,} " \
                            f"characters; read only the first {MAX_OUTPUT_CHARS:,}"


def test_list_valued_subject_and_object_expand_to_a_bounded_number_of_pairs():
    from deepke_llm.tasks.re import MAX_PAIRS

    out = json.dumps({"work for": [{"subject": [f"P{i}" for i in range(200)],
                                    "object": [f"O{i}" for i in range(200)]}]})
    records, errors = IEPILE.parse(RE, out, CONLL04, "en")
    assert len(records) == MAX_PAIRS and (records[0].head.text, records[0].tail.text) == ("P0", "O0")
    assert errors == [f"relation 'work for': 40,000 subject/object pairs in one item; kept the first "
                      f"{MAX_PAIRS:,}"]


def test_an_escaped_lone_surrogate_in_the_answer_becomes_a_replacement_character():
    for raw in (r'{"person": ["Bob\ud800", "Ann"]}', r"{'person': ['Bob\ud800', 'Ann']}"):
        records, errors = IEPILE.parse(NER, raw, CONLL03, "en")
        assert [r.text for r in records] == ["Bob\ufffd", "Ann"]
        json.dumps([r.to_dict() for r in records], ensure_ascii=False).encode("utf-8")
