"""Constrained decoding: for random schemas, texts and token choices, every answer parses, every
mention grounds exactly, every name comes from the schema; gold answers are always allowed."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepke_llm.backends.base import GenerationConfig
from deepke_llm.decoding import ConstraintCompiler, RowConstraint, TokenIndex, answer_json_schema
from deepke_llm.extractor import Extractor, parse_output
from deepke_llm.prompts.styles import chunk_schema, get_style
from deepke_llm.records import Argument, Document, Entity, Event, Relation
from deepke_llm.schema import load_schema
from deepke_llm.tasks import get_task

WORDS = ["Japan", "Syria", "Beirut", "Oswald", "Kennedy", "Apple", "Cupertino", "Tim", "Cook",
         'the "Lions"', "back\\slash", "北京", "国务院", "广东省", "laid off", "1996-08-22"]
NAMES = ["person", "location", "organization", "else", "work for", "kill", "live in",
         "place of death", "attack", "layoff", "人物", "地点", "公司"]


def _schema(rng: random.Random) -> dict:
    names = rng.sample(NAMES, rng.randint(1, 7))
    roles = rng.sample(["attacker", "place", "victim", "time", "时间"], rng.randint(0, 3))
    return {"name": "random", "language": "en",
            "entity_types": [{"name": n, "label": f"E{i}"} for i, n in enumerate(names)],
            "relation_types": [{"name": n, "label": f"R{i}"} for i, n in enumerate(names)],
            "event_types": [{"name": n, "label": f"V{i}",
                             "roles": [{"name": r, "label": f"A{j}"} for j, r in enumerate(roles)]}
                            for i, n in enumerate(names)]}


def _text(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
    return rng.choice([" ", ", ", "\n"]).join(words) + rng.choice([".", "", " !"])


@pytest.fixture(scope="module")
def vocab() -> TokenIndex:
    return synthetic_vocab()


def synthetic_vocab() -> TokenIndex:
    """Every byte, plus multi-byte pieces such as a BPE vocabulary has (structure, words,
    pieces of words, space-prefixed words, CJK characters)."""
    rng = random.Random(0)
    pieces = {bytes([b]) for b in range(256)}
    pieces |= {s.encode() for s in ['{"', '": ', '": [', '": [],', '"]', '"],', '", "', '"}',
                                    '"}]', '"}],', "}}", '{"subject": "', ', "', "\n(", ")\n"]}
    for word in WORDS + NAMES:
        data = word.encode()
        pieces |= {data, b" " + data, b'"' + data, data + b'"'}
        for _ in range(4):
            i, j = sorted(rng.sample(range(len(data) + 1), 2))
            pieces.add(data[i:j] or data)
    pieces |= {c.encode() for c in string.ascii_letters + "北京国务院广东省人物地点公司时间"}
    return TokenIndex([None, *sorted(pieces)], end_ids=[0])  # id 0: end of sequence


def _generate(row: RowConstraint, rng: random.Random, vocab: TokenIndex) -> str:
    """A random model's answer; with ``row.escape`` its favourite token is now and then one the
    constraint refuses (a name that is not in the text), which an escape drops."""
    out: list[int] = []
    for _ in range(4 * row.max_new_tokens):
        options = row.options()
        if row.finished or not len(options.ids):
            break
        logits = np.zeros(vocab.size)
        refused = np.setdiff1d(np.arange(1, vocab.size), options.ids)
        wild = row.escape and len(refused) and rng.random() < 0.3
        logits[int(rng.choice(refused if wild else options.ids))] = 1.0
        escaped = row.escaped(logits)
        if escaped is not None:
            back, tokens = escaped
            out = out[:len(out) - back] + tokens
            continue
        token = row.pick(logits)
        if token == 0:
            break
        row.advance(token)
        out += [token, *row.forced()]  # jump-forward, if on
    return b"".join(_bytes_of(vocab, t) for t in out).decode("utf-8")


def _bytes_of(vocab: TokenIndex, token: int) -> bytes:
    for key, ids in zip(vocab.keys, vocab.ids, strict=True):
        if token in ids:
            return key
    raise KeyError(token)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), task=st.sampled_from(["ner", "re", "ee"]),
       style=st.sampled_from(["iepile", "knowlm"]), budget=st.sampled_from([12, 40, 512]),
       escape=st.booleans())
def test_every_constrained_answer_parses_grounds_and_names_schema_types(vocab, seed, task, style,
                                                                        budget, escape):
    rng = random.Random(seed)
    schema, text = load_schema(_schema(rng)), _text(rng)
    task_obj = get_task(task)
    chunk = chunk_schema(task_obj, schema)[0]
    items = task_obj.schema_items(chunk, "en")
    constraint = ConstraintCompiler(style, task).for_prompt(0, items, text)
    jump = vocab.tokenize if rng.random() < 0.5 else None
    row = RowConstraint(constraint.automaton, vocab, budget, jump, escape=escape)
    output = _generate(row, rng, vocab)
    records, errors = parse_output(task_obj, output, chunk, text, "en", get_style(style))
    # the model's own choices (one mention under two types) are not what the constraint rules
    assert [e for e in errors if "predicted as both" not in e] == [], (output, errors)
    for mention in _mentions(records):
        assert mention.start is not None and text[mention.start:mention.end] == mention.text, output
    known = task_obj.known_types(chunk)
    assert {r.type for r in records} <= known, output


def _mentions(records: list) -> list:
    out = []
    for record in records:
        if isinstance(record, Entity):
            out.append(record)
        elif isinstance(record, Relation):
            out += [record.head, record.tail]
        elif isinstance(record, Event):
            out += [record.trigger, *record.arguments]
    return out


def _gold(task: str, text: str, rng: random.Random, schema) -> Document:
    """A document whose gold records are random mentions of ``text`` typed from ``schema``."""
    words = [w for w in WORDS if w in text]
    spans = [Entity("", w, text.index(w), text.index(w) + len(w)) for w in words]

    def pick() -> Entity:
        return rng.choice(spans)
    if task == "ner":
        return Document("d", text, entities=tuple(
            Entity(rng.choice(schema.entity_types).label, e.text, e.start, e.end)
            for e in rng.sample(spans, min(3, len(spans)))))
    if task == "re":
        return Document("d", text, relations=tuple(
            Relation(rng.choice(schema.relation_types).label, pick(), pick()) for _ in range(2)))
    kind = rng.choice(schema.event_types)
    arguments = tuple(Argument(role.label, m.text, m.start, m.end)
                      for role in kind.roles for m in rng.sample(spans, min(2, len(spans))))
    return Document("d", text, events=(Event(kind.label, pick(), arguments),))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), task=st.sampled_from(["ner", "re", "ee"]),
       style=st.sampled_from(["iepile", "knowlm"]))
def test_the_gold_answer_the_style_writes_is_always_allowed(seed, task, style):
    rng = random.Random(seed)
    schema = load_schema(_schema(rng))
    text = " ".join(rng.sample(WORDS, 5))
    document = _gold(task, text, rng, schema)
    task_obj = get_task(task)
    target = get_style(style).target(task_obj, document, schema, "en")
    items = task_obj.schema_items(schema, "en")
    automaton = ConstraintCompiler(style, task).for_prompt(0, items, text).automaton
    state = automaton.start()
    for byte in target.encode():
        state = automaton.step(state, byte)
        assert state, f"{target!r} refused at {byte!r}"
    assert automaton.accepts(state), target


def test_names_outside_the_schema_and_mentions_outside_the_text_are_refused():
    automaton = ConstraintCompiler("iepile", "ner").for_prompt(
        0, ["person", "location"], "Apple opened a store in Cupertino.").automaton

    def allowed(answer: str) -> bool:
        state = automaton.start()
        for byte in answer.encode():
            state = automaton.step(state, byte)
            if not state:
                return False
        return automaton.accepts(state)

    assert allowed('{"person": [], "location": ["Cupertino"]}')
    assert not allowed('{"person": [], "location": ["Cus"]}')  # inside a word
    assert not allowed('{"person": [], "location": ["Paris"]}')  # not in the text
    assert not allowed('{"person": [], "company": ["Apple"]}')  # not a schema name
    assert not allowed('{"person": [], "location": [" Cupertino"]}')  # starts on a space
    assert not allowed('{"person": []}')  # every key is written


def test_a_name_the_model_cannot_copy_is_dropped_not_replaced_by_the_nearest_one(vocab):
    text = "13 - Nick Popplewell ( Ireland ) , 12 - Ian Jones ( New Zealand ) ."
    automaton = ConstraintCompiler("iepile", "ner").for_prompt(
        0, ["person", "location"], text).automaton

    def wants(piece: bytes) -> np.ndarray:
        logits = np.zeros(vocab.size)
        logits[vocab.tokenize(piece)[0]] = 1.0
        return logits

    def write(row: RowConstraint, out: list[int], answer: bytes) -> None:
        for token in vocab.tokenize(answer):
            assert row.escaped(wants(_bytes_of(vocab, token))) is None
            row.advance(token)
            out.append(token)

    other = wants(b"Kennedy")  # a name that is not in the text (one token of the vocabulary)
    row, out = RowConstraint(automaton, vocab, 64, escape=True), []
    write(row, out, b'{"person": ["Nick Popplewell", "')
    back, tokens = row.escaped(other)
    out = out[:len(out) - back] + tokens
    write(row, out, b', "location": ["Ireland"]}')
    answer = b"".join(_bytes_of(vocab, t) for t in out).decode()
    assert answer == '{"person": ["Nick Popplewell"], "location": ["Ireland"]}'
    assert row.finished and row.escapes == 1
    first, out = RowConstraint(automaton, vocab, 64, escape=True), []  # a list's first item
    write(first, out, b'{"person": ["')
    back, tokens = first.escaped(other)
    out = out[:len(out) - back] + tokens
    write(first, out, b', "location": []}')
    assert b"".join(_bytes_of(vocab, t) for t in out) == b'{"person": [], "location": []}'
    plain, kept = RowConstraint(automaton, vocab, 64), []  # escape off: never goes back
    write(plain, kept, b'{"person": ["Nick Popplewell", "')
    assert plain.escaped(other) is None
    assert not _bytes_of(vocab, plain.pick(other)).startswith(b"K")  # forced onto another


def test_the_json_schema_for_servers_has_exactly_the_chunk_keys():
    schema = answer_json_schema("ee", [{"event_type": "attack", "trigger": True,
                                        "arguments": ["attacker", "place"]}])
    event = schema["properties"]["attack"]["items"]
    assert schema["required"] == ["attack"] and schema["additionalProperties"] is False
    assert event["properties"]["arguments"]["required"] == ["attacker", "place"]


def test_a_random_tiny_model_answers_parse_and_ground_on_transformers(tiny_llama_dir):
    from deepke_llm.backends.hf import HFBackend

    backend = HFBackend(tiny_llama_dir)
    texts = ["Japan beat Syria 2-1 in Beirut.", "Oswald killed Kennedy in Dallas.",
             'He said "Apple" twice.']
    for task, schema in (("ner", "conll03"), ("re", "conll04")):
        free = Extractor(backend, schema, task, constrained=False,
                         generation=GenerationConfig(max_new_tokens=40, batch_size=3))
        assert any(d.errors for d in free.extract(texts))  # random weights write junk
        constrained = Extractor(backend, schema, task,
                                generation=GenerationConfig(max_new_tokens=40, batch_size=3))
        assert constrained.constrained
        for document in constrained.extract(texts):
            assert document.errors == (), document.raw_output
            for mention in _mentions(list(document.entities) + list(document.relations)):
                assert document.text[mention.start:mention.end] == mention.text


def test_an_engine_without_constraints_says_so():
    class Plain:
        def generate(self, prompts, config):
            return ["{}" for _ in prompts]

    assert not Extractor(Plain(), "conll03", "ner").constrained
    with pytest.raises(ValueError, match="--no-constrained"):
        Extractor(Plain(), "conll03", "ner", constrained=True)
