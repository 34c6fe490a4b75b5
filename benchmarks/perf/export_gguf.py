"""The default model exported with its adapter merged (``weights export-gguf``) against the base
Q4_K_M GGUF with the adapter applied at run time: documents/s and strict F1 with llama.cpp.

Exports (timed, sizes recorded) into a temporary folder, then extracts the same CoNLL-2003 test
sentences through the real Extractor with each model, one after the other in one process run
(the data, scoring and row layout of ``engines.py``). Variants:

- ``runtime-lora``: the kept Q4_K_M GGUF + the adapter converted to a llama.cpp LoRA GGUF;
- ``merged-q8_0``: adapted tensors merged and written in Q8_0, the rest copied byte for byte;
- ``merged-q4_k_m``: adapted tensors merged, quantised by llama.cpp to Q4_K_M's types.

Results: ``benchmarks/results/perf/export_gguf.{json,md}``. Example::

    python benchmarks/perf/export_gguf.py --docs 300 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

from _results import machine, write_results  # noqa: E402  (benchmarks/perf/_results.py)
from engines import gold_documents  # noqa: E402

from deepke_llm.backends.base import GenerationConfig  # noqa: E402
from deepke_llm.backends.registry import load_backend  # noqa: E402
from deepke_llm.default_model import default_adapter_path, ensure_default_gguf  # noqa: E402
from deepke_llm.evaluation.scoring import score_documents  # noqa: E402
from deepke_llm.extractor import Extractor  # noqa: E402
from deepke_llm.training.weights.export_gguf import export_gguf  # noqa: E402


def export_all(folder: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The models to compare (backend arguments) and one row per file: size, export seconds."""
    base, adapter = ensure_default_gguf(), default_adapter_path()
    adapter_size = Path(adapter, "adapter_model.safetensors").stat().st_size
    files = [{"file": "base Q4_K_M GGUF", "bytes": base.stat().st_size, "export_seconds": None},
             {"file": "adapter (PEFT safetensors)", "bytes": adapter_size, "export_seconds": None}]
    models = {"runtime-lora": {"lora": adapter}}
    started = time.perf_counter()
    lora = export_gguf("default", folder / "adapter.gguf", lora=adapter, lora_only=True).out
    files.append({"file": "adapter as LoRA GGUF (--lora-only)", "bytes": lora.stat().st_size,
                  "export_seconds": round(time.perf_counter() - started, 1)})
    for quant in ("q8_0", "q4_k_m"):
        started = time.perf_counter()
        out = export_gguf("default", folder / f"merged-{quant}.gguf", lora=adapter,
                          quant=quant).out
        files.append({"file": f"merged {quant}", "bytes": out.stat().st_size,
                      "export_seconds": round(time.perf_counter() - started, 1)})
        models[f"merged-{quant}"] = {"model": str(out)}
        print(json.dumps(files[-1]), file=sys.stderr, flush=True)
    return models, files


def measure(models: dict[str, dict[str, Any]], gold: list, threads: int, batch_size: int,
            max_new_tokens: int) -> list[dict[str, Any]]:
    rows, reference = [], None
    for name, model in models.items():
        started = time.perf_counter()
        backend = load_backend(backend="llamacpp", threads=threads, parallel=batch_size, **model)
        loaded = time.perf_counter() - started
        config = GenerationConfig(batch_size=batch_size, max_new_tokens=max_new_tokens)
        extractor = Extractor(backend, "conll03", task="ner", generation=config)
        started = time.perf_counter()
        predictions = list(extractor.extract_iter(gold))
        seconds = time.perf_counter() - started
        backend.close()
        strict = score_documents("ner", gold, predictions, ["strict"]).level("strict")
        outputs = [p.raw_output for p in predictions]
        reference = reference or outputs
        rows.append({"model": name, "documents": len(gold), "load_seconds": round(loaded, 2),
                     "seconds": round(seconds, 2),
                     "docs_per_second": round(len(gold) / seconds, 2),
                     "strict_f1": round(100 * strict.overall.f1, 2),
                     "same_outputs_as_first": sum(a == b for a, b in zip(outputs, reference,
                                                                         strict=True))})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for row in rows:
        row["speedup_vs_runtime_lora"] = round(row["docs_per_second"] /
                                               rows[0]["docs_per_second"], 2)
    return rows


def write(result: dict[str, Any]) -> None:
    lines = ["# Merged GGUF exports vs runtime LoRA (`benchmarks/perf/export_gguf.py`)", "",
             f"Default model (Gemma 3 270M + IE adapter), llama.cpp engine, CoNLL-2003 test, "
             f"first {result['documents']} sentences, NER through the Extractor; "
             f"{result['threads']} threads, batch {result['batch_size']}, max "
             f"{result['max_new_tokens']} new tokens; one run, models one after the other. "
             f"Load average (1 min) {result['load_average'][0]} at the start, "
             f"{result['load_average'][1]} at the end (the machine is shared: absolute docs/s "
             "move with it, the ratios less).", "",
             "| model | load s | extract s | docs/s | x runtime LoRA | strict F1 | same raw outputs |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['load_seconds']} | {r['seconds']} | "
                     f"{r['docs_per_second']} | {r['speedup_vs_runtime_lora']} | "
                     f"{r['strict_f1']:.2f} | {r['same_outputs_as_first']}/{r['documents']} |")
    lines += ["", "| file | MB | export s |", "|---|---:|---:|"]
    for f in result["files"]:
        seconds = "" if f["export_seconds"] is None else f["export_seconds"]
        lines.append(f"| {f['file']} | {f['bytes'] / 1e6:.1f} | {seconds} |")
    lines += ["", f"Machine: {result['machine']}; measured {result['date']}."]
    write_results("export_gguf", result, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("DEEPKE_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    gold = gold_documents(args.data_dir, args.docs)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="deepke-export-") as folder:
        models, files = export_all(Path(folder))
        rows = measure(models, gold, args.threads, args.batch_size, args.max_new_tokens)
    result = {"documents": len(gold), "threads": args.threads, "batch_size": args.batch_size,
              "max_new_tokens": args.max_new_tokens, "rows": rows, "files": files,
              "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
              "machine": machine(),
              "date": time.strftime("%Y-%m-%d")}
    if not args.no_write:
        write(result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
