"""BMES reader on MSRA train: counts against the raw tags, BMES decoding, the msra benchmark's
train split (and that the same format still reads the BIO test split)."""

from __future__ import annotations

from deepke_llm.datasets import read_dataset
from deepke_llm.datasets.bmes import read_bmes
from deepke_llm.evaluation.definitions import load_benchmark, resolve_data_path


def _raw_counts(path) -> tuple[int, int]:
    """Sentences and entities from the tags: an entity starts at B-/S-, or at an M-/E- that does
    not continue a B-/M- of its type (a sentence the packager cut inside a name)."""
    entities = 0
    previous = "O"
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            previous = "O"
            continue
        tag = line.rsplit(" ", 1)[1]
        if tag[0] in "BS" or (tag[0] in "ME" and not (previous[0] in "BM"
                                                    and previous[2:] == tag[2:])):
            entities += 1
        previous = tag
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    sentences = sum(1 for block in text.split("\n\n") if block.strip())
    return sentences, entities


def test_msra_train_counts_and_the_benchmark_splits(data_dir):
    definition = load_benchmark("msra")
    assert definition.format == "bmes" and definition.default_split == "test"
    assert "peoples_daily" in definition.description  # the contamination note
    path = resolve_data_path(definition, "train", data_dir)
    sentences, entities = _raw_counts(path)
    assert sentences == 50289  # shared/data/README.md; its 67,402 counts B- tags only
    errors: list[str] = []
    docs = list(read_dataset("bmes", path, "msra", "train", errors=errors))
    assert errors == [] and len(docs) == sentences
    assert sum(len(d.entities) for d in docs) == entities == 74444
    assert docs[0].id == "msra-train-0" and docs[0].language == "zh"
    assert {e.type for d in docs for e in d.entities} == {"人物", "地理位置", "组织机构"}
    for doc in docs[:2000]:
        for entity in doc.entities:
            assert doc.text[entity.start:entity.end] == entity.text
    test = list(read_dataset("bmes", resolve_data_path(definition, "test", data_dir), "msra",
                             "test"))
    assert (len(test), sum(len(d.entities) for d in test)) == (3442, 6190)  # as the bio reader


def test_bmes_tags_decode_with_crlf_and_a_cut_sentence(tmp_path):
    path = tmp_path / "small.bmes"
    path.write_bytes("张 B-PER\r\n小 M-PER\r\n三 E-PER\r\n在 O\r\n京 S-LOC\r\n\r\n"
                     "海 M-ORG\r\n关 E-ORG\r\n好 O\r\n".encode())
    first, second = read_bmes(path, id_prefix="m")
    assert [(e.type, e.text, e.start) for e in first.entities] == [("PER", "张小三", 0),
                                                                  ("LOC", "京", 4)]
    assert first.text == "张小三在京" and first.meta["tokens"][1] == [1, 2]
    assert [(e.type, e.text) for e in second.entities] == [("ORG", "海关")]
