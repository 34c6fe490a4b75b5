"""The wheel ships the bundled schemas and an installed copy loads them without the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from deepke_llm.schema import bundled_schemas

REPO = Path(__file__).resolve().parents[1]
# What a wheel build reads; copied so the build never writes build/ or *.egg-info into the
# shared checkout (other work may run in it at the same time).
BUILD_INPUTS = ("setup.cfg", "pyproject.toml", "README.md", "deepke_llm", "kg2instruction",
                "schemas", "benchmarks", "training")


def _copy_build_inputs(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in BUILD_INPUTS:
        source = REPO / name
        if source.is_dir():
            # symlinks=True keeps deepke_llm/schemas -> ../schemas as the link it is in git
            shutil.copytree(source, dest / name, symlinks=True, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, dest / name)


def _run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env})
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_contains_schemas_and_installed_package_loads_them(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    _copy_build_inputs(source)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
          "--no-cache-dir", "-q", "-w", str(wheels)], cwd=source)
    (wheel,) = wheels.glob("deepke_llm-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"deepke_llm/schemas/{name}.json" for name in bundled_schemas()}
    expected.add("deepke_llm/schemas/schema.schema.json")
    assert len(expected) == 13
    # DeepSpeed presets and benchmark definitions ship too (symlinked into the package)
    expected |= {f"deepke_llm/training/configs/ds_{name}.json"
                 for name in ("zero2", "zero3", "zero3_offload")}
    from deepke_llm.evaluation.definitions import bundled_benchmarks

    expected |= {f"deepke_llm/benchmark_defs/{name}.json" for name in bundled_benchmarks()}
    # the definitions' JSON Schema: an installed copy validates with it (load_benchmark below)
    expected.add("deepke_llm/benchmark_defs/benchmark.schema.json")
    if (REPO / "deepke_llm" / "adapters" / "default" / "adapter_config.json").is_file():
        expected |= {"deepke_llm/adapters/default/adapter_config.json",
                     "deepke_llm/adapters/default/adapter_model.safetensors"}
    assert expected <= names, sorted(expected - names)

    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "-q",
          "--target", str(target), str(wheel)], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = ("import deepke_llm, deepke_llm.schema as s; "
             "from deepke_llm.evaluation.definitions import bundled_benchmarks, load_benchmark; "
             "from deepke_llm.training.common import resolve_deepspeed_config as ds; "
             "print(deepke_llm.__file__); print(','.join(s.bundled_schemas())); "
             "print(','.join(e.name for e in s.load_schema('conll03').entity_types)); "
             "print(','.join(bundled_benchmarks())); print(load_benchmark('conll04').task); "
             "print(ds('zero3'))")
    # cwd is an empty folder, so only PYTHONPATH (the install) can provide deepke_llm
    result = _run([sys.executable, "-c", check], cwd=elsewhere, PYTHONPATH=str(target))
    module_file, schemas, conll03, benchmarks, conll04_task, zero3 = result.stdout.split()
    assert benchmarks.split(",") == bundled_benchmarks() and conll04_task == "re"
    assert Path(zero3).resolve().is_relative_to(target.resolve())
    assert Path(module_file).resolve().is_relative_to(target.resolve())
    assert schemas.split(",") == bundled_schemas()
    assert conll03 == "person,location,organization,else"
