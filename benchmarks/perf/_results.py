"""What the perf scripts share: the machine line and writing a result's JSON and Markdown.

Imported as a sibling (``from _results import ...``): ``python benchmarks/perf/X.py`` puts this
folder first on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "perf"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deepke_llm.io import atomic_path  # noqa: E402


def machine() -> str:
    """Where a measurement ran: architecture, CPUs this process sees, Python."""
    return (f"{platform.machine()}, {os.cpu_count()} CPUs visible, "
            f"Python {platform.python_version()}")


def write_results(name: str, result: dict[str, Any], lines: list[str],
                  directory: Path = RESULTS) -> None:
    """``directory/name.json`` (the numbers) and ``name.md`` (``lines``), each replaced whole."""
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    with atomic_path(directory / f"{name}.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
