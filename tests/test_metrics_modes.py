"""Hand-computed strict / boundary / string scores for NER, RE and every EE level, and gold vs
itself = 1.0 on real data. The expected counts are worked out in the comments."""

from __future__ import annotations

import pytest

from deepke_llm.evaluation.scoring import score_documents
from deepke_llm.records import Argument, Document, Entity, Event, Relation, Span


def counts(result, mode, level=None):
    c = result.level(mode, level).overall
    return c.tp, c.fp, c.fn


# ---- NER -------------------------------------------------------------------------------------
TEXT = "Alice met Bob in Paris ."  # Alice 0-5, Bob 10-13, Paris 17-22

NER_GOLD = [
    Document("d1", TEXT, entities=(Entity("person", "Alice", 0, 5), Entity("person", "Alice", 0, 5),
                                   Entity("person", "Bob", 10, 13),
                                   Entity("location", "Paris", 17, 22))),
    Document("d2", "Rome wins .", entities=(Entity("location", "Rome", 0, 4),)),
    Document("d3", "nothing here"),
]
NER_PRED = [
    Document("d1", TEXT, entities=(
        Entity("person", "Alice", 0, 5),          # right everywhere
        Entity("person", "Alice", 0, 5),          # duplicate: same mention, counted once
        Entity("location", "Bob", 10, 13),        # type confusion: only boundary matches
        Entity("location", "Pari", 17, 21),       # boundary error: nothing matches
        Entity("person", "Carol"),                # ungrounded, not in gold: FP everywhere
        Entity("person", "Alice"),                # ungrounded copy of a gold mention: FP in
    )),                                           # strict/boundary, same string in string mode
    Document("d3", "nothing here"),               # empty on both sides: counts nothing
]                                                  # d2 has no prediction: its gold is missed


@pytest.fixture(scope="module")
def ner():
    return score_documents("ner", NER_GOLD, NER_PRED)


def test_ner_strict_counts_type_and_offsets(ner):
    # gold {(per,0,5),(per,10,13),(loc,17,22),(loc,0,4)@d2}
    # pred {(per,0,5),(loc,10,13),(loc,17,21),(per,~Carol),(per,~Alice)}
    assert counts(ner, "strict") == (1, 4, 3)
    strict = ner.level("strict").overall
    assert strict.precision == pytest.approx(1 / 5)
    assert strict.recall == pytest.approx(1 / 4)
    assert strict.f1 == pytest.approx(2 * 0.2 * 0.25 / 0.45)
    per_type = ner.mode_dict("strict")["per_type"]
    assert (per_type["person"]["tp"], per_type["person"]["fp"], per_type["person"]["fn"]) == (1, 2, 1)
    assert (per_type["location"]["tp"], per_type["location"]["fp"],
            per_type["location"]["fn"]) == (0, 2, 2)


def test_ner_boundary_ignores_types_and_has_no_per_type(ner):
    # spans: gold {0-5, 10-13, 17-22, d2 0-4}; pred {0-5, 10-13, 17-21, ~Carol, ~Alice}
    assert counts(ner, "boundary") == (2, 3, 2)
    assert ner.mode_dict("boundary")["per_type"] == {}


def test_ner_string_is_a_per_document_set_of_text_and_type(ner):
    # gold {(Alice,per),(Bob,per),(Paris,loc)} + d2 {(Rome,loc)}
    # pred {(Alice,per),(Bob,loc),(Pari,loc),(Carol,per)}: ungrounded Alice is the same string
    assert counts(ner, "string") == (1, 3, 3)


def test_ner_problems_are_counted(ner):
    diag = ner.diagnostics.counts
    assert diag["missing_prediction"] == 1
    assert diag["duplicate_record"] == 2  # one repeat on each side
    assert diag["ungrounded_prediction"] == 2
    assert diag["offsets_mismatch"] == 0  # "Pari" is text[17:21]
    assert ner.documents == 3


def test_empty_documents_and_empty_files_score_zero_without_crashing():
    empty = [Document("a", "x"), Document("b", "")]
    result = score_documents("ee", empty, empty)
    for mode in ("strict", "boundary", "string"):
        for level, values in result.mode_dict(mode).items():
            assert values == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0,
                              "fn": 0, "per_type": {}}, (mode, level)
    nothing = score_documents("ner", [], [])
    assert nothing.to_dict()["ner"]["strict"]["f1"] == 0.0


def test_duplicate_string_mentions_in_one_document_count_once_in_string_mode():
    text = "Paris and Paris"
    gold = [Document("a", text, entities=(Entity("location", "Paris", 0, 5),
                                          Entity("location", "Paris", 10, 15)))]
    pred = [Document("a", text, entities=(Entity("location", "Paris", 0, 5),))]
    result = score_documents("ner", gold, pred)
    assert counts(result, "strict") == (1, 0, 1)  # two mentions, one found
    assert counts(result, "string") == (1, 0, 0)  # one string, found


# ---- RE --------------------------------------------------------------------------------------
RE_TEXT = "Alice works for Acme in Paris ."  # Alice 0-5, Acme 16-20, Paris 24-29
ALICE, ACME, PARIS = (Entity("person", "Alice", 0, 5), Entity("organization", "Acme", 16, 20),
                      Entity("location", "Paris", 24, 29))


def test_re_modes_hand_computed():
    gold = [Document("r", RE_TEXT, relations=(Relation("work for", ALICE, ACME),
                                              Relation("located in", ACME, PARIS)))]
    pred = [Document("r", RE_TEXT, relations=(
        Relation("work for", Entity("", "Alice", 0, 5), ACME),  # head type missing
        Relation("located in", PARIS, ACME),                    # direction swapped
        Relation("work for", Entity("person", "Alice"), ACME),  # head ungrounded
    ))]
    result = score_documents("re", gold, pred)
    assert counts(result, "strict") == (0, 3, 2)
    # boundary: {(0-5,wf,16-20),(16-20,li,24-29)} vs {(0-5,wf,16-20),(24-29,li,16-20),(~,wf,16-20)}
    assert counts(result, "boundary") == (1, 2, 1)
    # string: {(Alice,wf,Acme),(Acme,li,Paris)} vs {(Alice,wf,Acme),(Paris,li,Acme)}
    assert counts(result, "string") == (1, 1, 1)
    per_type = result.mode_dict("boundary")["per_type"]
    assert per_type["work for"]["tp"] == 1 and per_type["work for"]["fp"] == 1
    assert per_type["located in"]["fn"] == 1 and per_type["located in"]["fp"] == 1


# ---- EE --------------------------------------------------------------------------------------
EE_TEXT = "Troops fired at the village and killed two ."
# Troops 0-6, fired 7-12, at 13-15, village 20-27, killed 32-38, two 39-42
EE_GOLD = [Document("e", EE_TEXT, events=(
    Event("attack", Span("fired", 7, 12), (Argument("attacker", "Troops", 0, 6),
                                           Argument("target", "village", 20, 27))),
    Event("die", Span("killed", 32, 38), (Argument("victim", "two", 39, 42),
                                          Argument("agent", "Troops", 0, 6))),
))]
EE_PRED = [Document("e", EE_TEXT, events=(
    Event("attack", Span("fired", 7, 12), (Argument("attacker", "Troops", 0, 6),
                                           Argument("place", "village", 20, 27))),  # wrong role
    Event("injure", Span("killed", 32, 38), (Argument("victim", "two", 39, 42),)),  # wrong type
    Event("attack", Span("at", 13, 15)),                                           # spurious
))]

EE_EXPECTED = {
    "trigger_identification": (2, 1, 0),   # {7-12, 32-38} vs {7-12, 32-38, 13-15}
    "trigger_classification": (1, 2, 1),   # (32-38, injure) and (13-15, attack) wrong
    "argument_identification": (2, 1, 2),  # (attack,0-6),(attack,20-27) right; die args missed
    "argument_classification": (1, 2, 3),  # only (attack, attacker, 0-6) right
}


@pytest.mark.parametrize("mode", ["strict", "boundary", "string"])
def test_ee_levels_hand_computed(mode):
    result = score_documents("ee", EE_GOLD, EE_PRED)
    for level, expected in EE_EXPECTED.items():
        assert counts(result, mode, level) == expected, (mode, level)


def test_ee_per_type_keys():
    result = score_documents("ee", EE_GOLD, EE_PRED)
    strict = result.mode_dict("strict")
    assert strict["trigger_identification"]["per_type"] == {}
    assert set(strict["trigger_classification"]["per_type"]) == {"attack", "die", "injure"}
    assert set(strict["argument_identification"]["per_type"]) == {"attack", "die", "injure"}
    roles = strict["argument_classification"]["per_type"]
    assert set(roles) == {"attacker", "target", "place", "victim", "agent"}
    assert (roles["victim"]["tp"], roles["victim"]["fp"], roles["victim"]["fn"]) == (0, 1, 1)


def test_ee_ungrounded_trigger_fails_identification_but_not_its_grounded_arguments():
    gold = [Document("e", EE_TEXT, events=(Event("attack", Span("fired", 7, 12),
                                                 (Argument("attacker", "Troops", 0, 6),)),))]
    pred = [Document("e", EE_TEXT, events=(Event("attack", Span("fired"),
                                                 (Argument("attacker", "Troops", 0, 6),)),))]
    result = score_documents("ee", gold, pred)
    assert counts(result, "strict", "trigger_identification") == (0, 1, 1)
    assert counts(result, "strict", "argument_classification") == (1, 0, 0)
    assert counts(result, "string", "trigger_classification") == (1, 0, 0)


# ---- gold vs itself --------------------------------------------------------------------------
def _assert_perfect(result):
    for mode, value in result.to_dict()[result.task].items():
        levels = value.values() if result.task == "ee" else [value]
        for level in levels:
            assert (level["precision"], level["recall"], level["f1"]) == (1.0, 1.0, 1.0), mode
            assert level["fp"] == level["fn"] == 0
            assert all(t["f1"] == 1.0 for t in level["per_type"].values())


def test_gold_against_itself_is_perfect_on_real_data(data_dir):
    from deepke_llm.datasets import read_dataset

    conll04 = list(read_dataset("spert", data_dir / "conll04" / "conll04_test.json",
                                schema="conll04", split="test"))
    _assert_perfect(score_documents("re", conll04, conll04, schema="conll04"))
    msra = list(read_dataset("bio", data_dir / "chinese_ner" / "msra.test", schema="msra",
                             split="test"))
    result = score_documents("ner", msra, msra, schema="msra")
    _assert_perfect(result)
    assert result.level("strict").overall.tp == 6190
    _assert_perfect(score_documents("ee", EE_GOLD, EE_GOLD))
