"""Peak RSS and wall time of ``weights recover`` (streaming) vs. loading whole models.

Synthesises a LLaMA-shaped multi-shard bf16 model (default ~2.3 GB in 5 shards of ~0.5 GB, HF
layout with an index), a perturbed "tuned" copy, and a diff made with our ``diff``; then runs, each
in a fresh subprocess that reports its own peak RSS (``VmHWM``, which counts the file pages a
memory map has touched):

- ours:  ``deepke-llm weights recover`` (verifies every diff file's sha256 first, then every
  recovered tensor's);
- naive: the seed's approach, every shard of raw and diff loaded into float32 dicts, added, cast
  back to the tuned dtype and saved with ``safetensors.torch.save_file`` (no verification).

Writes ``benchmarks/results/perf/recover_memory.{json,md}``. Goal: ours peak RSS <= 1.5x the
largest shard. Everything is written under ``--workdir`` (default /tmp) and deleted afterwards.

    python benchmarks/perf/recover_memory.py [--size-gb 2.3] [--shards 5] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "perf"

CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
job, args = sys.argv[1], json.loads(sys.argv[2])
start = time.perf_counter()
if job in ("ours_recover", "ours_diff"):  # exactly what `deepke-llm weights ...` runs
    from deepke_llm.cli import main
    command = (["recover", "--raw", args["raw"], "--diff", args["diff"]] if job == "ours_recover"
               else ["diff", "--raw", args["raw"], "--tuned", args["tuned"]])
    main(["weights", *command, "--output", args["out"], "--max-shard-size", args["shard"]],
         standalone_mode=False)
elif job == "import_baseline":  # the interpreter with torch + safetensors loaded, doing nothing
    import torch, safetensors.torch
    from deepke_llm.training.weights import recover  # imports diff, io, shards, manifest
elif job == "naive_recover":
    import glob, os, torch
    from safetensors.torch import load_file, save_file
    def load_all(d):
        state = {{}}
        for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
            state.update({{k: v.float() for k, v in load_file(f).items()}})
        return state
    raw, diff = load_all(args["raw"]), load_all(args["diff"])
    manifest = json.load(open(os.path.join(args["diff"], "diff_manifest.json")))
    dtypes = {{t["name"]: getattr(torch, t["dtype"]) for t in manifest["tensors"]}}
    recovered = {{k: (raw[k] + diff[k]).to(dtypes[k]) for k in dtypes}}
    os.makedirs(args["out"])
    names, part = list(recovered), max(1, len(recovered) // args["shards"])
    for i in range(0, len(names), part):
        save_file({{k: recovered[k] for k in names[i:i + part]}},
                  os.path.join(args["out"], f"model-{{i // part:05d}}.safetensors"))
elapsed = time.perf_counter() - start
# VmHWM, not ru_maxrss: the latter survives exec and so includes the forked parent's pages
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({{"seconds": elapsed, "vmhwm_bytes": hwm * 1024}}))
"""


def run_job(job: str, **args) -> dict:
    """Run one job in a fresh interpreter; return its self-reported time and peak RSS."""
    code = CHILD.format(repo=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code, job, json.dumps(args)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{job} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def synthesize(root: Path, size_gb: float, shards: int) -> tuple[Path, Path]:
    """LLaMA-7B-like layer shapes in bf16, ``shards`` files with an HF index; raw + tuned copy."""
    import torch
    from safetensors.torch import save_file

    hidden, inter, vocab = 4096, 11008, 32000
    layer_params = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden
    layers = max(1, round((size_gb * 1e9 / 2 - 2 * vocab * hidden) / layer_params))
    shapes = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [(p + f"self_attn.{n}_proj.weight", (hidden, hidden)) for n in "qkvo"]
        shapes += [(p + "mlp.gate_proj.weight", (inter, hidden)), (p + "mlp.up_proj.weight", (inter, hidden)),
                   (p + "mlp.down_proj.weight", (hidden, inter)),
                   (p + "input_layernorm.weight", (hidden,)), (p + "post_attention_layernorm.weight", (hidden,))]
    shapes += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    total = sum(2 * torch.Size(s).numel() for _, s in shapes)
    per_shard = total / shards
    groups: list[list] = [[]]
    size = 0
    for name, shape in shapes:
        nbytes = 2 * torch.Size(shape).numel()
        if size + nbytes > per_shard * 1.05 and groups[-1] and len(groups) < shards:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += nbytes
    generator = torch.Generator().manual_seed(0)
    for kind in ("raw", "tuned"):
        (root / kind).mkdir()
    weight_map = {}
    for index, group in enumerate(groups):
        file = f"model-{index + 1:05d}-of-{len(groups):05d}.safetensors"
        raw = {n: (torch.randn(s, generator=generator) * 0.02).to(torch.bfloat16) for n, s in group}
        save_file(raw, str(root / "raw" / file), metadata={"format": "pt"})
        tuned = {n: (t.float() + torch.randn(t.shape, generator=generator) * 1e-3).to(torch.bfloat16)
                 for n, t in raw.items()}
        del raw
        save_file(tuned, str(root / "tuned" / file), metadata={"format": "pt"})
        del tuned
        weight_map.update(dict.fromkeys((n for n, _ in group), file))
    for kind in ("raw", "tuned"):
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (root / kind / "model.safetensors.index.json").write_text(json.dumps(index))
        (root / kind / "config.json").write_text(json.dumps({"model_type": "llama", "dtype": "bfloat16"}))
    return root / "raw", root / "tuned"


def shard_sizes(path: Path) -> list[int]:
    return sorted((f.stat().st_size for f in path.glob("*.safetensors")), reverse=True)


def available_memory() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--render", type=Path, help="only re-render the markdown of a results JSON")
    parser.add_argument("--size-gb", type=float, default=2.3, help="model size in GB (bf16)")
    parser.add_argument("--shards", type=int, default=5)
    parser.add_argument("--workdir", default="/tmp")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.render:
        (args.render.with_suffix(".md")).write_text(markdown(json.loads(args.render.read_text())))
        return

    need = args.size_gb * 6.5e9  # raw + tuned + 2x diff + two recovered copies, plus slack
    free = shutil.disk_usage(args.workdir).free
    if free < need:
        raise SystemExit(f"{args.workdir}: {free / 1e9:.1f} GB free, need ~{need / 1e9:.1f} GB")
    root = Path(tempfile.mkdtemp(prefix="recover-bench-", dir=args.workdir))
    try:
        started = time.perf_counter()
        raw, tuned = synthesize(root, args.size_gb, args.shards)
        model_shard = shard_sizes(raw)[0]
        shard_arg = str(model_shard)  # diff and outputs use shards no larger than the model's
        print(f"synthesised {sum(shard_sizes(raw)) / 1e9:.2f} GB in {len(shard_sizes(raw))} shards "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        baseline = run_job("import_baseline")
        results = {"diff_ours": run_job("ours_diff", raw=str(raw), tuned=str(tuned),
                                        out=str(root / "diff"), shard=shard_arg)}
        print(f"diff: {results['diff_ours']}", file=sys.stderr)
        results["recover_ours"] = run_job("ours_recover", raw=str(raw), diff=str(root / "diff"),
                                          out=str(root / "ours"), shard=shard_arg)
        print(f"ours: {results['recover_ours']}", file=sys.stderr)
        naive_need = 2 * sum(shard_sizes(root / "diff")) + 3 * sum(shard_sizes(raw))
        if available_memory() > 1.3 * naive_need:
            results["recover_naive"] = run_job("naive_recover", raw=str(raw), diff=str(root / "diff"),
                                               out=str(root / "naive"), shards=args.shards)
            print(f"naive: {results['recover_naive']}", file=sys.stderr)
        else:
            results["recover_naive"] = {"skipped": f"needs ~{naive_need / 1e9:.1f} GB of free memory"}
        largest = max(model_shard, shard_sizes(root / "diff")[0], shard_sizes(root / "ours")[0])
        report = {
            "model_bytes": sum(shard_sizes(raw)), "model_shards": len(shard_sizes(raw)),
            "dtype": "bfloat16", "largest_model_shard_bytes": model_shard,
            "largest_diff_shard_bytes": shard_sizes(root / "diff")[0],
            "largest_shard_bytes": largest, "diff_bytes": sum(shard_sizes(root / "diff")),
            "jobs": results, "import_baseline_vmhwm_bytes": baseline["vmhwm_bytes"],
            "ratio_peak_rss_to_largest_shard": {
                k: round(v["vmhwm_bytes"] / largest, 3) for k, v in results.items() if "vmhwm_bytes" in v},
            "ratio_peak_rss_to_largest_model_shard": {
                k: round(v["vmhwm_bytes"] / model_shard, 3) for k, v in results.items() if "vmhwm_bytes" in v},
            "goal": "recover_ours peak RSS <= 1.5 x largest shard",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "command": " ".join(["python benchmarks/perf/recover_memory.py", *sys.argv[1:]]),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "recover_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "recover_memory.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    gb = 1e9
    lines = [
        "# weights recover: peak memory and time",
        "",
        f"Synthetic LLaMA-shaped {report['dtype']} model: {report['model_bytes'] / gb:.2f} GB in "
        f"{report['model_shards']} shards (largest {report['largest_model_shard_bytes'] / gb:.2f} GB); "
        f"diff {report['diff_bytes'] / gb:.2f} GB (float32 delta), written in shards of at most the "
        f"model's shard size (largest {report['largest_diff_shard_bytes'] / gb:.2f} GB). "
        "Each job ran in a fresh process; peak RSS is its VmHWM (file pages touched through memory "
        "maps count); a Python process with torch imported and nothing done peaks at "
        f"{report['import_baseline_vmhwm_bytes'] / gb:.2f} GB. Inputs were written just before, so "
        "they were mostly in the page cache.",
        "",
        "| job | wall time (s) | peak RSS (GB) | peak RSS / largest shard | peak RSS / largest model shard |",
        "|---|---:|---:|---:|---:|",
    ]
    names = {"diff_ours": "diff (ours, streaming)", "recover_ours": "recover (ours, streaming, verified)",
             "recover_naive": "recover (naive: whole models in fp32 dicts)"}
    for key, job in report["jobs"].items():
        if "vmhwm_bytes" not in job:
            lines.append(f"| {names[key]} | skipped | {job['skipped']} | | |")
            continue
        lines.append(f"| {names[key]} | {job['seconds']:.1f} | {job['vmhwm_bytes'] / gb:.2f} | "
                     f"{report['ratio_peak_rss_to_largest_shard'][key]:.2f} | "
                     f"{report['ratio_peak_rss_to_largest_model_shard'][key]:.2f} |")
    lines += ["", f"Largest shard (model, diff or output): {report['largest_shard_bytes'] / gb:.2f} GB. "
              f"Goal: {report['goal']}.", "",
              "Ours also verifies (sha256 of every diff file before use, then of every recovered "
              "tensor: about 3x the model's bytes hashed); the naive job verifies nothing. That "
              "hashing is most of the difference in wall time. Machine: "
              f"{report['machine']['cpus']} CPUs, shared with other jobs, so times are indicative.",
              "", f"Reproduce: `{report['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
