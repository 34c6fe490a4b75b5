"""`pretrain prepare` end to end: packed samples, dedup, errors, dtype, workers, merge, CLI."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from deepke_llm.cli import main
from deepke_llm.sentences import sentence_spans
from deepke_llm.training.pretrain.indexed_dataset import IndexedDataset, merge_datasets, token_dtype
from deepke_llm.training.pretrain.prepare import PrepareOptions, document_text, prepare_corpus

NEWS = [
    "Japan began the defence of their Asian Cup title. They won 2-1 against Syria!",
    "Mr. Smith joined Oracle in 1999. He left in 2003. Nobody knows why.",
    "Japan began the defence of their Asian Cup title. They won 2-1 against Syria!",  # duplicate
    "浙江大学位于杭州。它成立于1897年！你知道吗？",
    "Thomas Edison died in West Orange. " * 12,  # longer than max_len: its sentences are cut
    # newlines and indentation (code) survive; one dummy prefix per document, not per sentence
    "浙江大学位于杭州。它成立于1897年！\ndef f(x):\n    return x",
]
WEB = "Short web page one. It has two sentences.\n\nWeb page two\nhas lines.\n"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    news = root / "news.jsonl"
    lines = [json.dumps({"text": t}, ensure_ascii=False) for t in NEWS]
    lines[1:1] = ['{"text": broken', json.dumps({"body": "no text field"}), json.dumps({"text": "  "})]
    news.write_text("\n".join(lines) + "\n", encoding="utf-8")
    web = root / "pages.txt"
    web.write_text(WEB, encoding="utf-8")
    return [str(news), f"web={web}"]


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))


def _byte_level_bpe(out_dir):
    """A tiny GPT-2 style byte-level BPE (as in LLaMA-3, Qwen), trained here, saved as a HF dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(NEWS + [WEB] * 3, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>").save_pretrained(out_dir)
    return out_dir


def _check_documents(ds, tokenizer, sid: int, docs: list[str], max_len: int) -> int:
    """Each document comes back exactly: BOS + the tokenizer's ids for the whole text + EOS, and
    the samples are cut only where a sentence starts (or inside a sentence longer than max_len)."""
    picked = [i for i in range(len(ds)) if ds.source_ids[i] == sid]
    stream = np.concatenate([ds[i] for i in picked]).tolist()
    sample_cuts = set(np.cumsum([len(ds[i]) for i in picked]).tolist())
    position = 0
    at_sentence_starts = 0
    for doc in docs:
        encoding = tokenizer(doc, add_special_tokens=False)
        ids = encoding["input_ids"]
        assert stream[position] == tokenizer.bos_token_id
        assert stream[position + 1:position + 1 + len(ids)] == ids
        assert stream[position + 1 + len(ids)] == tokenizer.eos_token_id
        assert tokenizer.decode(stream[position + 1:position + 1 + len(ids)]) == doc
        starts = [0] + [encoding.char_to_token(s) + 1 for s, _ in sentence_spans(doc)[1:]] + [len(ids) + 2]
        for cut in sample_cuts:
            inside = cut - position
            at_sentence_starts += 0 < inside < len(ids) + 2 and inside in starts
            if 0 < inside < len(ids) + 2 and inside not in starts:
                sentence = max(k for k in range(len(starts)) if starts[k] < inside)
                assert starts[sentence + 1] - starts[sentence] > max_len, (doc, inside)
        position += len(ids) + 2
    assert position == len(stream)
    return at_sentence_starts


@pytest.mark.parametrize("kind", ["sentencepiece", "byte-level BPE"])
def test_packed_stream_decodes_to_the_original_documents(kind, sources, tiny_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer_dir = tiny_tokenizer_dir if kind == "sentencepiece" else _byte_level_bpe(tmp_path / "bbpe")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    meta = prepare_corpus(sources, str(tokenizer_dir), str(tmp_path / "c"), PrepareOptions(max_len=24, min_len=0))
    ds = IndexedDataset(tmp_path / "c")
    assert len(ds) == meta["num_samples"] and int(ds.lengths.sum()) == meta["num_tokens"]
    assert all(0 < len(ds[i]) <= 24 for i in range(len(ds)))
    news_docs = [NEWS[0], NEWS[1], NEWS[3], NEWS[4], NEWS[5]]  # duplicate dropped, first copy kept
    # plain text: the line break ending a paragraph separates documents, inner ones are text
    web_docs = ["Short web page one. It has two sentences.", "Web page two\nhas lines."]
    inner_cuts = _check_documents(ds, tokenizer, 0, news_docs, 24) + _check_documents(ds, tokenizer, 1, web_docs, 24)
    assert inner_cuts >= 3  # documents were cut, at sentence starts
    assert ds.source_names == ["news", "web"]


@pytest.mark.parametrize(("raw", "reason"), [
    ("[" * 100_000, "JSON nested too deeply"),  # was a RecursionError that stopped the run
    ('{"text": "a\\ud800b"}', "lone surrogate"),  # was a crash when hashing the text
    ('{"text": 1' + "1" * 5000 + "}", "not valid JSON"),
])
def test_unreadable_json_lines_are_one_line_errors_naming_file_and_line(raw, reason):
    with pytest.raises(ValueError, match=reason) as info:
        document_text(raw, True, "text", "news.jsonl:7")
    assert str(info.value).startswith("news.jsonl:7: ") and "\n" not in str(info.value)


def test_metadata_counts_duplicates_bad_records_and_dropped_samples(sources, tiny_tokenizer_dir, tmp_path):
    meta = prepare_corpus(sources, str(tiny_tokenizer_dir), str(tmp_path / "c"),
                          PrepareOptions(max_len=24, min_len=10))
    news, web = meta["sources"]
    assert (news["name"], news["documents"], news["duplicates"], news["empty"], news["bad_records"]) == \
        ("news", 5, 1, 1, 2)
    assert web["documents"] == 2 and web["files"][0].endswith("pages.txt")
    assert any(":2: not valid JSON" in e for e in meta["errors"])
    assert any(":3: no 'text' field" in e for e in meta["errors"])
    ds = IndexedDataset(tmp_path / "c")
    assert all(len(ds[i]) >= 10 for i in range(len(ds)))
    assert news["dropped_samples"] + web["dropped_samples"] > 0
    # dropped + kept tokens = all tokens the documents produced
    full = prepare_corpus(sources, str(tiny_tokenizer_dir), str(tmp_path / "all"),
                          PrepareOptions(max_len=24, min_len=0))
    assert meta["num_tokens"] + news["dropped_tokens"] + web["dropped_tokens"] == full["num_tokens"]
    assert ds.samples_per_source().tolist() == [news["samples"], web["samples"]]
    assert ds.tokens_per_source().tolist() == [news["tokens"], web["tokens"]]
    on_disk = json.loads((tmp_path / "c.json").read_text())
    assert on_disk["dtype"] == "uint16" and on_disk["max_len"] == 24
    assert on_disk["tokenizer"] == str(tiny_tokenizer_dir.resolve())  # absolute: usable from anywhere


def test_output_is_byte_identical_for_any_number_of_workers(sources, tiny_tokenizer_dir, tmp_path):
    options = dict(max_len=16, min_len=2, chunk_docs=2)
    prepare_corpus(sources, str(tiny_tokenizer_dir), str(tmp_path / "w1"), PrepareOptions(workers=1, **options))
    prepare_corpus(sources, str(tiny_tokenizer_dir), str(tmp_path / "w2"), PrepareOptions(workers=2, **options))
    for suffix in (".bin", ".idx"):
        assert (tmp_path / f"w1{suffix}").read_bytes() == (tmp_path / f"w2{suffix}").read_bytes()
    assert len(IndexedDataset(tmp_path / "w2")) > 3


def test_big_vocabularies_get_uint32_tokens(sources, tiny_tokenizer_dir, tmp_path):
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32
    small = prepare_corpus(sources, str(tiny_tokenizer_dir), str(tmp_path / "u16"), PrepareOptions(max_len=24))
    big = prepare_corpus(sources, str(tiny_tokenizer_dir), str(tmp_path / "u32"),
                         PrepareOptions(max_len=24, vocab_size=151_936))
    assert (small["dtype"], big["dtype"]) == ("uint16", "uint32")
    assert (tmp_path / "u32.bin").stat().st_size == 4 * big["num_tokens"] == 2 * (tmp_path / "u16.bin").stat().st_size
    a, b = IndexedDataset(tmp_path / "u16"), IndexedDataset(tmp_path / "u32")
    assert b.dtype == np.uint32 and all(a[i].tolist() == b[i].tolist() for i in range(len(a)))


def test_indexed_dataset_access_errors_and_pickling(sources, tiny_tokenizer_dir, tmp_path):
    prepare_corpus(sources, str(tiny_tokenizer_dir), str(tmp_path / "c"), PrepareOptions(max_len=24, min_len=0))
    ds = IndexedDataset(str(tmp_path / "c") + ".idx")
    assert ds[-1].tolist() == ds[len(ds) - 1].tolist()
    assert isinstance(ds[0], np.memmap)
    with pytest.raises(IndexError):
        ds[len(ds)]
    copy = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < 500 and copy[1].tolist() == ds[1].tolist()
    (tmp_path / "bad.idx").write_bytes(b"NOTANIDX" + bytes(40))
    (tmp_path / "bad.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="bad magic"):
        IndexedDataset(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="pretrain prepare"):
        IndexedDataset(tmp_path / "missing")


def test_merge_concatenates_and_joins_sources_by_name(sources, tiny_tokenizer_dir, tokenizer, tmp_path):
    import shutil

    prepare_corpus(sources, str(tiny_tokenizer_dir), str(tmp_path / "a"), PrepareOptions(max_len=24, min_len=0))
    prepare_corpus([sources[1].replace("web=", "forum=")], str(tiny_tokenizer_dir), str(tmp_path / "b"),
                   PrepareOptions(max_len=24, min_len=0, vocab_size=70_000))
    meta = merge_datasets([str(tmp_path / "a"), str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "m")
    assert meta["vocab_size"] == len(tokenizer)
    a, m = IndexedDataset(tmp_path / "a"), IndexedDataset(tmp_path / "m")
    assert [s["name"] for s in meta["sources"]] == ["news", "web", "forum"]
    assert meta["sources"][0]["documents"] == 2 * a.metadata["sources"][0]["documents"]
    assert m.dtype == np.uint32  # widest of the inputs
    assert len(m) == 2 * len(a) + len(IndexedDataset(tmp_path / "b"))
    assert m[len(a)].tolist() == a[0].tolist()
    assert m.samples_per_source().tolist() == [2 * n for n in a.samples_per_source().tolist()] + [
        len(IndexedDataset(tmp_path / "b"))]
    # another vocabulary cannot be merged
    for suffix in (".bin", ".idx"):
        shutil.copy(tmp_path / f"b{suffix}", tmp_path / f"other{suffix}")
    other = json.loads((tmp_path / "b.json").read_text())
    (tmp_path / "other.json").write_text(json.dumps({**other, "vocab_size": 32_000}))
    with pytest.raises(ValueError, match="different vocabulary sizes"):
        merge_datasets([str(tmp_path / "a"), str(tmp_path / "other")], tmp_path / "bad")
    assert not (tmp_path / "bad.idx").exists()


def test_cli_prepare_inspect_merge(sources, tiny_tokenizer_dir, tmp_path):
    runner = CliRunner()
    out = str(tmp_path / "cli")
    result = runner.invoke(main, ["pretrain", "prepare", "-i", sources[0], "-i", sources[1], "-t",
                                  str(tiny_tokenizer_dir), "-o", out, "--max-len", "32", "--min-len", "1",
                                  "--no-progress"])
    assert result.exit_code == 0, result.output
    # the summary goes to stderr: totals, then a line per source
    assert result.stdout == "" and result.stderr.startswith("pretrain prepare: ")
    assert f"-> {out}\n" in result.stderr
    assert "news: 5 documents (1 duplicates, 2 bad)" in result.stderr
    # with --progress (the default on a terminal) a bar comes before the summary, also on stderr
    shown = runner.invoke(main, ["pretrain", "prepare", "-i", sources[0], "-t",
                                 str(tiny_tokenizer_dir), "-o", str(tmp_path / "shown"),
                                 "--progress"])
    assert shown.exit_code == 0 and shown.stdout == "", shown.output
    assert "prepare: " in shown.stderr and " tokens" in shown.stderr and "doc" in shown.stderr
    result = runner.invoke(main, ["pretrain", "inspect", out, "--show", "1"])
    assert result.exit_code == 0 and "web:" in result.output and "--- sample 0" in result.output
    result = runner.invoke(main, ["pretrain", "merge", out, out, "-o", str(tmp_path / "twice")])
    assert result.exit_code == 0 and IndexedDataset(tmp_path / "twice").num_sources == 2
    assert result.stderr.startswith("pretrain merge: ")
    # an output whose files would overwrite an input is refused (exit 2), before any work
    corpus_json = tmp_path / "corpus.json"  # JSON lines, named as PREFIX.json would be
    corpus_json.write_text(json.dumps({"text": NEWS[0]}) + "\n", encoding="utf-8")
    clash = runner.invoke(main, ["pretrain", "prepare", "-i", str(corpus_json), "-t",
                                 str(tiny_tokenizer_dir), "-o", str(tmp_path / "corpus")])
    assert clash.exit_code == 2 and "is the input" in clash.output
    assert corpus_json.read_text(encoding="utf-8").startswith('{"text"')
    clash = runner.invoke(main, ["pretrain", "merge", out, "-o", out])
    assert clash.exit_code == 2 and "is the input" in clash.output
    bad_range = runner.invoke(main, ["pretrain", "prepare", "-i", sources[0], "-t",
                                     str(tiny_tokenizer_dir), "-o", out, "--workers", "0"])
    assert bad_range.exit_code == 2 and "x>=1" in bad_range.output
    missing = runner.invoke(main, ["pretrain", "prepare", "-i", str(tmp_path / "nope.jsonl"), "-t",
                                   str(tiny_tokenizer_dir), "-o", out])
    assert missing.exit_code == 1 and "nope.jsonl: input file not found" in missing.output
    bad = runner.invoke(main, ["pretrain", "prepare", "-i", sources[0], "-t", str(tiny_tokenizer_dir),
                               "-o", out, "--max-len", "8", "--min-len", "9"])
    assert bad.exit_code == 1 and "min_len" in bad.output
    for command in ("prepare", "merge", "inspect", "run"):
        assert "Example" in runner.invoke(main, ["pretrain", command, "--help"]).output
