"""Copy a trained LoRA adapter into the package (deepke_llm/adapters/default), in bfloat16.

    python training/default_model/export_adapter.py runs/default/adapter [--checkpoint N]
    python training/default_model/export_adapter.py runs/default_v2/adapter \
        --recipe "training/default_model_v2/train.sh (mix: training/default_model_v2/build_mix.py)"

The shipped adapter is what `deepke-llm extract` uses without --model. bfloat16 halves its size;
peft loads it into the float32 LoRA layers on CPU. `training.json` beside it records where it came
from (step, tokens trained, data summary).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from deepke_llm.io import atomic_path

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "deepke_llm" / "adapters" / "default"


def _checkpoint(run: Path, step: int | None) -> Path:
    if step is not None:
        return run / f"checkpoint-{step}"
    if (run / "adapter_model.safetensors").is_file():
        return run  # the finished run's final adapter
    checkpoints = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if not checkpoints:
        raise SystemExit(f"no adapter or checkpoint in {run}")
    return checkpoints[-1]


def _tokens_seen(source: Path) -> tuple[int | None, int | None]:
    state = source / "trainer_state.json"
    if not state.is_file():  # a finished run: its last checkpoint holds the final state
        checkpoints = sorted(source.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        state = checkpoints[-1] / "trainer_state.json" if checkpoints else state
    if not state.is_file():
        return None, None
    data = json.loads(state.read_text())
    seen = [h["num_input_tokens_seen"] for h in data["log_history"] if "num_input_tokens_seen" in h]
    return data.get("global_step"), (seen[-1] if seen else None)


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def _stages(run: Path, source: Path | None = None) -> list[dict]:
    """The training stages behind ``run``: earlier runs it continued (``init_adapter``) first.

    Each stage: run dir, steps, tokens trained in that stage, the data summary of its train file.
    """
    source = source or _checkpoint(run, None)
    config_path = run / "sft_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    step, tokens = _tokens_seen(source)
    train_file = Path(config.get("train_file") or run.parent / "data" / "train.jsonl")
    folder = (ROOT / train_file).parent
    # v1's data summaries (stage 1, stage 2), or the v2 mix's counts (build_mix.py)
    names = (["stage2_summary.json"] if train_file.name.startswith("stage2") else
             ["data_summary.json", "mix.json"])
    summary = next((folder / n for n in names if (folder / n).is_file()), None)
    stage = {"run": _shown(run), "step": step, "tokens": tokens, "train_file": str(train_file),
             "data": json.loads(summary.read_text()) if summary else None}
    parent = config.get("init_adapter")
    if parent and parent != "default" and (ROOT / parent).is_dir():
        return [*_stages(ROOT / parent), stage]
    return [stage]


V1_RECIPE = ("training/default_model/train.sh (data by training/default_model/prepare_data.py; "
             "stage 1 training/sft/default_small.yaml, stage 2 "
             "training/sft/default_small_stage2.yaml)")


def export(run: Path, step: int | None = None, target: Path = TARGET,
           recipe: str = V1_RECIPE) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    source = _checkpoint(run, step)
    tensors = {k: v.to(torch.bfloat16).contiguous()
               for k, v in load_file(str(source / "adapter_model.safetensors")).items()}
    config = json.loads((source / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "default"  # the packaged Gemma 3 270M
    stages = _stages(run, source)
    info = {"source": _shown(source), "step": stages[-1]["step"],
            "tokens_trained": sum(stage["tokens"] or 0 for stage in stages),
            "recipe": recipe,
            "stages": stages}
    # the shipped adapter is replaced whole or not at all
    with atomic_path(target) as tmp:
        tmp.mkdir()
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=1, sort_keys=True))
        (tmp / "training.json").write_text(json.dumps(info, indent=1))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="SFT output dir (runs/default/adapter)")
    parser.add_argument("--checkpoint", type=int, help="Export checkpoint-N instead of the latest")
    parser.add_argument("--recipe", default=V1_RECIPE,
                        help="How the adapter was trained, for training.json [default: v1's]")
    args = parser.parse_args()
    print(export(args.run, args.checkpoint, recipe=args.recipe))


if __name__ == "__main__":
    main()
