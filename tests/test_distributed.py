"""Ray jobs (deepke_llm.distributed): sharded extraction equals the single-process `extract`
record for record, exactly once under a killed actor, resumed jobs skip finished shards;
KG2Instruction on Ray equals the single-process build. One local cluster for the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_server import rule_answer, rule_server
from kg2instruction_helpers import DATA

from deepke_llm.batch import ExtractConfig, run_extract
from deepke_llm.commands.options import MODEL_KEYS, backend_from_options
from deepke_llm.distributed import MANIFEST, extract_shards
from deepke_llm.schema import load_schema

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster() -> str:
    """One local Ray cluster (2 CPUs) for the module; its GCS address for subprocesses."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def model_options(**given) -> dict:
    options = dict.fromkeys(MODEL_KEYS)
    options.update(engine="auto", api_key_env="OPENAI_API_KEY", endpoint="chat",
                   chat_template="auto", dtype="auto", load_in_4bit=False, load_in_8bit=False,
                   trust_remote_code=False)
    options.update(given)
    return options


def write_shards(folder: Path, sizes: list[int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s, size in enumerate(sizes):
        lines = [json.dumps({"id": f"s{s}-{i}", "text": f"Alice met Bob {i} in Rome, said Carol."})
                 for i in range(size)]
        path = folder / f"shard{s}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def single_process(config: ExtractConfig, options: dict, source: Path, target: Path) -> bytes:
    """What `deepke-llm extract --input SOURCE --output TARGET` writes."""
    import dataclasses

    backend = backend_from_options(options, config.batch_size)
    run_extract(dataclasses.replace(config, input=str(source), output=str(target),
                                    progress=False), backend, on_error=lambda message: None)
    return target.read_bytes()


def ids_of(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def ner_config(**given) -> ExtractConfig:
    return ExtractConfig(task="ner", schema=load_schema("conll03"), **given)


def test_shards_equal_single_process_runs_and_resume_skips_finished(cluster, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = write_shards(tmp_path / "in", [5, 4, 3])
    with shards[1].open("a") as handle:  # a bad line: reported, the rest written
        handle.write("{not json\n")
    rows = [{"id": "p0", "text": "Dora saw Eve."}, {"id": None, "text": "Frank left Paris."}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in" / "table.parquet")
    (tmp_path / "in" / "table.jsonl").write_text(  # the same rows as JSONL: what Parquet must equal
        json.dumps(rows[0]) + "\n" + json.dumps({"text": rows[1]["text"]}) + "\n")
    config = ner_config(batch_size=2)
    out = tmp_path / "out"
    errors: list[str] = []
    with rule_server() as (url, server):
        options = model_options(base_url=url, api_model="rule")
        with pytest.raises(ValueError, match="would both write"):
            extract_shards(config, options, str(tmp_path / "in"), out)
        (tmp_path / "in" / "table.jsonl").rename(tmp_path / "table.jsonl")
        summary = extract_shards(config, options, str(tmp_path / "in"), out, actors=2,
                                 on_error=errors.append)
        calls = len(server.requests)
        for shard in shards:
            expected = single_process(config, options, shard, tmp_path / f"single-{shard.name}")
            assert (out / shard.name).read_bytes() == expected
        expected = single_process(config, options, tmp_path / "table.jsonl",
                                  tmp_path / "single-table.jsonl")
        assert (out / "table.jsonl").read_bytes() == expected
        assert ids_of(out / "table.jsonl") == ["p0", "table-2"]
        assert summary.documents == 14 and summary.shards_done == 4 and summary.finished
        assert summary.input_errors == 1 and errors == [
            f"{shards[1]}:5: not valid JSON (Expecting property name enclosed in double quotes "
            "at column 2)"]
        manifest = json.loads((out / MANIFEST).read_text())
        entry = manifest["shards"][str(shards[1])]
        assert entry["finished"] and entry["input_lines"] == 5 and entry["output_lines"] == 4
        assert manifest["shards"][str(tmp_path / "in" / "table.parquet")]["input_lines"] == 2
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [MANIFEST, "table.jsonl", *(s.name for s in shards)])

        # a resumed job does nothing more; a lost output shard is redone, and only it
        calls_after_single = len(server.requests)
        again = extract_shards(config, options, str(tmp_path / "in"), out, resume=True)
        assert len(server.requests) == calls_after_single and again.shards_skipped == 4
        (out / shards[0].name).unlink()
        again = extract_shards(config, options, str(tmp_path / "in"), out, resume=True)
        assert len(server.requests) == calls_after_single + 5
        assert (again.shards_done, again.shards_skipped) == (1, 3)
        assert (out / shards[0].name).read_bytes() == (tmp_path / "single-shard0.jsonl").read_bytes()
    assert calls == 14  # one prompt per document (conll03 fits one schema chunk)


def slow(delay: float):
    def answer(user: str) -> str:
        time.sleep(delay)
        return rule_answer(user)
    return answer


def shard_worker_pid() -> int | None:
    """The process that runs `ShardWorker.run` now (Ray titles a busy actor `ray::Class.method`)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ShardWorker.run" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except OSError:  # a process that ended meanwhile
            continue
    return None


def run_killing_the_actor(config, options, source: Path, out: Path, server, max_retries: int):
    """Start a job, SIGKILL its actor while it holds the shard; the job's summary."""
    result: dict = {}
    job = threading.Thread(target=lambda: result.setdefault("summary", extract_shards(
        config, options, str(source), out, max_retries=max_retries)))
    job.start()
    deadline = time.monotonic() + 60
    while len(server.requests) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = shard_worker_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # mid-shard: the documents so far are only in the .partial file
    assert not (out / source.name).exists() and (out / f"{source.name}.partial").exists()
    job.join(120)
    return result["summary"]


@pytest.mark.parametrize("max_retries", [2, 0])
def test_an_actor_killed_mid_shard_leaves_every_id_exactly_once(cluster, tmp_path, max_retries):
    (source,) = write_shards(tmp_path / "in", [12])
    out = tmp_path / "out"
    config = ner_config(batch_size=1)
    with rule_server(answer=slow(0.15)) as (url, server):
        options = model_options(base_url=url, api_model="rule")
        summary = run_killing_the_actor(config, options, source, out, server,
                                                max_retries)
        manifest = json.loads((out / MANIFEST).read_text())["shards"][str(source)]
        if max_retries:  # Ray restarted the actor and retried the shard, which resumed
            assert summary.shards_done == 1 and manifest["finished"]
        else:  # no retry: the shard stays unfinished, the job run again with resume ends it
            assert summary.shards_unfinished == [str(source)] and not manifest["finished"]
            assert not (out / source.name).exists()
            again = extract_shards(config, options, str(source), out, resume=True)
            assert again.shards_done == 1 and again.skipped >= 3
    assert ids_of(out / source.name) == [f"s0-{i}" for i in range(12)]
    assert not (out / f"{source.name}.partial").exists()
    # documents written before the kill were not asked again (at most the one in flight)
    assert 12 <= len(server.requests) <= 13


def test_tiny_local_model_on_an_actor_equals_single_process(cluster, tmp_path, tiny_llama_dir):
    (source,) = write_shards(tmp_path / "in", [3])
    config = ner_config(batch_size=4, max_new_tokens=12)
    options = model_options(model=str(tiny_llama_dir), engine="hf", threads=1)
    summary = extract_shards(config, options, str(source), tmp_path / "out")
    assert summary.shards_done == 1 and summary.documents == 3
    expected = single_process(config, options, source, tmp_path / "single.jsonl")
    assert (tmp_path / "out" / source.name).read_bytes() == expected
    assert all(json.loads(line)["raw_output"] for line in expected.decode().splitlines())


def test_an_engine_that_does_not_load_stops_the_job_with_its_reason(cluster, tmp_path):
    from deepke_llm.distributed import ShardError

    write_shards(tmp_path / "in", [1, 1])
    options = model_options(model=str(tmp_path / "missing-model"), engine="hf")
    with pytest.raises(ShardError) as caught:
        extract_shards(ner_config(), options, str(tmp_path / "in"), tmp_path / "out",
                       max_retries=0)
    assert str(caught.value).startswith("the engine did not load in a Ray actor: ValueError: "
                                        f"model directory {tmp_path / 'missing-model'} does not "
                                        "exist")
    assert "\n" not in str(caught.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MANIFEST]


def test_cli_extract_ray_in_a_subprocess(cluster, tmp_path):
    write_shards(tmp_path / "in", [2, 3])
    out = tmp_path / "out"
    with rule_server() as (url, server):
        command = [sys.executable, "-m", "deepke_llm.cli", "extract", "--task", "ner",
                   "--schema", "conll03", "--base-url", url, "--api-model", "rule", "--ray",
                   "--ray-address", cluster, "--ray-actors", "2", "--input",
                   str(tmp_path / "in" / "*.jsonl"), "--output", str(out), "--no-progress"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "shards: 2 done, 0 skipped" in done.stderr and "documents: 5" in done.stderr
        assert len(server.requests) == 5
    assert ids_of(out / "shard0.jsonl") == ["s0-0", "s0-1"]
    assert ids_of(out / "shard1.jsonl") == ["s1-0", "s1-1", "s1-2"]
    assert all(json.loads(line)["entities"] for line in (out / "shard1.jsonl").open())


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    from deepke_llm.cli import main

    write_shards(tmp_path / "in", [1])
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(main, ["extract", "--task", "ner", "--schema", "conll03",
                                       "--base-url", "http://127.0.0.1:9/v1", "--ray",
                                       "--input", str(tmp_path / "in"), "--output",
                                       str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: this needs the 'ray' package, which the light install leaves out: "
        "pip install 'deepke-llm[ray]'"]


def test_kg2instruction_on_ray_equals_the_single_process_build(cluster, tmp_path):
    from deepke_llm.commands.kg2instruction import main
    from kg2instruction.build import build
    from kg2instruction.pipeline import BuildConfig

    en = DATA / "en"
    kb = [en / "entities.jsonl", en / "triples.tsv", en / "relations.json"]
    corpus = tmp_path / "corpus.jsonl"
    lines = (en / "corpus.jsonl").read_text().splitlines()
    corpus.write_text("".join(json.dumps({**json.loads(line), "id": f"{n}-{copy}"}) + "\n"
                              for copy in range(20) for n, line in enumerate(lines)))
    single = build(*kb, corpus, tmp_path / "single.jsonl", config=BuildConfig(chunk_size=4),
                   stats_path=tmp_path / "single.stats.json")
    result = CliRunner().invoke(main, [
        "build", "--kb-entities", str(kb[0]), "--kb-triples", str(kb[1]), "--relations",
        str(kb[2]), "--corpus", str(corpus), "--output", str(tmp_path / "ray.jsonl"),
        "--stats", str(tmp_path / "ray.stats.json"), "--ray", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "single.jsonl").read_bytes()
    distributed = json.loads((tmp_path / "ray.stats.json").read_text())
    for key in ("timing", "config"):
        single.pop(key), distributed.pop(key)
    assert distributed == json.loads(json.dumps(single)) and single["triples"] > 0
