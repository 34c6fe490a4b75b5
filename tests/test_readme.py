"""The README's promises: its two commands exist, and its results come from benchmarks/results."""

from __future__ import annotations

import importlib.util

from conftest import REPO


def test_results_section_is_generated_from_benchmark_results():
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert module.render(readme) == readme, "run: python benchmarks/readme_tables.py"


def test_install_and_test_commands_are_the_ones_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install torch==2.13.0 && pip install ".[default-model]" && deepke-llm extract' in readme
    assert "\n.ci/run\n" in readme
    assert '"torch==2.13.0"' in ci and "python -m pytest -q" in ci and "default-model" in ci
