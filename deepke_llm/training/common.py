"""Helpers shared by the training recipes (pretrain, sft): run configs, DeepSpeed configs, resume.

Kept small on purpose: each recipe stays readable top to bottom and only the plumbing that would
otherwise be copied lives here.

Every training config is a dataclass whose fields are declared with
:func:`deepke_llm.config.config_field`, as every config of the package is: the field's help text
(and, for a number, its lower bound) sits in its metadata, where the command line (``--help``,
``click.IntRange``), the saved run config and validation (``check_ranges``) all read it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any, TypeVar

from deepke_llm.io import atomic_path

C = TypeVar("C")

# Package data: deepke_llm/training/configs is a link to training/configs in the source tree
# (like deepke_llm/schemas -> ../schemas) and a real directory in an installed wheel.
DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")


def resolve_deepspeed_config(name_or_path: str | None) -> str | None:
    """Turn ``zero2``/``zero3``/``zero3_offload`` or a JSON path into an existing config file path."""
    if not name_or_path:
        return None
    path = Path(name_or_path)
    if path.is_file():
        return str(path.resolve())
    if name_or_path in DEEPSPEED_PRESETS:
        from importlib.resources import files

        # installs are unpacked directories, so the resource is a real file DeepSpeed can open
        preset = Path(str(files("deepke_llm.training") / "configs" / f"ds_{name_or_path}.json"))
        if preset.is_file():
            return str(preset)
        raise ValueError(f"deepspeed: preset '{name_or_path}' not found at {preset}; pass a JSON path")
    raise ValueError(
        f"deepspeed: '{name_or_path}' is neither a file nor one of {', '.join(DEEPSPEED_PRESETS)}"
    )


def find_resume_checkpoint(output_dir: str | os.PathLike, resume: str | None) -> str | None:
    """Pick the checkpoint to resume from.

    ``resume`` is ``"auto"`` (latest ``checkpoint-N`` in ``output_dir``, or none), ``"none"``/empty
    (start fresh) or a checkpoint directory.
    """
    if not resume or resume == "none":
        return None
    if resume == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
    if not Path(resume).is_dir():
        raise ValueError(f"resume: checkpoint directory {resume} does not exist")
    return str(resume)


def load_run_config(path: str | os.PathLike, cls: type[C], overrides: dict[str, Any] | None = None) -> C:
    """Read a JSON or YAML run config into dataclass ``cls``; unknown keys warn instead of failing."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a run config must be a mapping of field names to values")
    data.pop("deepke_llm_version", None)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config_from_dict(data, cls, source=str(path))


def config_from_dict(data: dict[str, Any], cls: type[C], source: str = "config") -> C:
    """Build dataclass ``cls`` from ``data``, warning about (and ignoring) unknown keys."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = {f.name for f in fields}
    missing = [f.name for f in fields if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{source}: missing required config field(s) {missing}")
    unknown = sorted(set(data) - names)
    if unknown:
        warnings.warn(f"{source}: ignoring unknown config keys {unknown}", stacklevel=2)
    return cls(**{k: v for k, v in data.items() if k in names})


def save_run_config(config: Any, out_dir: str | os.PathLike, filename: str) -> Path:
    """Write a config dataclass as JSON next to the outputs, stamped with the package version."""
    from deepke_llm import __version__

    payload = {"deepke_llm_version": __version__, **dataclasses.asdict(config)}
    return write_json(Path(out_dir) / filename, payload)


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON through a temp file and a rename.

    The temp name carries the process id, so two processes saving at once (ranks of a launch)
    never write into the same temp file.
    """
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return target
