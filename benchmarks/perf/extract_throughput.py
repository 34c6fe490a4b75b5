"""Documents per second of local generation: one prompt per call vs batches of 8 and 32.

KnowLM / DeepKE's inference scripts call ``model.generate`` once per instruction; the HF backend
sorts prompts by length and generates them in left-padded batches. This script times the same
prompts both ways on the same model and writes
``benchmarks/results/perf/extract_throughput.{json,md}``.

The timed work is one function, :func:`measured_call` (today ``backend.generate``; the extractor
plugs in there later). By default the model is a random LLaMA (hidden 256, 4 layers) built on the
spot with ``tests/tiny_models.py``; ``--model DIR`` times a real one.

Example::

    python benchmarks/perf/extract_throughput.py --docs 64 --max-new-tokens 48
    python benchmarks/perf/extract_throughput.py --model ./gemma-3-270m.gguf --docs 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deepke_llm.backends.base import GenerationConfig  # noqa: E402
from deepke_llm.prompts.chat import Prompt  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "perf"
SENTENCES = [
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria.",
    "Thomas Edison died in West Orange, New Jersey.",
    "Oracle laid off 300 workers in March after the merger with Sun Microsystems.",
    "Robert Allenby of Australia won the tournament in Sydney on Sunday.",
    "John Smith, who works for Acme Corp in Boston, met the mayor of Chicago.",
    "Angela Merkel and Barack Obama discussed trade at the summit in Berlin.",
]
SCHEMA = ["person", "location", "organization", "miscellaneous"]


def build_prompts(count: int) -> list[Prompt]:
    """IEPile-style NER prompts over texts of 1 to 4 sentences (varied lengths, as in real data)."""
    prompts = []
    for i in range(count):
        text = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 4))
        instruction = {"instruction": "You are an expert in named entity recognition. Please "
                       "extract entities that match the schema definition from the input.",
                       "schema": SCHEMA, "input": text}
        prompts.append(Prompt(user=json.dumps(instruction, ensure_ascii=False)))
    return prompts


def measured_call(backend: Any, prompts: Sequence[Prompt], config: GenerationConfig) -> list[str]:
    """The timed unit of work: prompts in, one output per prompt out."""
    return backend.generate(prompts, config)


def time_mode(backend: Any, prompts: list[Prompt], batch_size: int, max_new_tokens: int,
              one_per_call: bool) -> tuple[float, int, list[str]]:
    """Run all prompts once (one call per prompt, or one call in batches): seconds, tokens, outputs."""
    config = GenerationConfig(max_new_tokens=max_new_tokens, batch_size=batch_size)
    tokens_before = backend.stats.generated_tokens
    started = time.perf_counter()
    if one_per_call:
        outputs = [measured_call(backend, [p], config)[0] for p in prompts]
    else:
        outputs = measured_call(backend, prompts, config)
    seconds = time.perf_counter() - started
    return seconds, backend.stats.generated_tokens - tokens_before, outputs


def build_default_model(work: Path, hidden: int, layers: int) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_models import build_tiny_llama, train_tokenizer

    tokenizer_dir = train_tokenizer(work / "tokenizer")
    return build_tiny_llama(work / "model", tokenizer_dir, hidden=hidden, layers=layers)


def padding_waste(lengths: Sequence[int], batch_size: int) -> float:
    """Share of extra (pad) tokens when length-sorted prompts are cut into batches."""
    ordered = sorted(lengths, reverse=True)
    padded = sum(max(ordered[i:i + batch_size]) * len(ordered[i:i + batch_size])
                 for i in range(0, len(ordered), batch_size))
    return padded / sum(lengths) - 1


def run(model: str | None, docs: int, max_new_tokens: int, batch_sizes: Sequence[int],
        hidden: int, layers: int, threads: int, repeats: int = 3,
        load: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Time one-per-call and each batch size on the same prompts; return the report dict.

    Each mode also runs with ``max_new_tokens=1`` (prompt processing only), so the report splits
    the time into prefill and decoding: batching amortises the per-step cost of decoding, while
    prefill is already a large matrix product per prompt and gains nothing.
    """
    import torch
    import transformers

    from deepke_llm.backends.hf import HFBackend

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        if model == "default":  # the packaged default model with its shipped IE adapter
            from deepke_llm.backends.registry import load_backend

            backend = load_backend()
        else:
            model_path = model or str(build_default_model(Path(tmp), hidden, layers))
            backend = (load or HFBackend)(model_path)
    prompts = build_prompts(docs)
    measured_call(backend, prompts[:2], GenerationConfig(max_new_tokens=4))  # warm-up
    # Modes are interleaved and each keeps its best pass: on a shared machine other processes
    # only ever add time, so the minimum is the least disturbed measurement (as timeit does).
    modes = [1, *batch_sizes]
    passes: dict[int, list[float]] = {size: [] for size in modes}
    prefill: dict[int, list[float]] = {size: [] for size in modes}
    tokens: dict[int, int] = {}
    outputs: dict[int, list[str]] = {}
    for _ in range(repeats):
        for size in modes:
            seconds, tokens[size], outputs[size] = time_mode(
                backend, prompts, size, max_new_tokens, one_per_call=size == 1)
            passes[size].append(round(seconds, 3))
            prefill[size].append(round(time_mode(backend, prompts, size, 1, size == 1)[0], 3))
    lengths = [len(backend.encode_prompt(p)) for p in prompts]
    results = []
    for size in modes:
        best, best_prefill = min(passes[size]), min(prefill[size])
        results.append({"mode": "one prompt per call" if size == 1 else f"batch {size}",
                        "batch_size": size, "seconds": best, "all_seconds": passes[size],
                        "docs_per_s": round(len(prompts) / best, 3),
                        "generated_tokens": tokens[size],
                        "tokens_per_s": round(tokens[size] / best, 1),
                        "prefill_seconds": best_prefill, "all_prefill_seconds": prefill[size],
                        "decode_seconds": round(max(best - best_prefill, 1e-3), 3),
                        "padding_waste": round(padding_waste(lengths, size), 3)})
    for result in results:
        result["speedup"] = round(result["docs_per_s"] / results[0]["docs_per_s"], 2)
        result["decode_speedup"] = round(results[0]["decode_seconds"]
                                         / result["decode_seconds"], 2)
    return {
        "model": model or f"random LLaMA, hidden {hidden}, {layers} layers (tests/tiny_models.py)",
        **describe(backend),
        "docs": docs, "max_new_tokens": max_new_tokens, "repeats": repeats,
        "prompt_tokens": {"min": min(lengths), "max": max(lengths),
                          "mean": round(sum(lengths) / len(lengths), 1)},
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(),
        "outputs_identical_to_one_per_call": {str(size): outputs[size] == outputs[1]
                                              for size in batch_sizes},
        "results": results,
    }


def describe(backend: Any) -> dict[str, Any]:
    """Engine, parameters, weights type, device and threads of a transformers or llama.cpp
    backend."""
    import torch

    if getattr(backend, "engine", "hf") == "llamacpp":
        lib, model = backend._lib, backend._model
        return {"engine": "llamacpp", "parameters": int(lib.llama_model_n_params(model)),
                "dtype": "GGUF " + Path(backend.model_name).stem.rsplit("-", 1)[-1],
                "device": "cpu", "threads": backend.threads}
    return {"engine": "hf", "parameters": sum(p.numel() for p in backend.model.parameters()),
            "dtype": str(backend.model.dtype).replace("torch.", ""),
            "device": str(backend.device), "threads": torch.get_num_threads()}


def markdown(report: dict[str, Any]) -> str:
    """A short table of the report (docs/s, speedup over one prompt per call, time split)."""
    lines = [
        "# Generation throughput: one prompt per call vs batched",
        "",
        f"Model: {report['model']} ({report['parameters']:,} parameters, {report['dtype']}, "
        f"{report['device']}, engine {report.get('engine', 'hf')}); {report['docs']} IEPile-style NER prompts "
        f"({report['prompt_tokens']['min']}-{report['prompt_tokens']['max']} tokens, mean "
        f"{report['prompt_tokens']['mean']}), greedy, max_new_tokens {report['max_new_tokens']}; "
        f"torch {report['torch']}, transformers {report['transformers']}, "
        f"{report.get('threads', report.get('torch_threads'))} threads, "
        f"best of {report['repeats']} interleaved passes, "
        f"1-min load average {report['load_average_1min']} on {report['cpu_count']} CPUs.",
        "",
        "| mode | docs/s | tokens/s | seconds | speedup | prefill s | decode s "
        "| decode speedup | padding |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["results"]:
        lines.append(f"| {r['mode']} | {r['docs_per_s']:.2f} | {r['tokens_per_s']:.0f} | "
                     f"{r['seconds']:.2f} | {r['speedup']:.2f}x | {r['prefill_seconds']:.2f} | "
                     f"{r['decode_seconds']:.2f} | {r['decode_speedup']:.2f}x | "
                     f"{100 * r['padding_waste']:.0f}% |")
    same = report["outputs_identical_to_one_per_call"]
    lines += [
        "", "prefill s: the same mode run with max_new_tokens=1 (prompt processing); decode s: "
        "the rest. padding: extra pad tokens of the length-sorted batches.", "",
        "Batched outputs identical to one-per-call outputs: "
        + ", ".join(f"batch {k}: {'yes' if v else 'no'}" for k, v in same.items()), "",
        "Written by `python benchmarks/perf/extract_throughput.py`; do not edit by hand.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python benchmarks/perf/extract_throughput.py"
                                            " --docs 64 --max-new-tokens 48")
    parser.add_argument("--model", help="model dir, hub id, .gguf, or 'default' (the packaged "
                        "default model + IE adapter) [default: a random LLaMA]")
    parser.add_argument("--docs", type=int, default=64, help="prompts to generate for")
    parser.add_argument("--max-new-tokens", type=int, default=48,
                        help="tokens per output (a random model never stops early; 48 is the"
                             " length of a 3-4 entity IEPile NER answer with the tiny tokenizer)")
    parser.add_argument("--batch-sizes", default="8,32", help="comma-separated batch sizes")
    parser.add_argument("--hidden", type=int, default=256, help="hidden size of the random model")
    parser.add_argument("--layers", type=int, default=4, help="layers of the random model")
    # One thread by default: on a shared machine a multi-threaded OpenMP region stalls whenever
    # another process holds a core, which hurts the many tiny one-per-call steps far more than
    # batched steps and inflates the ratio (we saw 30x from that alone). 0 = torch's default.
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1; 0 = torch's default)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved passes per mode; the best pass is reported")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--name", default="extract_throughput",
                        help="file stem of the results (e.g. extract_throughput_default_model)")
    args = parser.parse_args(argv)
    report = run(args.model, args.docs, args.max_new_tokens,
                 [int(b) for b in args.batch_sizes.split(",")], args.hidden, args.layers,
                 args.threads, args.repeats)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output_dir / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
