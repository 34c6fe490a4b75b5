"""Fuzz parse + ground: hostile and mutated model outputs never crash, misplace, mistype or stall.

Seeded random model outputs go through :func:`deepke_llm.extractor.parse_output` for NER, RE and EE
in both prompt styles (``iepile``, ``knowlm``) over several bundled schemas (CoNLL-2003, People's
Daily, ACE05, CoNLL04, DuEE). The outputs are valid answers rendered from random records, then
truncated, mutated, given Chinese punctuation, huge numbers, NaN/Infinity, bracket runs, deep
nesting, lone surrogates and NUL, or blown up to a megabyte, plus random unicode and token soup.

Invariants per case: no exception; every grounded part satisfies ``text[start:end] == part.text``;
record types and roles are in the schema; every record and error line serialises as UTF-8 JSON;
no case takes over 2 s (a case over the limit is timed a second time, and counts only if slow
both times: the machine is shared). A second part times grounding a mention that occurs 100,000
times, per task (best of five; goal: under 1 s). Counts go to
``benchmarks/results/reliability/fuzz.{json,md}`` (written atomically).

Example::

    python benchmarks/reliability/fuzz.py                       # 100,000 cases
    python benchmarks/reliability/fuzz.py --cases 3000 --output-dir /tmp/fuzz
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deepke_llm.extractor import parse_output  # noqa: E402
from deepke_llm.grounding import (  # noqa: E402
    GroundingOptions,
    ground_entities,
    ground_events,
    ground_relations,
)
from deepke_llm.prompts.styles import get_style  # noqa: E402
from deepke_llm.records import Argument, Document, Entity, Event, Relation, Span  # noqa: E402
from deepke_llm.schema import Schema, load_schema  # noqa: E402
from deepke_llm.tasks import get_task  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "reliability"
CASE_LIMIT_SECONDS = 2.0
SCALING_OCCURRENCES = 100_000
SCALING_LIMIT_SECONDS = 1.0

TEXTS = {
    "en": [
        "Robert Allenby ( Australia ) beat Japan 's team in Sydney on Sunday .",
        "John Smith, who works for Acme Corp. in Boston, met Mary at the U.S. embassy.",
        "Rebels attacked the town of Homs on Monday; troops fired back and 12 people died.",
        "The plant is in Galveston. Its owner, Initech, laid off 300 workers in 2009.",
        "ＩＢＭ said \u00a0Tokyo-based Sony Corp. will buy the unit for $1.2 billion.",
        "Café owner José Müller 👩‍🔬 visited Zürich\u200b and São Paulo; NUL\x00 here.",
        " ".join(["Bob met Ann in Paris."] * 300),  # mentions occurring hundreds of times
    ],
    "zh": [
        "张三在北京工作。李四说张三住在上海。",
        "中国外交部发言人王毅表示，美国应当停止干涉。",
        "昨天，甲公司宣布收购乙公司，交易金额为十亿元；员工（约三百人）将被裁员。",
        "据新华社报道，“华为”于2019年在深圳发布了新手机，售价５０００元！",
        "".join(["王五在杭州开会，"] * 200),
    ],
}
CONFIGS = [("ner", "conll03"), ("ner", "peoples_daily"), ("ner", "ace05"), ("re", "conll04"),
           ("re", "ace05"), ("ee", "ace05"), ("ee", "duee")]
STYLES = ("iepile", "knowlm")
# category: weight (megabyte outputs are slow to build and parse: few, but every config gets some)
CATEGORIES = {"valid": 10, "truncated": 14, "mutated": 22, "chinese_punctuation": 8,
              "huge_numbers": 8, "bracket_runs": 8, "deep_nesting": 4, "unicode": 10,
              "random_tokens": 14, "megabyte": 0.25}
HOSTILE = ['{', '}', '[', ']', '"', "'", ',', ':', '：', '，', '【', '】', '“', '”', '‘', '’', '「', '」',
           '\\', '\\"', '\\u', '\\ud800', '\ud800', '\udfff', '\x00', '\n', '(', ')', '（', '）', '#',
           ';', '；', 'NAN', 'NaN', 'null', 'Infinity', '```', '```json\n', '😀', '\u0301', '\u202e',
           '\ufeff', '\uffff', ' ']
NUMBERS = ["9" * 5000, "-" + "7" * 4301, "1e999", "-1e999", "1" + "0" * 400 + ".5", "1e-999", "NaN",
           "Infinity", "-Infinity", "-0", "0.1e1"]
BRACKET_UNITS = ["{", "[", '{"', '["', "[{ 1}", "{'", "'#", "]", "}", '{"a": ', '"person": [', "(",
                 "（", '{"a": [{"b": ', '"', "[{", "{[", ")("]


@dataclass(frozen=True)
class Config:
    task: str
    schema_name: str
    style: str
    schema: Schema

    @property
    def name(self) -> str:
        return f"{self.task}/{self.schema_name}/{self.style}"


def configs() -> list[Config]:
    return [Config(task, name, style, load_schema(name)) for task, name in CONFIGS for style in STYLES]


def _mention(rng: random.Random, text: str) -> str:
    """A stretch of the text (usually) or an invented name."""
    if rng.random() < 0.15:
        return rng.choice(["Nobody", "无名氏", "Acme Inc", "x", "  ", "NAN", "", "张三，李四"])
    start = rng.randrange(len(text))
    return text[start:start + rng.randint(1, 14)].strip() or "Bob"


def valid_answer(rng: random.Random, config: Config, text: str) -> str:
    """What a well-behaved model answers: random records rendered in the config's style."""
    task, schema = get_task(config.task), config.schema
    types = schema.types_for(config.task)
    records: list[Any] = []
    for _ in range(rng.randint(0, 5)):
        kind = rng.choice(types)
        if config.task == "ner":
            records.append(Entity(kind.name, _mention(rng, text)))
        elif config.task == "re":
            records.append(Relation(kind.name, Entity(kind.head_types[0], _mention(rng, text)),
                                    Entity(kind.tail_types[0], _mention(rng, text))))
        else:
            roles = rng.sample(kind.roles, k=min(len(kind.roles), rng.randint(0, 3)))
            records.append(Event(kind.name, Span(_mention(rng, text)),
                                 tuple(Argument(r.name, _mention(rng, text)) for r in roles)))
    document = task.with_records(Document("fuzz", text, schema.language), records)
    return get_style(config.style).target(task, document, schema, schema.language)


def _edit(rng: random.Random, output: str) -> str:
    at = rng.randint(0, len(output))
    roll = rng.random()
    if roll < 0.5:
        return output[:at] + rng.choice(HOSTILE) + output[at:]
    if roll < 0.75:
        return output[:at] + output[at + rng.randint(1, 8):]
    return output[:at] + output[max(0, at - 20):at] + output[at:]  # a stutter


def make_output(rng: random.Random, category: str, config: Config, text: str) -> str:
    """One model output of ``category``."""
    valid = valid_answer(rng, config, text)
    if category == "valid":
        return valid
    if category == "truncated":
        return valid[:rng.randint(0, len(valid))]
    if category == "mutated":
        for _ in range(rng.randint(1, 8)):
            valid = _edit(rng, valid)
        return valid
    if category == "chinese_punctuation":
        table = {":": "：", ",": "，", "[": "【", "]": "】", "{": "｛", "}": "｝", '"': rng.choice("“”"),
                 "(": "（", ")": "）", ";": "；"}
        return "".join(table[ch] if ch in table and rng.random() < 0.5 else ch for ch in valid)
    if category == "huge_numbers":
        number = rng.choice(NUMBERS)
        quote = valid.find('"', rng.randint(0, len(valid)))
        if quote >= 0 and rng.random() < 0.7:  # a number where a string value was
            close = valid.find('"', quote + 1)
            return valid[:quote] + number + valid[close + 1:] if close > 0 else valid + number
        return valid.replace(",", f", {number},", 1) if rng.random() < 0.5 else f"({number},{number})"
    if category == "bracket_runs":
        run = rng.choice(BRACKET_UNITS) * int(10 ** rng.uniform(0, 5))
        return rng.choice([run, valid + run, run + valid, valid[:len(valid) // 2] + run])
    if category == "deep_nesting":
        depth = int(10 ** rng.uniform(2, 4.7))
        inner = "[" * depth + json.dumps(_mention(rng, text)) + "]" * rng.choice([depth, 0, depth // 2])
        return valid.replace("[", "[" + inner + ", ", 1) if "[" in valid else inner
    if category == "unicode":
        return "".join(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0x2FFF),
                                       rng.randint(0x4E00, 0x9FFF), rng.randint(0xD800, 0xDFFF),
                                       rng.randint(0xE000, 0xFFFF), rng.randint(0x10000, 0x10FFFF), 0]))
                       for _ in range(rng.randint(0, 300)))
    if category == "random_tokens":
        words = [t.display(config.schema.language, config.schema.language)
                 for t in config.schema.types_for(config.task)]
        pool = HOSTILE + words + ['"subject"', '"object"', '"trigger"', '"arguments"', "#", "\n"]
        return "".join(rng.choice(pool + [_mention(rng, text)]) for _ in range(rng.randint(0, 120)))
    return megabyte_output(rng, valid, text)


def megabyte_output(rng: random.Random, valid: str, text: str) -> str:
    """About a megabyte: junk around an answer, one huge mention, a huge list, bracket soup."""
    size = 1 << 20
    variant = rng.randrange(6)
    if variant == 0:
        return valid + "x" * size if rng.random() < 0.5 else "x" * size + valid
    if variant == 1:
        return valid.replace('"', '"' + "名" * size, 1) if '"' in valid else "(" + "名" * size + ")"
    if variant == 2:  # a repetition loop cut off by the token limit
        item = rng.choice(['"Bob", ', '{"subject": "Bob", "object": "Ann"}, ', "(Bob,person)\n"])
        return (valid[:valid.find("[") + 1] + item * (size // len(item)))[:size]
    if variant == 3:  # many distinct names, few of them in the text
        return json.dumps({"person": [f"{_mention(rng, text)}{i}" for i in range(size // 12)]})
    if variant == 4:
        return "".join(rng.choice("{}[]\",:'“”，：\\ a") for _ in range(size))
    return "".join(rng.choice(HOSTILE) for _ in range(size // 2))


def parts(record: Any) -> list[Any]:
    return list(record.mentions())


def violations(config: Config, text: str, records: Any, errors: Any) -> list[str]:
    """Which invariants one parse broke (empty when none)."""
    if not isinstance(records, list) or not isinstance(errors, list):
        return ["shape: parse_output did not return (list, list)"]
    found = []
    kinds = {t.name: t for t in config.schema.types_for(config.task)}
    for record in records:
        for part in parts(record):
            if part.start is not None and not (0 <= part.start <= part.end <= len(text)
                                               and text[part.start:part.end] == part.text):
                found.append(f"offset: {part.text[:40]!r} at {part.start}:{part.end}")
        kind = kinds.get(record.type)
        if kind is None:
            found.append(f"type: {record.type!r} not in the schema")
        elif isinstance(record, Relation) and (record.head.type not in (*kind.head_types, "")
                                               or record.tail.type not in (*kind.tail_types, "")):
            found.append(f"type: {record.head.type!r}/{record.tail.type!r} for {record.type!r}")
        elif isinstance(record, Event):
            roles = {r.name for r in kind.roles}
            found += [f"role: {a.role!r} not a role of {record.type!r}" for a in record.arguments
                      if a.role not in roles]
        try:
            json.dumps(record.to_dict(), ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            found.append(f"utf8: record does not serialise ({type(exc).__name__})")
    try:
        if not all(isinstance(e, str) for e in errors):
            found.append("shape: an error is not a string")
        json.dumps(errors, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        found.append(f"utf8: errors do not serialise ({type(exc).__name__})")
    return found


def _timed_parse(config: Config, output: str, text: str, trim: bool) -> tuple[Any, float]:
    started = time.perf_counter()
    result = parse_output(get_task(config.task), output, config.schema, text,
                          config.schema.language, get_style(config.style),
                          GroundingOptions(trim_punctuation=trim))
    return result, time.perf_counter() - started


def run(cases: int = 100_000, seed: int = 0) -> dict[str, Any]:
    """Run ``cases`` fuzz cases (spread over every config); counts, violations and timings."""
    rng = random.Random(seed)
    all_configs = configs()
    names, weights = list(CATEGORIES), list(CATEGORIES.values())
    by_category: Counter[str] = Counter()
    by_config: Counter[str] = Counter()
    broken: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    slowest: dict[str, Any] = {"seconds": 0.0}
    started = time.perf_counter()
    for number in range(cases):
        config = all_configs[number % len(all_configs)]
        category = rng.choices(names, weights)[0]
        text = rng.choice(TEXTS[config.schema.language])
        trim = rng.random() < 0.7
        output = make_output(rng, category, config, text)
        by_category[category] += 1
        by_config[config.name] += 1
        try:
            (records, errors), seconds = _timed_parse(config, output, text, trim)
            found = violations(config, text, records, errors)
            if seconds > CASE_LIMIT_SECONDS:  # timed again: a busy machine is not a slow case
                seconds = min(seconds, _timed_parse(config, output, text, trim)[1])
                found += [f"slow: {seconds:.2f} s"] if seconds > CASE_LIMIT_SECONDS else []
        except Exception as exc:  # noqa: BLE001 - an exception is what the fuzz looks for
            seconds, found = 0.0, [f"exception: {type(exc).__name__}: {str(exc)[:200]}"]
        if seconds > slowest["seconds"]:
            slowest = {"seconds": seconds, "category": category, "config": config.name,
                       "output_chars": len(output), "output_start": output[:80].encode(
                           "utf-8", "backslashreplace").decode("ascii", "backslashreplace")}
        for problem in found:
            broken[problem.split(":")[0]] += 1
            if len(examples) < 20:
                examples.append({"case": number, "category": category, "config": config.name,
                                 "problem": problem, "output_start": ascii(output[:200])})
    return {"seed": seed, "cases": cases, "cases_per_category": dict(sorted(by_category.items())),
            "cases_per_config": dict(by_config), "violations": sum(broken.values()),
            "violations_per_kind": {k: broken.get(k, 0) for k in
                                    ("exception", "offset", "type", "role", "utf8", "shape", "slow")},
            "violation_examples": examples, "case_limit_seconds": CASE_LIMIT_SECONDS,
            "slowest_case": slowest, "total_seconds": time.perf_counter() - started}


def grounding_scaling(occurrences: int = SCALING_OCCURRENCES) -> dict[str, float]:
    """Seconds to ground a mention occurring ``occurrences`` times, per task."""
    text = " ".join(["Bob met Ann."] * occurrences)
    runs = {
        # the second entity is checked against the 100,000 spans the first took
        "ner": lambda: ground_entities(text, [Entity("person", "Bob"), Entity("location", "Bob")]),
        "re": lambda: ground_relations(text, [Relation("knows", Entity("person", "Bob"),
                                                       Entity("person", "Ann."))]),
        "ee": lambda: ground_events(text, [Event("meet", Span("met"), (Argument("a", "Bob"),
                                                                       Argument("b", "Ann.")))]),
    }
    seconds = {}
    for task, ground in runs.items():
        best = float("inf")
        for _ in range(5):  # best of five: the machine is shared
            gc.collect()
            started = time.perf_counter()
            ground()
            best = min(best, time.perf_counter() - started)
        seconds[task] = best
    return seconds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="Fuzz cases in all.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random outputs.")
    parser.add_argument("--output-dir", default=str(RESULTS), help="Where fuzz.{json,md} go.")
    args = parser.parse_args(argv)
    scaling = grounding_scaling()  # first, on a fresh heap
    result = run(args.cases, args.seed)
    result["grounding_scaling"] = {
        "occurrences": SCALING_OCCURRENCES, "seconds": scaling, "limit_seconds": SCALING_LIMIT_SECONDS,
        "within_limit": all(s <= SCALING_LIMIT_SECONDS for s in scaling.values())}
    result["machine"] = {"python": platform.python_version(), "platform": platform.platform(),
                         "cpus": os.cpu_count()}
    write(Path(args.output_dir), result)
    print(json.dumps({k: result[k] for k in ("cases", "violations", "total_seconds")}
                     | {"slowest_s": result["slowest_case"]["seconds"], "scaling_s": scaling}))
    if result["violations"]:
        raise SystemExit(f"{result['violations']} violations: see {args.output_dir}/fuzz.json")
    return result


def _write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=path.name,
                                     suffix=".tmp", delete=False) as handle:
        handle.write(text)
    os.replace(handle.name, path)


def write(directory: Path, result: dict[str, Any]) -> None:
    """``fuzz.json`` (everything) and ``fuzz.md`` (a short table), each replaced atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomically(directory / "fuzz.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    rows = [f"| {name} | {count:,} |" for name, count in result["cases_per_category"].items()]
    kinds = ", ".join(f"{kind} {count}" for kind, count in result["violations_per_kind"].items())
    slowest, scaling = result["slowest_case"], result["grounding_scaling"]
    lines = [
        "# Fuzzing parse + ground", "",
        f"{result['cases']:,} seeded random model outputs (seed {result['seed']}) through "
        f"`parse_output` for NER, RE and EE in the iepile and knowlm styles over "
        f"{len(result['cases_per_config'])} task/schema/style configurations, on "
        f"{result['machine']['platform']}, Python {result['machine']['python']}, "
        f"{result['machine']['cpus']} CPUs. Written by `python benchmarks/reliability/fuzz.py`.", "",
        "| category | cases |", "|---|---:|", *rows, "",
        f"Violations: **{result['violations']}** ({kinds}). Slowest case: "
        f"{slowest['seconds']:.3f} s ({slowest.get('category')}, {slowest.get('config')}, "
        f"{slowest.get('output_chars', 0):,} characters; limit {result['case_limit_seconds']:.0f} s). "
        f"Total: {result['total_seconds']:.0f} s.", "",
        f"Grounding a mention that occurs {scaling['occurrences']:,} times (best of 5): "
        + ", ".join(f"{task.upper()} {s:.3f} s" for task, s in scaling["seconds"].items())
        + f"; within {scaling['limit_seconds']:.0f} s: "
        f"**{'yes' if scaling['within_limit'] else 'NO'}**.", ""]
    _write_atomically(directory / "fuzz.md", "\n".join(lines))


if __name__ == "__main__":
    main()
