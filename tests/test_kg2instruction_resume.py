"""KG2Instruction long runs: interrupt + --resume gives the uninterrupted output and stats,
outputs appear only when complete, failed documents add nothing, progress on request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from kg2instruction_helpers import DATA

from deepke_llm.commands.kg2instruction import main
from kg2instruction.build import build
from kg2instruction.pipeline import BuildConfig, DocumentPipeline

EN = DATA / "en"
KB = [EN / "entities.jsonl", EN / "triples.tsv", EN / "relations.json"]


def corpus_of(tmp_path: Path, copies: int = 3) -> Path:
    corpus = tmp_path / "corpus.jsonl"
    lines = (EN / "corpus.jsonl").read_text().splitlines()
    with corpus.open("w") as handle:
        for copy in range(copies):
            for line in lines:
                doc = json.loads(line)
                handle.write(json.dumps({**doc, "id": f"{doc['id']}-{copy}"}) + "\n")
    return corpus


def comparable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("timing", "config",
                                                         "resumed_documents")}


def interrupt_at(monkeypatch, doc_id: str) -> None:
    process = DocumentPipeline.process

    def process_until(self, record, stats):
        if record["id"] == doc_id:
            raise KeyboardInterrupt
        return process(self, record, stats)

    monkeypatch.setattr(DocumentPipeline, "process", process_until)


@pytest.mark.parametrize("keep_checkpoint", [True, False])
def test_interrupted_build_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch,
                                                               keep_checkpoint):
    corpus = corpus_of(tmp_path)
    config = BuildConfig(chunk_size=4)
    full = build(*KB, corpus, tmp_path / "full.jsonl", config=config)
    out = tmp_path / "out.jsonl"
    with monkeypatch.context() as patch:
        interrupt_at(patch, "spouse-1")  # record 14 of 30: three chunks of 4 are done
        with pytest.raises(KeyboardInterrupt):
            build(*KB, corpus, out, config=config, stats_path=tmp_path / "stats.json")
    partial = Path(f"{out}.partial")
    assert not out.exists() and not (tmp_path / "stats.json").exists()
    assert len(partial.read_text().splitlines()) == 12
    checkpoint = Path(f"{out}.partial.stats")
    assert json.loads(checkpoint.read_text())["stats"]["documents"] == 12
    if not keep_checkpoint:  # without it every record is processed again, none rewritten
        checkpoint.unlink()
    resumed = build(*KB, corpus, out, config=config, resume=True)
    assert out.read_bytes() == (tmp_path / "full.jsonl").read_bytes()
    assert not partial.exists() and not checkpoint.exists()
    assert comparable(resumed) == comparable(full) and resumed["resumed_documents"] == 12
    # the checkpoint covers copy 0 (11 sentences) and two one-sentence documents
    assert resumed["timing"]["sentences_processed"] == full["sentences"] - (
        13 if keep_checkpoint else 0)


def test_a_fresh_run_ignores_a_stale_partial_output(tmp_path):
    corpus = corpus_of(tmp_path, copies=1)
    out = tmp_path / "out.jsonl"
    Path(f"{out}.partial").write_text('{"id": "stale"}\n')
    Path(f"{out}.partial.stats").write_text('{"line": 99, "stats": {}, "failed": []}\n')
    report = build(*KB, corpus, out)
    assert report["documents"] == 10 and "stale" not in out.read_text()


def test_a_document_failing_halfway_adds_no_stats(tmp_path, monkeypatch):
    import kg2instruction.pipeline as pipeline

    disambiguate = pipeline.disambiguate

    def fails_on_amman(kb, text, *args, **kwargs):
        if text.startswith("Amman"):
            raise ValueError("boom")
        return disambiguate(kb, text, *args, **kwargs)

    monkeypatch.setattr(pipeline, "disambiguate", fails_on_amman)
    report = build(*KB, EN / "corpus.jsonl", tmp_path / "o.jsonl")
    # the "country" document failed after its sentences and mentions were counted
    assert report["documents"] == 9 and report["sentences"] == 10 and report["mentions"] == 18
    assert report["input_errors"]["counts"] == {"document_failed": 1}
    assert "document 'country' failed (ValueError: boom)" in report["input_errors"]["messages"][0]


def test_an_undecodable_corpus_line_is_reported_by_its_shard_only(tmp_path):
    corpus = tmp_path / "c.jsonl"
    lines = (EN / "corpus.jsonl").read_bytes().splitlines()
    corpus.write_bytes(b"\n".join([lines[0], b'{"id": "bad", "text": "caf\xe9"}', *lines[1:]])
                       + b"\n")
    counts = [build(*KB, corpus, tmp_path / f"s{i}.jsonl", config=BuildConfig(shard=(i, 2)))
              ["input_errors"]["counts"] for i in range(2)]
    assert counts == [{}, {"broken_line": 1}]  # line 2 is record 1: shard 1's


def test_cli_progress_and_resume_flags(tmp_path):
    args = ["build", "--kb-entities", str(KB[0]), "--kb-triples", str(KB[1]),
            "--relations", str(KB[2]), "--corpus", str(EN / "corpus.jsonl"),
            "--output", str(tmp_path / "o.jsonl")]
    quiet = CliRunner().invoke(main, args)  # stderr is no terminal: no progress bar
    assert quiet.exit_code == 0 and "doc/s" not in quiet.output and "doc]" not in quiet.output
    shown = CliRunner().invoke(main, [*args, "--progress"])
    assert shown.exit_code == 0 and "kg2instruction: " in shown.output and "10doc" in shown.output
    again = CliRunner().invoke(main, [*args, "--resume"])
    assert again.exit_code == 0 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 10
