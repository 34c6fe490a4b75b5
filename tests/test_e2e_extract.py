"""The whole user path on a real (tiny) model: gold records -> `instruct` -> `train sft` ->
`extract --model` -> records with the right types and offsets.

Full fine-tuning memorises the handful of prompts in ~80 steps; LoRA on a randomly initialised
model needs many more (LoRA reproduction is covered in test_sft_*)."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from deepke_llm.cli import main
from deepke_llm.records import Document, Entity, Relation

pytestmark = pytest.mark.slow

NER_DOCS = [
    Document("n1", "Alice Brown flew to Paris.", "en",
             entities=(Entity("person", "Alice Brown", 0, 11), Entity("location", "Paris", 20, 25))),
    Document("n2", "Acme hired Bob in Rome.", "en",
             entities=(Entity("organization", "Acme", 0, 4), Entity("person", "Bob", 11, 14),
                       Entity("location", "Rome", 18, 22))),
    Document("n3", "Rome is far from Paris.", "en",
             entities=(Entity("location", "Rome", 0, 4), Entity("location", "Paris", 17, 22))),
]
RE_DOCS = [
    Document("r1", "Carol works for Initech.", "en",
             relations=(Relation("work for", Entity("person", "Carol", 0, 5),
                                 Entity("organization", "Initech", 16, 23)),)),
]


def run(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_train_then_extract_reproduces_records_with_offsets(tmp_path, tiny_llama_dir):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(d.to_json() + "\n" for d in NER_DOCS + RE_DOCS), encoding="utf-8")
    ner_train, re_train = tmp_path / "ner.jsonl", tmp_path / "re.jsonl"
    run("instruct", "--schema", "conll04", "--task", "ner", "--input", str(docs), "--output", str(ner_train))
    run("instruct", "--schema", "conll04", "--task", "re", "--input", str(docs), "--output", str(re_train))
    train = tmp_path / "train.jsonl"
    train.write_text(ner_train.read_text() + re_train.read_text(), encoding="utf-8")

    model = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, model)
    tuned = tmp_path / "tuned"
    run("train", "sft", "--model", str(model), "--train-file", str(train), "--output-dir", str(tuned),
        "--method", "full", "--learning-rate", "3e-3", "--max-steps", "80", "--batch-size", "8",
        "--warmup", "0", "--lr-scheduler", "constant", "--save-steps", "0", "--logging-steps", "20",
        "--max-len", "512", "--seed", "0")

    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in NER_DOCS),
                      encoding="utf-8")
    ner_out = tmp_path / "ner.pred.jsonl"
    run("extract", "--task", "ner", "--schema", "conll04", "--model", str(tuned),
        "--input", str(inputs), "--output", str(ner_out), "--max-new-tokens", "48", "--no-progress")
    predicted = {d["id"]: Document.from_dict(d) for d in map(json.loads, ner_out.read_text().splitlines())}
    for gold in NER_DOCS:
        got = predicted[gold.id]
        assert got.errors == (), got.raw_output
        assert set(got.entities) == set(gold.entities), (got.raw_output, got.entities)
        assert all(got.text[e.start:e.end] == e.text for e in got.entities)

    result = run("extract", "--task", "re", "--schema", "conll04", "--model", str(tuned),
                 "--max-new-tokens", "48", "--no-progress", RE_DOCS[0].text)
    (line,) = [json.loads(x) for x in result.stdout.splitlines()]
    relations = Document.from_dict(line).relations
    assert relations == RE_DOCS[0].relations, line["raw_output"]
