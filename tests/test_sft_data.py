"""SFT data: IEPile/Alpaca reading, prompt fidelity with inference, labels, length limits, packing."""

from __future__ import annotations

import logging

import pytest
from training_helpers import IEPILE_EXAMPLES, write_jsonl

from deepke_llm.prompts import iepile
from deepke_llm.prompts.chat import Prompt, render_prompt
from deepke_llm.training.sft.data import (
    IGNORE_INDEX,
    DataStats,
    SftCollator,
    encode_prompt,
    encode_response,
    pack_examples,
    read_sft_records,
    split_validation,
    tokenize_records,
)


def _prompt_ids(example: dict) -> list[int]:
    return [t for t, lab in zip(example["input_ids"], example["labels"], strict=True)
            if lab == IGNORE_INDEX]


@pytest.mark.parametrize("template", ["oneke", "plain", "auto"])
def test_training_prompt_is_byte_identical_to_the_extraction_prompt(tiny_llama_dir, tiny_tokenizer,
                                                                    iepile_file, template):
    from deepke_llm.backends.hf import HFBackend

    backend = HFBackend(str(tiny_llama_dir), chat_template=template)
    records = read_sft_records(iepile_file)
    examples = tokenize_records(records, tiny_tokenizer, template, max_len=4096)
    for (task, language, schema, text, _), example in zip(IEPILE_EXAMPLES, examples, strict=True):
        extraction_prompt = iepile.build_prompt(task, schema, text, language)
        rendered = render_prompt(extraction_prompt, template, tiny_tokenizer)
        prompt_ids = _prompt_ids(example)
        # the string the collator tokenized is the string the extractor renders
        assert tiny_tokenizer.decode(prompt_ids, skip_special_tokens=True) == rendered
        # and the token ids are the ones the HF backend feeds the model
        assert prompt_ids == backend.encode_prompt(extraction_prompt)
        bos = tiny_tokenizer.bos_token_id
        assert prompt_ids[0] == bos and prompt_ids[1] != bos
    if template == "oneke":
        assert rendered.startswith("[INST] <<SYS>>\n") and rendered.endswith("[/INST]")


def test_template_that_writes_bos_gets_no_second_bos(tiny_tokenizer):
    tiny_tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}user: "
                                    "{{ m['content'] }}\n{% endfor %}assistant:")
    text = render_prompt(Prompt(user="hello"), "tokenizer", tiny_tokenizer)
    ids = encode_prompt(tiny_tokenizer, text)
    assert text.startswith("<s>") and ids.count(tiny_tokenizer.bos_token_id) == 1


def test_labels_cover_the_response_and_eos_only(tiny_tokenizer, iepile_file):
    records = read_sft_records(iepile_file)
    for record, example in zip(records, tokenize_records(records, tiny_tokenizer, "oneke", 4096),
                               strict=True):
        response = [t for t in example["labels"] if t != IGNORE_INDEX]
        assert response == encode_response(tiny_tokenizer, record.output)
        assert response[-1] == tiny_tokenizer.eos_token_id
        assert tiny_tokenizer.decode(response, skip_special_tokens=True) == record.output
        assert example["input_ids"][-len(response):] == response


def test_train_on_inputs_labels_every_token_but_the_first(tiny_tokenizer, iepile_file):
    records = read_sft_records(iepile_file)
    masked = tokenize_records(records, tiny_tokenizer, "plain", 4096)
    full = tokenize_records(records, tiny_tokenizer, "plain", 4096, train_on_inputs=True)
    for m, f in zip(masked, full, strict=True):
        assert f["input_ids"] == m["input_ids"]
        assert f["labels"] == [IGNORE_INDEX] + f["input_ids"][1:]
        assert sum(x != IGNORE_INDEX for x in f["labels"]) > sum(x != IGNORE_INDEX for x in m["labels"])


def test_alpaca_lines_use_the_alpaca_template(tiny_tokenizer, tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Extract (subject,relation,object) triples.", "input": "Edison died in West "
         "Orange.", "output": "(Edison,place of death,West Orange)"},
        {"instruction": "Say hi.", "input": "", "output": "hi"},
    ])
    with_input, no_input = read_sft_records(path)
    assert with_input.prompt == Prompt(user="Extract (subject,relation,object) triples.",
                                       input="Edison died in West Orange.", template="alpaca")
    assert no_input.prompt.input is None
    examples = tokenize_records([with_input, no_input], tiny_tokenizer, "oneke", 4096)
    text = tiny_tokenizer.decode(_prompt_ids(examples[0]), skip_special_tokens=True)
    # the record's own template wins over the run's chat template
    assert text == render_prompt(with_input.prompt, "oneke", tiny_tokenizer)
    assert "### Instruction:\nExtract" in text and text.endswith("### Response:\n")
    text = tiny_tokenizer.decode(_prompt_ids(examples[1]), skip_special_tokens=True)
    assert "### Input:" not in text
    # forcing IEPile reads the same line as an instruction-only prompt
    forced = read_sft_records(path, data_format="iepile")[0]
    assert forced.prompt == Prompt(user="Extract (subject,relation,object) triples.")


def test_over_length_examples_are_dropped_counted_and_logged(tiny_tokenizer, iepile_file, caplog):
    records = read_sft_records(iepile_file)
    examples = tokenize_records(records, tiny_tokenizer, "plain", 4096)
    lengths = [len(e["input_ids"]) for e in examples]
    limit = sorted(lengths)[1]  # keeps the two shortest
    stats = DataStats()
    with caplog.at_level(logging.WARNING, logger="deepke_llm.training.sft.data"):
        kept = tokenize_records(records, tiny_tokenizer, "plain", limit, stats=stats)
    assert len(kept) == stats.examples == 2 and stats.dropped_too_long == 2
    assert stats.longest_dropped == max(lengths)
    assert all(len(e["input_ids"]) <= limit for e in kept)
    assert f"dropped 2 of 4 examples longer than max_len {limit}" in caplog.text


@pytest.mark.parametrize(("line", "message"), [
    ("not json", "train.jsonl:2: not valid JSON"),
    ('{"instruction": "x"}', "train.jsonl:2: field 'output' is missing"),
    ('{"instruction": 3, "output": "y"}', "train.jsonl:2: field 'instruction' must be a string"),
])
def test_bad_lines_name_the_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "train.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_sft_records(path)


def test_packing_keeps_every_example_within_max_len(tiny_tokenizer, iepile_file):
    examples = tokenize_records(read_sft_records(iepile_file), tiny_tokenizer, "plain", 4096)
    max_len = max(len(e["input_ids"]) for e in examples) + 60
    rows = pack_examples(examples, max_len)
    assert len(rows) < len(examples)
    assert all(len(r["input_ids"]) <= max_len for r in rows)
    assert sorted(t for r in rows for t in r["input_ids"]) == sorted(
        t for e in examples for t in e["input_ids"])
    for row in rows:  # position ids restart at every example start (BOS)
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
        assert [row["input_ids"][i] for i in starts] == [tiny_tokenizer.bos_token_id] * len(starts)
        assert all(row["labels"][i] == IGNORE_INDEX for i in starts)
    batch = SftCollator(pad_token_id=0)(rows)
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape


def test_collator_pads_right_and_masks_padding():
    batch = SftCollator(pad_token_id=0, pad_to_multiple_of=4)([
        {"input_ids": [1, 5, 6], "labels": [-100, -100, 6]},
        {"input_ids": [1, 7], "labels": [-100, 7]},
    ])
    assert batch["input_ids"].tolist() == [[1, 5, 6, 0], [1, 7, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 6, -100], [-100, 7, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]


def test_validation_split_is_seeded_and_sized(iepile_file):
    records = read_sft_records(iepile_file)
    train, val = split_validation(records, 0.25, seed=1)
    assert len(val) == 1 and len(train) == 3 and val[0] not in train
    assert split_validation(records, 0.25, seed=1) == (train, val)
    assert len(split_validation(records, 2, seed=1)[1]) == 2
    with pytest.raises(ValueError, match="leaves no training data"):
        split_validation(records, 4, seed=1)
