"""FinRE reader: one document per sentence, counts computed from the raw lines, unknown pairs
never records, reverse labels folded, symmetric ones kept once, names located with the grounder
(nested names, repeats, missing names); the finre benchmark definition."""

from __future__ import annotations

import pytest

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.finre import SYMMETRIC, read_finre
from deepke_llm.evaluation.definitions import load_benchmark, resolve_data_path
from deepke_llm.schema import load_schema


def _raw(path) -> tuple[int, int, int]:
    """Sentences, facts and labelled self-pairs, computed from the lines the simple way: a fact
    is (sentence, forward label, ordered pair), or the unordered pair for symmetric labels."""
    sentences: set[str] = set()
    facts: set[tuple] = set()
    self_pairs = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        head, tail, label, sentence = line.split("\t")
        sentences.add(sentence)
        if label == "unknown":
            continue
        if head == tail:
            self_pairs += 1
            continue
        if label.startswith("被"):
            label, head, tail = label[1:], tail, head
        pair = frozenset((head, tail)) if label in SYMMETRIC else (head, tail)
        facts.add((sentence, label, pair))
    return len(sentences), len(facts), self_pairs


@pytest.mark.parametrize("split, lines, sentences", [
    ("train", 13486, 6140), ("dev", 1489, 677), ("test", 3727, 1677)])
def test_counts_match_the_raw_lines_and_every_name_is_located(data_dir, split, lines, sentences):
    definition = load_benchmark("finre")
    path = resolve_data_path(definition, split, data_dir)
    assert sum(1 for x in path.read_text(encoding="utf-8").splitlines() if x.strip()) == lines
    raw_sentences, facts, self_pairs = _raw(path)
    errors: list[str] = []
    docs = list(read_dataset("finre", path, "finre", split, errors=errors))
    assert len(docs) == raw_sentences == sentences  # each sentence's lines are consecutive
    assert sum(len(d.relations) for d in docs) == facts
    assert len(errors) == self_pairs and all("head and tail are both" in e for e in errors)
    names = {r.name for r in load_schema("finre").relation_types}
    assert len(names) == 27 and "unknown" not in names
    assert {r.type for d in docs for r in d.relations} <= names
    for doc in docs:
        assert doc.entities == ()
        for relation in doc.relations:
            for end in (relation.head, relation.tail):
                assert end.start is not None and doc.text[end.start:end.end] == end.text
            if relation.type in SYMMETRIC:
                assert relation.head.start <= relation.tail.start


def test_symmetric_labels_are_the_ones_stated_in_both_orders(data_dir):
    """SYMMETRIC (and the schema's symmetric flags) match the data: a symmetric label always
    comes back for the reversed pair; every other label has a 被 form."""
    lines = [x.split("\t") for x in (data_dir / "finre/train.txt").read_text(
        encoding="utf-8").splitlines() if x.strip()]
    stated = {(s, h, t, r) for h, t, r, s in lines}
    labels = {r for _, _, r, _ in lines} - {"unknown"}
    symmetric = {label for label in labels
                 if all((s, t, h, r) in stated for s, h, t, r in stated if r == label)}
    assert symmetric == SYMMETRIC
    assert {r.name for r in load_schema("finre").relation_types if r.symmetric} == SYMMETRIC
    reverse = {r for r in labels if r.startswith("被")}
    assert {r for r in labels if r not in reverse} - SYMMETRIC == {r[1:] for r in reverse}


def test_grouping_folding_and_grounding_of_a_small_file(tmp_path):
    text = "上海东汐总经理说,华谊收购东汐。东汐将与多家公司合作,包括华谊。"
    rows = [
        ("上海东汐", "东汐", "自己"), ("东汐", "上海东汐", "自己"),
        ("东汐", "华谊", "合作"), ("华谊", "东汐", "合作"),
        ("东汐", "华谊", "被收购"), ("华谊", "东汐", "收购"),
        ("华谊", "上海东汐", "unknown"), ("上海东汐", "华谊", "unknown"),
        ("华谊", "华谊", "拥有"), ("东汐", "腾讯", "竞争"),
    ]
    body = "".join(f"{h}\t{t}\t{r}\t{text}\n\n" for h, t, r in rows)
    path = tmp_path / "finre.txt"
    path.write_text(body + "甲\t乙\n" + "甲\t乙\t合作\t甲和乙\r\n", encoding="utf-8")
    errors: list[str] = []
    first, second = read_finre(path, schema="finre", id_prefix="f", errors=errors)
    assert (first.id, second.id) == ("f-0", "f-1")
    got = [(r.type, r.head.text, r.head.start, r.tail.text, r.tail.start) for r in first.relations]
    assert got == [
        # 东汐 inside 上海东汐 is not an occurrence while standalone ones exist: the nearest
        # standalone one (13) is taken; symmetric types: the earlier mention is the head
        ("自己", "上海东汐", 0, "东汐", 13),
        # of the occurrences 华谊 9/29 and 东汐 13/16, the pair nearest to each other
        ("合作", "华谊", 9, "东汐", 13),
        # 被收购 (东汐, 华谊) is 收购 (华谊, 东汐): one record for the two lines
        ("收购", "华谊", 9, "东汐", 13),
        # a name not in the sentence keeps null offsets
        ("竞争", "东汐", 13, "腾讯", None),
    ]
    assert first.meta["no_relation"] == [["华谊", "上海东汐"]]
    assert [(r.type, r.head.text, r.tail.text) for r in second.relations] == [("合作", "甲", "乙")]
    assert "no_relation" not in second.meta
    assert len(errors) == 3
    assert any(f"{path}:21: expected head, tail, relation and sentence" in e for e in errors)
    assert any("head and tail are both '华谊'; relation '拥有' skipped" in e for e in errors)
    assert any("'腾讯' does not occur in the sentence; offsets left null" in e for e in errors)


def test_convert_reads_finre(tmp_path):
    from click.testing import CliRunner

    from deepke_llm.cli import main
    from deepke_llm.records import read_documents

    source = tmp_path / "finre.txt"
    source.write_text("甲公司\t乙公司\t被收购\t乙公司收购甲公司\n\n"
                      "甲公司\t乙公司\tunknown\t甲公司和乙公司\n", encoding="utf-8")
    out = tmp_path / "docs.jsonl"
    result = CliRunner().invoke(main, ["convert", "--format", "finre", "--input", str(source),
                                       "--schema", "finre", "--split", "dev", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 documents, 0 entities, 1 relations" in result.output
    first, second = read_documents(str(out))
    assert first.id == "finre-dev-0"
    assert [(r.type, r.head.text, r.head.start, r.tail.text, r.tail.start)
            for r in first.relations] == [("收购", "乙公司", 0, "甲公司", 5)]
    assert second.relations == () and second.meta["no_relation"] == [["甲公司", "乙公司"]]
