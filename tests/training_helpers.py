"""Helpers shared by the training tests (no tests here): IEPile training lines built with the
extractor's own instruction builder, and the launch environment of a fresh machine for DeepSpeed."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (task, language, schema, text, output): NER + RE, English + Chinese
IEPILE_EXAMPLES = [
    ("ner", "en", ["person", "location"], "Robert Allenby ( Australia ) 69",
     {"person": ["Robert Allenby"], "location": ["Australia"]}),
    ("re", "en", ["place of death"], "Thomas Edison died in West Orange.",
     {"place of death": [{"subject": "Thomas Edison", "object": "West Orange"}]}),
    ("ner", "zh", ["人物", "地理位置"], "张三在北京。", {"人物": ["张三"], "地理位置": ["北京"]}),
    ("re", "zh", ["work for"], "John Smith works for Acme Corp.",
     {"work for": [{"subject": "John Smith", "object": "Acme Corp"}]}),
]


def iepile_lines() -> list[dict]:
    """IEPile training lines built with the extractor's own instruction builder."""
    from deepke_llm.prompts import iepile

    return [{"id": str(i), "task": task.upper(), "source": "unit",
             "instruction": iepile.instruction_json(task, schema, text, language),
             "output": iepile.output_json(output)}
            for i, (task, language, schema, text, output) in enumerate(IEPILE_EXAMPLES)]


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                    encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stale_lock(extensions: Path, op: str = "deepspeed_shm_comm") -> Path:
    """The lock a build killed two hours ago left in a torch extensions dir."""
    lock = extensions / op / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    os.utime(lock, (time.time() - 7200,) * 2)
    return lock


def fresh_machine_env(root: Path, world_size: int = 1) -> dict[str, str]:
    """A one-process launch environment with an empty HOME and a torch extensions dir that holds
    a stale shm-op build lock: before the fix, any run that reached the op build waited forever."""
    (root / "home").mkdir(parents=True, exist_ok=True)
    stale_lock(root / "torch_extensions")
    return {**os.environ, "HOME": str(root / "home"),
            "TORCH_EXTENSIONS_DIR": str(root / "torch_extensions"),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
            "WORLD_SIZE": str(world_size), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": str(world_size),
            "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO)}


def built_ops(root: Path) -> list[str]:
    """The C++ ops compiled into ``root``'s torch extensions dir."""
    return sorted(p.name for p in (root / "torch_extensions").rglob("*.so"))
