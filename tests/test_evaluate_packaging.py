"""The wheel ships the benchmark definitions (deepke_llm/benchmark_defs -> benchmarks/definitions)
and an installed copy loads them without the source tree."""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from test_packaging import BUILD_INPUTS, REPO, _run

from deepke_llm.evaluation.definitions import bundled_benchmarks


@pytest.mark.slow
def test_wheel_ships_benchmark_definitions(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True, ignore=ignore)
        elif (REPO / name).exists():
            shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "benchmarks" / "definitions", source / "benchmarks" / "definitions")
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
          "--no-cache-dir", "-q", "-w", str(wheels)], cwd=source)
    (wheel,) = wheels.glob("deepke_llm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"deepke_llm/benchmark_defs/{name}.json" for name in bundled_benchmarks()}
    assert len(expected) >= 8 and expected <= names, sorted(expected - names)

    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "-q",
          "--target", str(target), str(wheel)], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = ("from deepke_llm.evaluation.definitions import bundled_benchmarks, load_benchmark; "
             "print(','.join(bundled_benchmarks())); print(load_benchmark('conll04').task)")
    result = _run([sys.executable, "-c", check], cwd=elsewhere, PYTHONPATH=str(target))
    names_line, task = result.stdout.split()
    assert names_line.split(",") == bundled_benchmarks() and task == "re"
    assert not Path(elsewhere / "benchmarks").exists()
