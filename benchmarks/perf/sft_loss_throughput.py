"""Training-step throughput of the SFT loss with a big vocabulary: full logits vs response-only head.

SFT computes its loss on the response only, and :func:`deepke_llm.training.sft.loss.
response_only_loss` sends only the positions that predict a response token through the LM head;
with a 262,144-token vocabulary (Gemma 3) the head dominates a step of a small model. This script
times forward + backward steps of both losses on a randomly initialised 2-layer LLaMA with that
vocabulary (hidden size 64), a batch of prompt + response tokens labelled on the response only,
checks that both give the same loss, and reports tokens/s.

    python benchmarks/perf/sft_loss_throughput.py [--vocab 262144] [--steps 3] [--threads 1]

Writes benchmarks/results/perf/sft_loss_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "perf"
sys.path.insert(0, str(REPO))


def measure(vocab: int, batch_size: int, prompt_len: int, response_len: int, steps: int,
            seed: int = 0) -> dict[str, Any]:
    """Tokens/s and final loss of ``steps`` training steps with each loss function."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from deepke_llm.training.sft.loss import full_logits_loss, response_only_loss

    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    ids = torch.randint(3, vocab, (batch_size, prompt_len + response_len))
    labels = ids.clone()
    labels[:, :prompt_len] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    runs: dict[str, Any] = {}
    for name, loss_fn in (("full_logits", full_logits_loss), ("response_only", response_only_loss)):
        model.zero_grad()
        loss_fn(model, batch).backward()  # warm-up: allocator and kernels, outside the timing
        start = time.perf_counter()
        for _ in range(steps):
            model.zero_grad()
            loss = loss_fn(model, batch)
            loss.backward()
        seconds = time.perf_counter() - start
        runs[name] = {"seconds": seconds, "tokens_per_second": steps * ids.numel() / seconds,
                      "loss": float(loss.detach())}
    runs["same_loss"] = abs(runs["full_logits"]["loss"] - runs["response_only"]["loss"]) <= 1e-4
    runs["speedup"] = (runs["response_only"]["tokens_per_second"]
                       / runs["full_logits"]["tokens_per_second"])
    return runs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=262_144, help="Vocabulary size.")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, default=192, help="Prompt tokens (no loss).")
    parser.add_argument("--response-len", type=int, default=64, help="Response tokens (loss).")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per loss.")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads.")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    runs = measure(args.vocab, args.batch_size, args.prompt_len, args.response_len, args.steps)
    result = {
        "vocab": args.vocab, "batch_size": args.batch_size, "prompt_len": args.prompt_len,
        "response_len": args.response_len, "steps": args.steps, "threads": args.threads,
        "runs": runs, "device": "cpu", "torch": torch.__version__,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "command": " ".join(["python benchmarks/perf/sft_loss_throughput.py", *sys.argv[1:]]),
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "sft_loss_throughput.json").write_text(json.dumps(result, indent=2) + "\n",
                                                             encoding="utf-8")
    (args.output_dir / "sft_loss_throughput.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    if not runs["same_loss"]:
        raise SystemExit("the two losses differ")
    return result


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    rows = [f"| {label} | {runs[key]['tokens_per_second']:.0f} | {runs[key]['seconds']:.2f} | "
            f"{runs[key]['loss']:.5f} |"
            for key, label in (("full_logits", "full logits"),
                               ("response_only", "response-only head"))]
    machine = result["machine"]
    return "\n".join([
        "# SFT loss: response-only LM head vs full logits", "",
        f"A training step (forward + backward) of a randomly initialised 2-layer LLaMA (hidden "
        f"size 64) with a {result['vocab']:,}-token vocabulary, batch {result['batch_size']} x "
        f"({result['prompt_len']} prompt + {result['response_len']} response tokens), loss on the "
        f"response only; {result['steps']} timed steps after one warm-up, CPU, "
        f"{result['threads']} torch thread(s), torch {result['torch']}, {machine['cpus']} CPUs "
        f"({machine['platform']}, shared with other jobs, so times are indicative).", "",
        "| loss | tokens/s | seconds | loss value |", "|---|---:|---:|---:|", *rows, "",
        f"Response-only head: **{runs['speedup']:.1f}x** the tokens/s; same loss: "
        f"**{'yes' if runs['same_loss'] else 'NO'}**.", "",
        f"Reproduce: `{result['command']}`", ""])


if __name__ == "__main__":
    main()
