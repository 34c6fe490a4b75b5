"""docs/architecture.md stays true: the paths it names exist, and every command, task, prompt
style, backend and dataset reader the code registers is named in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deepke_llm.backends.registry import backend_names
from deepke_llm.cli import COMMANDS
from deepke_llm.datasets import READERS
from deepke_llm.prompts.styles import style_names
from deepke_llm.tasks import task_names

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
QUOTED = set(re.findall(r"`([^`\n]+)`", DOC))


def _named_paths() -> list[str]:
    """Quoted words that look like repository paths (no placeholders such as NAME or OUT)."""
    paths = []
    for word in QUOTED:
        word = word.split(":")[0].rstrip("/")
        if " " in word or word.startswith("-") or not re.fullmatch(r"[\w./-]+", word) or re.search(r"[A-Z]{3}", word):
            continue
        if "/" in word or word.endswith((".py", ".md", ".json", ".sh")):
            paths.append(word)
    return sorted(paths)


@pytest.mark.parametrize("path", _named_paths())
def test_every_named_path_exists(path):
    assert (ROOT / path).exists(), f"docs/architecture.md names {path}, which does not exist"


def test_the_check_above_reads_the_layout():
    assert {"deepke_llm/records.py", "deepke_llm/tasks", "kg2instruction"} & set(_named_paths())
    assert len(_named_paths()) > 30


def test_every_registered_piece_is_named():
    missing = [name for name in COMMANDS if f"deepke-llm {name}" not in DOC]
    missing += [f"task {t}" for t in task_names() if t.upper() not in DOC]
    missing += [f"style {s}" for s in style_names() if s not in DOC.lower()]
    missing += [f"backend {b}" for b in backend_names() if f"`{b}`" not in DOC]
    missing += [f"reader {r}" for r in READERS if f"`{r}`" not in DOC]
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_readme_points_to_the_architecture_document():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/architecture.md" in readme
    assert "../shared" not in readme.split("## Layout", 1)[-1].split("\n## ", 1)[0]
