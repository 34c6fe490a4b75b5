"""A short run of the parse + ground fuzz benchmark (benchmarks/reliability/fuzz.py): hostile and
mutated model outputs never raise, misplace a span, leave the schema or break a UTF-8 writer."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fuzz_module():
    if "fuzz_benchmark" not in sys.modules:  # registered first: its dataclass looks itself up
        path = REPO / "benchmarks" / "reliability" / "fuzz.py"
        spec = importlib.util.spec_from_file_location("fuzz_benchmark", path)
        sys.modules["fuzz_benchmark"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["fuzz_benchmark"])
    return sys.modules["fuzz_benchmark"]


def test_a_few_thousand_fuzzed_outputs_keep_every_invariant():
    fuzz = _fuzz_module()
    result = fuzz.run(cases=3000, seed=20261202)
    kinds = result["violations_per_kind"]
    # every invariant but time (a test does not assert timings; the benchmark reports them)
    assert {kind: count for kind, count in kinds.items() if kind != "slow"} == {
        "exception": 0, "offset": 0, "type": 0, "role": 0, "utf8": 0, "shape": 0}, \
        result["violation_examples"]
    assert set(result["cases_per_category"]) == set(fuzz.CATEGORIES)
    assert len(result["cases_per_config"]) == len(fuzz.CONFIGS) * len(fuzz.STYLES)


def test_the_fuzz_checks_catch_what_they_look_for():
    """The invariant checks themselves: a misplaced span, a foreign type, an unwritable record."""
    from deepke_llm.records import Entity

    fuzz = _fuzz_module()
    config = next(c for c in fuzz.configs() if c.task == "ner" and c.schema_name == "conll03")
    text = "Bob met Ann."
    problems = fuzz.violations(config, text, [Entity("person", "Bob", 0, 3)], ["fine"])
    assert problems == []
    problems = fuzz.violations(config, text, [Entity("person", "Ann", 0, 3), Entity("animal", "Bob"),
                                              Entity("person", "B\ud800b")], ["x\udfff"])
    assert [p.split(":")[0] for p in problems] == ["offset", "type", "utf8", "utf8"]


def test_results_are_written_atomically_as_json_and_markdown(tmp_path):
    fuzz = _fuzz_module()
    result = fuzz.run(cases=40, seed=1)
    result["grounding_scaling"] = {"occurrences": 10, "seconds": {"ner": 0.1, "re": 0.1, "ee": 0.1},
                                   "limit_seconds": 1.0, "within_limit": True}
    result["machine"] = {"python": "3", "platform": "test", "cpus": 1}
    fuzz.write(tmp_path, result)
    assert json.loads((tmp_path / "fuzz.json").read_text(encoding="utf-8"))["cases"] == 40
    assert "Violations: **0**" in (tmp_path / "fuzz.md").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fuzz.json", "fuzz.md"]  # no temp files left
