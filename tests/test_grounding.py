"""Grounding mention strings to offsets: exact, fuzzy, nearest-pair, Chinese, ungrounded."""

from __future__ import annotations

from deepke_llm.grounding import (
    GroundingOptions,
    find_mention,
    ground_entities,
    ground_events,
    ground_relations,
)
from deepke_llm.records import Argument, Entity, Event, Relation, Span


def test_exact_then_case_width_and_space_insensitive():
    text = "Robert Allenby ( Australia ) beat Japan 's team . ＩＢＭ won."
    assert find_mention(text, "Australia") == [(17, 26)]
    (s, e), = find_mention(text, "japan's")
    assert text[s:e] == "Japan 's"
    (s, e), = find_mention(text, "IBM")
    assert text[s:e] == "ＩＢＭ"


def test_word_boundaries_preferred_for_english():
    text = "Iran and Ira met."
    assert find_mention(text, "Ira") == [(9, 12)]
    # nothing on a boundary: the inner occurrence is better than nothing
    assert find_mention("Iranian", "Iran") == [(0, 4)]


def test_ner_labels_every_non_overlapping_occurrence_longest_first():
    text = "New York is big. York is old. New York again."
    entities, errors = ground_entities(text, [Entity("location", "York"), Entity("location", "New York")])
    spans = [(e.text, e.start, e.end) for e in entities]
    assert spans == [("New York", 0, 8), ("York", 17, 21), ("New York", 30, 38)]
    assert errors == []
    assert all(text[e.start:e.end] == e.text for e in entities)


def test_ner_conflicting_types_the_later_answer_wins_and_is_reported():
    text = "Essex beat Kent at Essex ."
    entities, errors = ground_entities(text, [Entity("location", "Kent"), Entity("person", "Essex"),
                                              Entity("organization", "Essex")])
    # every occurrence takes the later type, in text order, offsets unchanged
    assert [(e.type, e.text, e.start) for e in entities] == [
        ("organization", "Essex", 0), ("location", "Kent", 11), ("organization", "Essex", 19)]
    assert errors == ["entity 'Essex' predicted as both person and organization; kept organization "
                      "(the later answer)"]
    # a third type: the last one wins
    entities, errors = ground_entities("Essex won", [Entity("person", "Essex"), Entity("location", "Essex"),
                                                     Entity("else", "Essex")])
    assert [(e.type, e.start) for e in entities] == [("else", 0)] and len(errors) == 2
    # a name already under two types (a trailing comma kept one answer apart): the later
    # answer still relabels every occurrence, no two entities on one span
    entities, errors = ground_entities("Essex, Kent and Essex won", [
        Entity("person", "Essex,"), Entity("organization", "Essex"), Entity("organization", "ESSEX"),
        Entity("person", "Essex")])
    assert [(e.type, e.start, e.end) for e in entities] == [("person", 0, 5), ("person", 16, 21)]
    assert errors[-1].endswith("kept person (the later answer)")
    # the same type twice is no conflict
    assert ground_entities("Essex won", [Entity("person", "Essex")] * 2) == ([Entity("person", "Essex", 0, 5)], [])


def test_ungrounded_mentions_are_kept_with_null_offsets():
    entities, errors = ground_entities("Nothing here.", [Entity("person", "Bob")])
    assert entities == [Entity("person", "Bob")] and entities[0].start is None
    assert errors == ["entity 'Bob' (person) not found in the text"]


def test_relation_picks_nearest_pair_chinese():
    text = "张三在北京工作。李四说张三住在上海。"
    relations, errors = ground_relations(text, [Relation("居住地", Entity("人物", "张三"), Entity("地点", "上海"))])
    (r,) = relations
    assert (r.head.start, r.tail.start) == (11, 15)
    assert text[r.head.start:r.head.end] == "张三" and not errors


def test_half_width_katakana_has_no_word_boundaries_like_full_width():
    # half-width kana is Katakana script: both occurrences found, as in the full-width text
    # (the old block list saw it as letters of a spaced script and kept only the second)
    full, half = "ソニーグループの株価、グループ全体", "ｿﾆｰｸﾞﾙｰﾌﾟの株価、ｸﾞﾙｰﾌﾟ全体"
    assert find_mention(full, "グループ") == [(3, 7), (11, 15)]
    assert find_mention(half, "ｸﾞﾙｰﾌﾟ") == [(3, 9), (13, 19)]


def test_relation_missing_tail_reported():
    relations, errors = ground_relations("Alice left.", [Relation("r", Entity("", "Alice"), Entity("", "Bob"))])
    assert relations[0].head.start == 0 and relations[0].tail.start is None
    assert errors == ["relation 'r': tail 'Bob' not found in the text"]


def test_event_trigger_nearest_its_arguments():
    text = "Troops attacked. Later rebels attacked the town of Homs."
    (event,), errors = ground_events(text, [Event("attack", Span("attacked"),
                                                  (Argument("attacker", "rebels"), Argument("place", "Homs")))])
    assert event.trigger.start == text.index("attacked", 20)
    assert [text[a.start:a.end] for a in event.arguments] == ["rebels", "Homs"] and not errors


def test_fuzzy_match_records_carry_the_text_found():
    text = "Robert Allenby ( Australia ) beat Japan 's team ."
    (entity,), _ = ground_entities(text, [Entity("person", "robert  allenby")])
    assert (entity.text, entity.start, entity.end) == ("Robert Allenby", 0, 14)
    (relation,), _ = ground_relations(text, [Relation("r", Entity("", "japan's"), Entity("", "AUSTRALIA"))])
    assert [relation.head.text, relation.tail.text] == ["Japan 's", "Australia"]
    for part in (relation.head, relation.tail):
        assert text[part.start:part.end] == part.text


def test_sentence_and_clause_punctuation_copied_by_the_model_is_left_out():
    text = "Japan began the defence of their title with a 2-1 win against Syria."
    assert [text[s:e] for s, e in find_mention(text, "Syria.")] == ["Syria"]
    text = "He met Bob Smith, the U.S. envoy, at Acme Corp. Later he flew to Paris. Then home."
    assert [text[s:e] for s, e in find_mention(text, "Bob Smith,")] == ["Bob Smith"]
    assert [text[s:e] for s, e in find_mention(text, "Paris.")] == ["Paris"]
    # abbreviations keep their period, at the end of a sentence too
    assert [text[s:e] for s, e in find_mention(text, "U.S.")] == ["U.S."]
    assert [text[s:e] for s, e in find_mention(text, "Acme Corp.")] == ["Acme Corp."]
    text = "Shares of Acme Bhd. rose."
    assert [text[s:e] for s, e in find_mention(text, "Acme Bhd.")] == ["Acme Bhd."]
    text = "他去了北京，又去了上海。"
    assert [text[s:e] for s, e in find_mention(text, "北京，")] == ["北京"]
    assert [text[s:e] for s, e in find_mention(text, "上海。")] == ["上海"]
    entities, errors = ground_entities("We beat Syria.", [Entity("location", "Syria."),
                                                          Entity("location", "Syria")])
    assert [(e.text, e.start, e.end) for e in entities] == [("Syria", 8, 13)] and errors == []
    text = "Bob , Ann and Syria ."  # tokenised text: the fuzzy match spans the space
    assert [text[s:e] for s, e in find_mention(text, "Bob,")] == ["Bob"]
    assert [text[s:e] for s, e in find_mention(text, "Syria.")] == ["Syria"]


def test_trimming_can_be_turned_off_for_corpora_whose_gold_keeps_the_period():
    text = "The plant is in Galveston."
    keep = GroundingOptions(trim_punctuation=False)
    assert find_mention(text, "Galveston.", keep) == [(16, 26)]
    relations, _ = ground_relations(text, [Relation("located in", Entity("location", "plant"),
                                                    Entity("location", "Galveston."))], keep)
    assert relations[0].tail.text == "Galveston."
    relations, _ = ground_relations(text, [Relation("located in", Entity("location", "plant"),
                                                    Entity("location", "Galveston."))])
    assert relations[0].tail.text == "Galveston"


def test_a_mention_of_only_spaces_and_a_period_is_kept_not_a_crash():
    # the old trimming looked for the word before the period and raised IndexError
    assert find_mention("A . B", " .") == [(1, 3)]


def test_fuzzy_matching_keeps_only_the_latest_text_folded_in_memory():
    """The fold cache held up to 64 whole texts (gigabytes in ``parse``); one text is enough,
    grounding asks about one window at a time."""
    import gc
    import tracemalloc

    tracemalloc.start()
    try:
        for k in range(4):
            text = f"{k} " + "Robert Allenby ( Australia ) beat Japan . " * 10_000  # ~420 KB
            assert len(find_mention(text, "robert  allenby")) == 10_000
            del text
        gc.collect()
        retained, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert retained < 4_000_000, retained  # one folded text is ~2 MB; four held were ~50 MB
