"""deepke_llm.io: the one home for atomic writes, output locks, resumable JSONL and error sinks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from deepke_llm.io import (
    LineError,
    OutputBusy,
    Problems,
    ResumableWriter,
    SameFileError,
    atomic_path,
    count_lines,
    json_line,
    output_lock,
    print_errors,
    read_jsonl,
    refuse_same_file,
    write_jsonl_atomic,
)

HOLD = """
import sys, time
from deepke_llm.io import output_lock
output_lock(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def test_lock_nests_in_one_process_and_leaves_no_file(tmp_path):
    out = tmp_path / "out.jsonl"
    first = output_lock(out)
    second = output_lock(out)  # the writer inside a command that already holds it
    assert first is second and (tmp_path / "out.jsonl.lock").exists()
    second.release()
    assert (tmp_path / "out.jsonl.lock").exists()
    first.release()
    assert not (tmp_path / "out.jsonl.lock").exists()


def test_another_process_is_refused_until_the_holder_dies(tmp_path):
    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusy, match="another run is writing"):
            output_lock(out)
        holder.send_signal(signal.SIGKILL)  # a killed run leaves its lock file, not its lock
        holder.wait(timeout=30)
        assert (tmp_path / "out.jsonl.lock").exists()
        lock = output_lock(out)
        lock.release()
        assert not (tmp_path / "out.jsonl.lock").exists()
    finally:
        holder.kill()


def test_resumable_writer_finishes_atomically_and_resumes_without_duplicates(tmp_path):
    out = tmp_path / "out.jsonl"
    writer = ResumableWriter(out)
    writer.write({"id": "a", "text": "x"})
    writer.write({"id": "b", "text": "caf\ud800"})  # cannot be UTF-8: replaced, never a crash
    writer.close()
    assert not out.exists()
    partial = tmp_path / "out.jsonl.partial"
    with open(partial, "a", encoding="utf-8") as handle:
        handle.write('{"id": "a", "text": "x"}\n{"id": "c", "te')  # a duplicate and a torn line
    with ResumableWriter(out, resume=True) as again:
        assert again.done_ids == {"a", "b"}
        again.write({"id": "c", "text": "y"})
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a", "b", "c"]
    assert json.loads(out.read_text().splitlines()[1])["text"] == "caf\ufffd"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_atomic_path_never_leaves_a_half_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "report.json"]
    assert write_jsonl_atomic(target, [{"a": 1}, {"b": "\ud800"}]) == 2
    assert target.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "\ufffd"}\n'


def test_same_file_is_found_through_links_and_dots(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("x\n")
    (tmp_path / "link").symlink_to(source)
    os.link(source, tmp_path / "hard")
    for output in (source, tmp_path / "link", tmp_path / "hard", tmp_path / "." / "in.jsonl"):
        with pytest.raises(SameFileError):
            refuse_same_file(output, [None, source])
    refuse_same_file(tmp_path / "out.jsonl", [source])


def test_count_lines_skips_blank_lines_and_counts_a_last_line_without_newline(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"a\n\n  \nb\nc")
    assert count_lines(path) == 3


def test_problems_count_everything_and_show_the_first(capsys):
    problems = Problems(print_errors(show=2), keep=2)
    for i in range(5):
        problems(f"line {i}: bad")
    assert len(problems) == 5 and problems.messages == ["line 0: bad", "line 1: bad"]
    assert capsys.readouterr().err.splitlines() == [
        "error: line 0: bad", "error: line 1: bad",
        "(more than 2 problems: the rest are counted, not shown)"]


def test_one_sink_counts_by_kind_keeps_examples_and_merges():
    seen: list[str] = []
    problems = Problems(seen.append, keep=3, per_kind=1)
    problems.add("broken_line", "f:1: not valid JSON")
    problems.add("duplicate_id", "f:2: duplicate id 'a'")
    problems.add("broken_line", "f:3: not valid JSON")
    problems.append("f:4: something")  # where a list of messages was expected
    assert seen == ["f:1: not valid JSON", "f:2: duplicate id 'a'", "f:3: not valid JSON",
                    "f:4: something"]
    assert problems.count == 4 and problems.counts == {"broken_line": 2, "duplicate_id": 1,
                                                        "error": 1}
    assert problems.examples["broken_line"] == ["f:1: not valid JSON"]
    other = Problems()
    other.add("broken_line", "g:1: bad", count=3)
    problems.merge(other)
    assert problems.to_dict() == {
        "counts": {"broken_line": 5, "duplicate_id": 1, "error": 1},
        "messages": ["f:1: not valid JSON", "f:2: duplicate id 'a'", "f:3: not valid JSON"]}
    assert len(seen) == 4  # merging calls no callback again


def test_read_jsonl_reports_every_bad_line_as_file_line_reason(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{"b": \n\xff\xfe\n'
                     + b'{"n": ' + b"9" * 5000 + b'}\n{"s": "\\ud800"}\n'
                     + b"[" * 100000 + b"\n[2]\n")
    errors: list[str] = []
    assert list(read_jsonl(path, errors.append)) == [(1, {"a": 1}), (8, [2])]
    assert [e.split(": ", 1)[1].split(" (")[0] for e in errors] == [
        "not valid JSON", "not valid UTF-8; re-encode the file as UTF-8", "not valid JSON",
        "a string holds a lone surrogate escape", "JSON nested too deeply to read"]
    assert [e.split(":")[1] for e in errors] == ["3", "4", "5", "6", "7"]
    with pytest.raises(LineError, match=r"in.jsonl:3: not valid JSON"):
        list(read_jsonl(path))


def test_read_jsonl_reads_compressed_files(tmp_path):
    import gzip

    path = tmp_path / "in.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write('{"id": "a"}\n\n{"id": "b"}\n')
    assert list(read_jsonl(path)) == [(1, {"id": "a"}), (3, {"id": "b"})]


def test_json_line_keeps_offsets_when_it_replaces_surrogates():
    line = json_line({"text": "a\ud800b", "start": 2})
    assert json.loads(line) == {"text": "a\ufffdb", "start": 2}


def test_a_document_streams_to_the_same_line_as_its_dict():
    from deepke_llm.records import Document, Entity, Relation

    doc = Document("a", "Alice met Bob", "en",
                   entities=tuple(Entity("person", "Alice", 0, 5) for _ in range(3)),
                   relations=(Relation("knows", Entity("person", "Alice", 0, 5),
                                       Entity("person", "Bob", 10, 13)),),
                   raw_output=("{}",), errors=("e",), meta={"source": "x"})
    assert json_line(doc) == json.dumps(doc.to_dict(), ensure_ascii=False)
    assert json_line(Document("b", "x")) == json.dumps(Document("b", "x").to_dict())
