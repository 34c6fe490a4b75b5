"""``deepke-llm evaluate`` end to end against a real local OpenAI-compatible server: result files
exist, their numbers are what re-scoring the saved predictions gives, runs resume, and schema
order shuffles report mean ± std."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO
from fake_server import rule_server

from deepke_llm.cli import main

STEM = f"rule-{datetime.date.today().isoformat()}"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def evaluate(url, tmp_path, data_dir, *extra):
    return run("evaluate", "conll03", "--base-url", url, "--api-model", "rule",
               "--output-dir", str(tmp_path), "--data-dir", str(data_dir), "--no-progress", *extra)


def strict_counts_by_hand(gold_path, pred_path):
    """tp/fp/fn of strict NER straight from the JSON lines (no deepke_llm code involved)."""
    def spans(path):
        out = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)
            out[doc["id"]] = {(e["type"], e["start"], e["end"]) if e["start"] is not None
                              else ("ungrounded", e["text"]) for e in doc["entities"]}
        return out

    gold, pred = spans(gold_path), spans(pred_path)
    tp = sum(len(gold[i] & pred.get(i, set())) for i in gold)
    return tp, sum(len(p) for p in pred.values()) - tp, sum(len(g) for g in gold.values()) - tp


def test_evaluate_conll03_limit_50_writes_consistent_results(tmp_path, data_dir):
    with rule_server() as (url, server):
        result = evaluate(url, tmp_path, data_dir, "--limit", "50", "--bootstrap", "300")
    assert result.exit_code == 0, result.output
    assert len(server.requests) == 50  # 4 conll03 types fit in one prompt per sentence
    out = tmp_path / "conll03"
    paths = {kind: out / f"{STEM}.{kind}" for kind in ("json", "md", "png", "gold.jsonl",
                                                         "pred.jsonl")}
    assert all(p.is_file() for p in paths.values()), sorted(p.name for p in out.iterdir())
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    summary = json.loads(paths["json"].read_text())
    assert (summary["benchmark"], summary["split"], summary["documents"]) == ("conll03", "test", 50)

    # the saved files re-score to exactly the reported numbers
    rescored = run("score", "--task", "ner", "--gold", str(paths["gold.jsonl"]), "--pred",
                   str(paths["pred.jsonl"]), "--json", "--schema", "conll03")
    assert json.loads(rescored.stdout) == summary["scores"]
    strict = summary["scores"]["ner"]["strict"]
    assert (strict["tp"], strict["fp"], strict["fn"]) == strict_counts_by_hand(
        paths["gold.jsonl"], paths["pred.jsonl"])
    assert strict["tp"] + strict["fn"] == 146  # gold entities in the first 50 test sentences
    assert strict["fp"] > 0 and strict["tp"] > 0  # the rule model calls every capitalised word a person

    ci = summary["confidence_intervals"]["strict"]
    assert ci["samples"] == 300 and ci["low"] <= strict["f1"] <= ci["high"]

    report = paths["md"].read_text()
    assert (f"| strict | {strict['precision'] * 100:.2f} | {strict['recall'] * 100:.2f} | "
            f"{strict['f1'] * 100:.2f} |") in report
    assert "## Per type (strict)" in report
    errors = strict["fp"] + strict["fn"]
    assert f"## Sample errors (strict, 20 of {errors})" in report
    sample_rows = re.findall(r"^\| conll03-test-\d+ \| (missed|spurious) \|", report, re.M)
    assert len(sample_rows) == 20 and {"missed", "spurious"} == set(sample_rows)


def test_resume_continues_an_interrupted_run(tmp_path, data_dir):
    with rule_server() as (url, server):
        assert evaluate(url, tmp_path, data_dir, "--limit", "5", "--bootstrap", "0").exit_code == 0
        first = json.loads((tmp_path / "conll03" / f"{STEM}.json").read_text())["scores"]
        pred = tmp_path / "conll03" / f"{STEM}.pred.jsonl"
        # as if the run had stopped after two documents
        pred.with_name(pred.name + ".partial").write_text(
            "".join(pred.read_text().splitlines(True)[:2]))
        pred.unlink()
        server.requests.clear()
        again = evaluate(url, tmp_path, data_dir, "--limit", "5", "--bootstrap", "0", "--resume")
        assert again.exit_code == 0, again.output
        assert len(server.requests) == 3
    assert len(pred.read_text().splitlines()) == 5
    assert json.loads((tmp_path / "conll03" / f"{STEM}.json").read_text())["scores"] == first


def test_shuffled_schema_orders_report_mean_and_std(tmp_path, data_dir):
    with rule_server() as (url, server):
        result = evaluate(url, tmp_path, data_dir, "--limit", "20", "--bootstrap", "0",
                          "--shuffle-runs", "3")
    assert result.exit_code == 0, result.output
    # the rule model answers the first schema item, so orders change what it predicts
    first_items = {json.loads(r["messages"][-1]["content"])["schema"][0] for r in server.requests}
    assert len(first_items) > 1
    summary = json.loads((tmp_path / "conll03" / f"{STEM}.json").read_text())
    variance = summary["prompt_variance"]
    assert variance["runs"] == 3 and variance["seeds"] == [0, 1, 2]
    f1 = variance["scores"]["strict"]["f1"]
    assert len(f1["values"]) == 3
    assert f1["mean"] == pytest.approx(sum(f1["values"]) / 3)
    assert f1["values"][0] == summary["scores"]["ner"]["strict"]["f1"]
    for seed in range(3):
        assert (tmp_path / "conll03" / f"{STEM}.shuffle{seed}.pred.jsonl").is_file()
    report = (tmp_path / "conll03" / f"{STEM}.md").read_text()
    assert f"{f1['mean'] * 100:.2f} ± {f1['std'] * 100:.2f}" in report


def test_event_benchmark_from_a_definition_file(tmp_path):
    """An EE benchmark (DuEE format, a file of our own) reports all four levels in every mode."""
    data = tmp_path / "duee_sample.json"
    data.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in [
        {"id": "d1", "text": "Oracle laid off Smith in March.", "event_list": [
            {"event_type": "组织关系-裁员", "trigger": "laid off", "trigger_start_index": 7,
             "arguments": [{"role": "裁员方", "argument": "Oracle", "argument_start_index": 0}]}]},
        {"id": "d2", "text": "Acme bought Beta for cash.", "event_list": [
            {"event_type": "财经/交易-出售/收购", "trigger": "bought", "trigger_start_index": 5,
             "arguments": [{"role": "收购方", "argument": "Acme", "argument_start_index": 0},
                           {"role": "交易物", "argument": "Beta", "argument_start_index": 12}]}]},
    ]) + "\n", encoding="utf-8")
    definition = tmp_path / "duee_en.json"
    definition.write_text(json.dumps({"name": "duee_en", "task": "ee", "format": "duee",
                                      "schema": "duee", "language": "en",
                                      "splits": {"test": str(data)}}))
    with rule_server() as (url, server):
        result = run("evaluate", str(definition), "--base-url", url, "--api-model", "rule",
                     "--output-dir", str(tmp_path / "out"), "--no-progress", "--bootstrap", "50")
    assert result.exit_code == 0, result.output
    from deepke_llm.prompts.styles import chunk_schema
    from deepke_llm.schema import load_schema
    from deepke_llm.tasks import get_task

    assert len(server.requests) == 2 * len(chunk_schema(get_task("ee"), load_schema("duee")))
    out = tmp_path / "out" / "duee_en"
    summary = json.loads((out / f"{STEM}.json").read_text())
    levels = ["trigger_identification", "trigger_classification", "argument_identification",
              "argument_classification"]
    for mode in ("strict", "boundary", "string"):
        assert list(summary["scores"]["ee"][mode]) == levels
        assert list(summary["confidence_intervals"][mode]) == levels
    assert summary["scores"]["ee"]["strict"]["trigger_classification"]["fn"] == 2
    rescored = run("score", "--task", "ee", "--gold", str(out / f"{STEM}.gold.jsonl"),
                   "--pred", str(out / f"{STEM}.pred.jsonl"), "--json")
    assert json.loads(rescored.stdout) == summary["scores"]
    report = (out / f"{STEM}.md").read_text()
    assert "| strict trigger classification |" in report
    assert "## Per type (strict argument classification)" in report
    assert re.search(r"^\| d\d \| trigger classification \| (missed|spurious) \|", report, re.M)
    assert (out / f"{STEM}.png").is_file()


def _strings(value):
    if isinstance(value, dict):
        yield from (s for v in value.values() for s in _strings(v))
    elif isinstance(value, list):
        yield from (s for v in value for s in _strings(v))
    elif isinstance(value, str):
        yield value


def test_reports_name_no_absolute_path_but_the_data_file_and_its_sha256(tmp_path, data_dir):
    """Reports are committed and compared across machines: data dir, output dir, a definition
    file and its absolute split path, and reader problems naming the file appear without this
    machine's directories; the data is identified by benchmark, split, file and sha256."""
    with rule_server() as (url, _):
        assert evaluate(url, tmp_path, data_dir, "--limit", "5", "--bootstrap", "0").exit_code == 0
        testb = data_dir / "conll2003" / "eng.testb"
        own = tmp_path / "own.testb"  # a bad tag makes the reader report a problem naming the file
        own.write_text("".join(testb.read_text().splitlines(True)[:30]) + "Foo NN I-NP X-BAD\n")
        definition = tmp_path / "own03.json"
        definition.write_text(json.dumps({"name": "own03", "task": "ner", "format": "conll03",
                                          "schema": "conll03", "splits": {"test": str(own)}}))
        result = run("evaluate", str(definition), "--base-url", url, "--api-model", "rule",
                     "--output-dir", str(tmp_path), "--no-progress", "--bootstrap", "0")
        assert result.exit_code == 0, result.output
    published = json.loads((tmp_path / "conll03" / f"{STEM}.json").read_text())
    assert published["data"] == {"benchmark": "conll03", "split": "test",
                                 "file": "conll2003/eng.testb",
                                 "sha256": hashlib.sha256(testb.read_bytes()).hexdigest()}
    assert "data_file" not in published
    assert published["settings"]["data_dir"] is None and published["settings"]["output_dir"] is None
    own_summary = json.loads((tmp_path / "own03" / f"{STEM}.json").read_text())
    assert own_summary["data"]["file"] == "own.testb"
    assert own_summary["settings"]["benchmark"] == "own03.json"
    assert own_summary["settings"]["definition"]["splits"] == {"test": "own.testb"}
    (problem,) = [w for w in own_summary["warnings"] if w["kind"] == "dataset_problem"]
    assert problem["examples"][0].startswith("own.testb:31: tag 'X-BAD'")
    for name in ("conll03", "own03"):
        report = json.loads((tmp_path / name / f"{STEM}.json").read_text())
        absolute = [s for s in _strings(report) if s.startswith("/") or str(tmp_path) in s
                    or str(data_dir) in s]
        assert absolute == []
        markdown = (tmp_path / name / f"{STEM}.md").read_text()
        assert str(tmp_path) not in markdown and str(data_dir) not in markdown
    assert (f"documents from `conll2003/eng.testb` (sha256 `{published['data']['sha256'][:12]}…`)"
            in (tmp_path / "conll03" / f"{STEM}.md").read_text())


def test_committed_results_name_no_directory_of_the_machine_that_ran_them():
    found = []
    for path in sorted((REPO / "benchmarks" / "results").rglob("*")):
        if path.suffix == ".json":
            strings = list(_strings(json.loads(path.read_text(encoding="utf-8"))))
        elif path.suffix == ".md":
            strings = re.findall(r"`([^`]*)`|\(([^)]*)\)", path.read_text(encoding="utf-8"))
            strings = [s for pair in strings for s in pair if s]
        else:
            continue
        found += [f"{path.name}: {s}" for s in strings
                  if re.match(r"(/|~/|[A-Za-z]:\\)\S", s) or "../shared" in s]
    assert found == []


def test_few_shot_baseline_shows_train_demonstrations(tmp_path):
    with rule_server() as (url, server):
        result = CliRunner().invoke(main, [
            "evaluate", "conll03", "--base-url", url, "--api-model", "rule", "--limit", "3",
            "--few-shot", "2", "--output-dir", str(tmp_path), "--bootstrap", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    messages = server.requests[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    train_first = json.loads(messages[0]["content"])["input"]
    assert train_first.startswith("EU rejects German call")  # eng.train's first sentence
    (summary,) = [p for p in (tmp_path / "conll03").glob("*.json")]
    assert "rule-2shot" in summary.name


def test_resume_picks_only_this_models_partial_run(tmp_path):
    from deepke_llm.evaluation.runner import _stem

    (tmp_path / "m-3shot-2025-01-02.pred.jsonl.partial").write_text("")
    assert _stem(tmp_path, "m", True) == f"m-{datetime.date.today().isoformat()}"
    (tmp_path / "m-2025-01-01.pred.jsonl.partial").write_text("")
    assert _stem(tmp_path, "m", True) == "m-2025-01-01"


def test_reports_of_unshipped_data_leave_its_text_out(tmp_path, data_dir):
    from deepke_llm.evaluation.definitions import load_benchmark

    spec = load_benchmark("conll03").to_dict()
    spec.update(name="licensed03", data_note="pretend this data is licensed")
    path = tmp_path / "licensed03.json"
    path.write_text(json.dumps(spec))
    with rule_server() as (url, _):
        result = CliRunner().invoke(main, ["evaluate", str(path), "--base-url", url, "--api-model", "r",
                                           "--limit", "5", "--output-dir", str(tmp_path / "out"),
                                           "--bootstrap", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    (report,) = (tmp_path / "out" / "licensed03").glob("*.md")
    text = report.read_text()
    assert "Dataset text is left out" in text and "SOCCER" not in text and "JAPAN" not in text


def test_definition_decides_whether_grounding_trims_punctuation(tmp_path, data_dir, monkeypatch):
    """CoNLL04's gold keeps "Texas." whole: its runs must ground with trimming off, CoNLL-2003's on."""
    import deepke_llm.extractor as extractor

    seen = []

    class Recording(extractor.Extractor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.grounding.trim_punctuation)

    monkeypatch.setattr(extractor, "Extractor", Recording)  # the runner imports it when it runs
    with rule_server() as (url, _):
        for benchmark in ("conll04", "conll03"):
            result = run("evaluate", benchmark, "--base-url", url, "--api-model", "rule",
                         "--output-dir", str(tmp_path), "--data-dir", str(data_dir),
                         "--no-progress", "--limit", "2", "--bootstrap", "0")
            assert result.exit_code == 0, result.output
    assert seen == [False, True]


def test_a_users_run_writes_to_runs_not_to_the_published_results(tmp_path, data_dir,
                                                                   monkeypatch):
    """The README's `deepke-llm evaluate conll04 --limit 15`, run inside a checkout, must leave
    benchmarks/results (from which the README's table is generated) alone."""
    monkeypatch.chdir(tmp_path)
    published = REPO / "benchmarks" / "results"
    before = {p: p.stat().st_mtime_ns for p in published.rglob("*")}
    with rule_server() as (url, _):
        result = run("evaluate", "conll04", "--limit", "15", "--base-url", url, "--api-model",
                     "rule", "--data-dir", str(data_dir), "--no-progress", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "evaluate" / "conll04"
    assert {p.name for p in out.iterdir()} >= {f"{STEM}.json", f"{STEM}.md", f"{STEM}.pred.jsonl"}
    assert f"wrote {Path('runs/evaluate/conll04') / f'{STEM}.json'}" in result.output
    assert not (tmp_path / "benchmarks").exists()
    assert {p: p.stat().st_mtime_ns for p in published.rglob("*")} == before


def test_documents_the_backend_failed_are_not_scored_exit_3_and_resume_finishes(tmp_path,
                                                                                   data_dir):
    failing = {"on": True}

    def fail(user: str) -> int | None:
        # the third test sentence of CoNLL-2003 ("Nadim Ladki") keeps failing while "on"
        return 500 if failing["on"] and "Nadim Ladki" in user else None

    with rule_server(fail=fail) as (url, server):
        first = evaluate(url, tmp_path, data_dir, "--limit", "5", "--bootstrap", "0")
        assert first.exit_code == 3, first.output
        assert "1 of 5 documents failed in the backend" in first.stderr
        assert "nothing was scored" in first.stderr
        assert not (tmp_path / "conll03" / f"{STEM}.json").exists()
        failing["on"] = False
        server.requests.clear()
        again = evaluate(url, tmp_path, data_dir, "--limit", "5", "--bootstrap", "0", "--resume")
        assert again.exit_code == 0, again.output
        assert len(server.requests) == 1  # only the failed document is asked again
    assert len((tmp_path / "conll03" / f"{STEM}.pred.jsonl").read_text().splitlines()) == 5
