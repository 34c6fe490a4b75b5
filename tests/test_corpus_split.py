"""Source reading: names, formats (.gz, .bz2), plain-text documents, undecodable lines.

The sentence splitter itself is tested in tests/test_sentences.py."""

from __future__ import annotations

import bz2
import gzip
import json

from deepke_llm.training.pretrain.corpus import BadLine, SourceSpec, iter_raw_records
from deepke_llm.training.pretrain.prepare import PrepareOptions, prepare_corpus


def test_source_spec_names_and_formats(tmp_path):
    assert SourceSpec.parse("wiki=data/a.jsonl").name == "wiki"
    spec = SourceSpec.parse("data/news.2024.txt.gz")
    assert (spec.name, spec.is_jsonl) == ("news", False)
    assert SourceSpec.parse("x.jsonl.gz").is_jsonl and SourceSpec.parse("x.jsonl.bz2").is_jsonl
    assert SourceSpec.parse("dump.2024.txt.bz2").name == "dump"


def test_plain_text_documents_are_paragraphs_or_lines(tmp_path):
    path = tmp_path / "t.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("p1 l1\np1 l2\n\n\np2 l1\n\n")
    spec = SourceSpec.parse(str(path))
    # the line break ending a document separates documents; the ones inside are text
    assert list(iter_raw_records(spec)) == [(1, "p1 l1\np1 l2"), (5, "p2 l1")]
    assert [r for _, r in iter_raw_records(spec, "line")] == ["p1 l1", "p1 l2", "p2 l1"]


def test_bz2_sources_are_read_like_gz(tmp_path):
    path = tmp_path / "t.jsonl.bz2"
    with bz2.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"text": "缩进\n    保留"}, ensure_ascii=False) + "\n")
    (number, raw), = iter_raw_records(SourceSpec.parse(str(path)))
    assert number == 1 and json.loads(raw)["text"] == "缩进\n    保留"


def test_undecodable_lines_are_reported_with_file_and_line(tmp_path, tiny_tokenizer_dir):
    text = tmp_path / "gbk.txt"
    text.write_bytes(b"good paragraph.\n\nbad " + "中文".encode("gbk") + b" line\nsame paragraph\n\nlast one.\n")
    records = list(iter_raw_records(SourceSpec.parse(str(text))))
    assert records[0] == (1, "good paragraph.") and records[2] == (6, "last one.")
    number, bad = records[1]
    assert number == 3 and isinstance(bad, BadLine) and "not valid UTF-8 (byte 0xd6 at byte 5)" in bad.reason
    lines = tmp_path / "docs.jsonl"
    lines.write_bytes(b'{"text": "fine one."}\n{"text": "caf\xe9"}\n{"text": "fine two."}\n')
    meta = prepare_corpus([str(lines), str(text)], str(tiny_tokenizer_dir), str(tmp_path / "c"),
                          PrepareOptions(max_len=64, min_len=0))
    docs, gbk = meta["sources"]
    assert (docs["documents"], docs["undecodable_lines"], docs["bad_records"]) == (2, 1, 1)
    assert (gbk["documents"], gbk["undecodable_lines"], gbk["bad_records"]) == (2, 1, 1)
    assert f"{lines}:2: not valid UTF-8" in meta["errors"][0]
    assert f"{text}:3: not valid UTF-8" in meta["errors"][1]
