"""Helpers shared by the weights tests (no tests here): HF-layout checkpoints written with the
libraries themselves (safetensors.save_file, torch.save), independently of our own writer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def load_dir(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a model directory (safetensors or .bin shards), read with the libraries."""
    state: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(file)))
    for file in sorted(path.glob("*.bin")):
        state.update(torch.load(file, weights_only=True))
    return state


def assert_bit_identical(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert got[name].shape == tensor.shape, name
        assert got[name].reshape(-1).view(torch.uint8).equal(tensor.reshape(-1).view(torch.uint8)), name


def save_model(state: dict[str, torch.Tensor], out: Path, side_files_from: Path | None = None,
               shards: int = 1, layout: str = "safetensors") -> Path:
    """Save ``state`` as an HF model dir: 1..n shards (+ index), safetensors or pytorch .bin."""
    out.mkdir(parents=True, exist_ok=True)
    names = list(state)
    groups = [names[i::shards] for i in range(shards)]
    stem, ext = ("model", "safetensors") if layout == "safetensors" else ("pytorch_model", "bin")
    weight_map = {}
    for i, group in enumerate(groups):
        file = f"{stem}.{ext}" if shards == 1 else f"{stem}-{i + 1:05d}-of-{shards:05d}.{ext}"
        part = {n: state[n].contiguous() for n in group}
        if layout == "safetensors":
            save_file(part, str(out / file), metadata={"format": "pt"})
        else:
            torch.save(part, out / file)
        weight_map.update(dict.fromkeys(group, file))
    if shards > 1:
        index = {"metadata": {"total_size": sum(t.nbytes for t in state.values())},
                 "weight_map": weight_map}
        (out / f"{stem}.{ext}.index.json").write_text(json.dumps(index))
    if side_files_from is not None:
        for file in side_files_from.iterdir():
            side = file.name.startswith("tokenizer") or file.name in ("config.json",
                                                                        "generation_config.json")
            if side:
                shutil.copy(file, out / file.name)
    return out


def perturb(state: dict[str, torch.Tensor], seed: int = 0, scale: float = 0.01) -> dict[str, torch.Tensor]:
    """A "fine-tuned" copy: every tensor moved by seeded noise, kept in its dtype."""
    generator = torch.Generator().manual_seed(seed)
    return {name: (t.float() + scale * torch.randn(t.shape, generator=generator)).to(t.dtype)
            for name, t in state.items()}


def make_pair(root: Path, state: dict[str, torch.Tensor], side: Path, dtype: torch.dtype,
              shards: int = 1, layout: str = "safetensors") -> tuple[Path, Path, dict]:
    """``root/raw`` (``state`` in ``dtype``) and ``root/tuned`` (a perturbed copy) model dirs with
    ``side``'s config and tokenizer; returns both paths and the tuned tensors."""
    raw = {n: t.to(dtype) for n, t in state.items()}
    tuned = perturb(raw)
    save_model(raw, root / "raw", side, shards=shards, layout=layout)
    save_model(tuned, root / "tuned", side, shards=shards, layout=layout)
    return root / "raw", root / "tuned", tuned
