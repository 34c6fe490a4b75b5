"""The README's promises: its two commands exist, and its results come from benchmarks/results."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

from conftest import REPO


def load_readme_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", REPO / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_section_is_generated_from_benchmark_results():
    module = load_readme_tables()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert module.render(readme) == readme, "run: python benchmarks/readme_tables.py"


def test_a_users_own_report_in_benchmarks_results_leaves_the_readme_alone(tmp_path, monkeypatch):
    """Only committed (published) reports make the table; an untracked one is someone's own run."""
    root = tmp_path / "checkout"
    results = root / "benchmarks" / "results"
    shutil.copytree(REPO / "benchmarks" / "results", results,
                    ignore=shutil.ignore_patterns("*.jsonl", "*.partial"))
    shutil.copy(REPO / "README.md", root / "README.md")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "README.md", "benchmarks")
    module = load_readme_tables()
    monkeypatch.setattr(module, "ROOT", root)
    monkeypatch.setattr(module, "RESULTS", results)
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert module.render(readme) == readme

    # what the README's `deepke-llm evaluate conll04 --limit 15` used to leave behind
    published = json.loads((results / "conll04" / "deepke-default-2026-11-25.json").read_text())
    own = {**published, "documents": 15, "date": "2027-01-01"}
    (results / "conll04" / "deepke-default-2027-01-01.json").write_text(json.dumps(own))
    (results / "conll04" / "deepke-default-2027-01-01.md").write_text("# a user's run\n")
    (results / "perf" / "my_measurement.md").write_text("# mine\n")
    assert module.render(readme) == readme

    git("add", "benchmarks/results/conll04/deepke-default-2027-01-01.json")  # published now
    assert "| conll04 | test (15 docs) | deepke-default |" in module.render(readme)


def _extras(name: str) -> str:
    import configparser

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config["options.extras_require"][name]


def test_install_and_test_commands_are_the_ones_ci_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert ('pip install torch==2.13.0 && pip install ".[default-model,llamacpp]" && '
            'deepke-llm extract') in readme
    assert "\n.ci/run\n" in readme
    assert '"torch==2.13.0"' in ci and "python -m pytest -q" in ci and "default-model" in ci
    # the test extras hold the first command's engine, so CI runs what a new user gets
    assert "llamacpp" in _extras("all") and "all" in _extras("test")
