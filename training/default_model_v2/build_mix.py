"""Build the v2 default adapter's instruction mix (issue 15) with the project's own commands.

    python training/default_model_v2/build_mix.py --data-dir ../shared/data --out runs/default_v2/data

Every source goes through ``deepke-llm convert`` (FewRel: ``kg2instruction prepare-fewrel`` +
``build``, distant supervision as in v1) -> records, then ``deepke-llm instruct`` -> IEPile lines;
a seeded sample of each source's lines (the budgets below) is mixed and shuffled into
``train.jsonl``. ``val.jsonl`` comes from dev splits; FewFC and MSRA have none, so a seeded handful
of their train sentences is held out (and left out of training). People's Daily is not used at
all: MSRA train holds most of its test sentences, so v2 is scored on ``msra`` test instead.

Relation hard negatives (``instruct --hard-negatives``) are on for CoNLL04 and FinRE: self-
relations left out, typed absent relations always asked (CoNLL04: "live in" next to a person and
a place), and a twin with head and tail names swapped for asymmetric relations between entities
of one type (CoNLL04 kill / located in; FinRE's companies: 收购, 持股...). FewRel's entities are
untyped, where a swap could put a country in a person's place, so it gets none. FinRE's negative
types are sampled (``--neg-ratio 0.15``): 27 types in chunks of 4 would make 7 lines a sentence;
FewFC's too (``0.25``, see TRAIN).

Counts (documents, lines before and after sampling, reader/instruct problems, tokens of prompt +
answer with the default model's Gemma tokenizer when it is cached) are written to
``<out>/mix.json``; ``--record`` also writes them to benchmarks/results/default_model_v2/mix.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECORD = REPO / "benchmarks" / "results" / "default_model_v2" / "mix.json"


def _source(fmt: str, path: str, schema: str, tasks: list[str], keep: int | None,
            neg_ratio: float = 1.0, hard: bool = False, holdout: int = 0) -> dict:
    return {"format": fmt, "path": path, "schema": schema, "tasks": tasks, "keep": keep,
            "neg_ratio": neg_ratio, "hard_negatives": hard, "holdout": holdout}


# name -> what to read and how many training lines to keep (None: all). Sized for ~2.8M tokens of
# prompt + answer: issue 15's CPU budget is 6 h and v1 trained 1.14M tokens in 2.2 h on 2 cores.
# FewFC asks a quarter of its absent event types: the whole schema (5 types x 4-10 roles, every
# role answered, NAN when absent) made half of its lines longer than max_len.
TRAIN = {
    "conll03": _source("conll03", "conll2003/eng.train", "conll03", ["ner"], 3500),
    "conll04": _source("spert", "conll04/conll04_train.json", "conll04", ["ner", "re"], None,
                       hard=True),
    "msra": _source("bmes", "chinese_ner/msra_train.bmes", "msra", ["ner"], 5000, holdout=100),
    "fewfc_base": _source("fewfc", "fewfc/rearranged/train_base.json", "fewfc_base", ["ee"], 1300,
                          neg_ratio=0.25, holdout=100),
    "fewfc_trans": _source("fewfc", "fewfc/rearranged/train_trans.json", "fewfc_trans", ["ee"],
                           None, neg_ratio=0.25, holdout=50),
    "phee": _source("phee", "phee/train.json", "phee", ["ee"], 1200),
    "finre": _source("finre", "finre/train.txt", "finre", ["re"], 2400, neg_ratio=0.15,
                     hard=True),
}
VALIDATION = {  # name -> (source, file or None for the held-out sentences, lines kept)
    "conll03": ("conll03", "conll2003/eng.testa", 150),
    "conll04": ("conll04", "conll04/conll04_dev.json", 100),
    "phee": ("phee", "phee/dev.json", 100),
    "finre": ("finre", "finre/valid.txt", 100),
    "msra": ("msra", None, 100),
    "fewfc_base": ("fewfc_base", None, 100),
    "fewfc_trans": ("fewfc_trans", None, 50),
}
FEWREL_KEEP = 1000
MAX_LEN = 768  # training/default_model_v2/sft.yaml: longer lines are dropped by `train sft`


def _cli(name: str) -> list[str]:
    found = shutil.which(name)
    if found:
        return [found]
    module = "deepke_llm.cli" if name == "deepke-llm" else "deepke_llm.commands.kg2instruction"
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def _run(command: list[str], output: Path, log: list[str]) -> str:
    """Run a project command; exit 1 with its output written means input problems were reported
    (counted from its summary line), anything else stops the build."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not output.is_file():
        sys.exit(f"build_mix: {' '.join(command[:3])}... failed ({done.returncode}):\n"
                 f"{done.stderr[-2000:]}")
    summary = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    log.append(summary)
    return summary


def _read_lines(path: Path) -> list[str]:
    return [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _instruct(docs: Path, spec: dict, out: Path, seed: int, log: list[str]) -> list[str]:
    command = [*_cli("deepke-llm"), "instruct", "--schema", spec["schema"], "--input", str(docs),
               "--output", str(out), "--neg-ratio", str(spec.get("neg_ratio", 1.0)),
               "--seed", str(seed)]
    for task in spec["tasks"]:
        command += ["--task", task]
    if spec.get("hard_negatives"):
        command.append("--hard-negatives")
    _run(command, out, log)
    return _read_lines(out)


def _sample(lines: list[str], keep: int | None, seed: int) -> list[str]:
    lines = list(lines)
    random.Random(seed).shuffle(lines)
    return lines if keep is None else lines[:keep]


def build_source(name: str, spec: dict, data_dir: Path, work: Path, seed: int,
                 held_out: dict[str, Path]) -> dict:
    """Convert + instruct one training source; returns its counts and sampled lines."""
    log: list[str] = []
    docs = work / f"{name}.docs.jsonl"
    _run([*_cli("deepke-llm"), "convert", "--format", spec["format"], "--input",
          str(data_dir / spec["path"]), "--schema", spec["schema"], "--split", "train",
          "--output", str(docs)], docs, log)
    documents = _read_lines(docs)
    if spec["holdout"]:
        order = list(range(len(documents)))
        random.Random(f"{seed}-{name}").shuffle(order)
        held = set(order[:spec["holdout"]])
        held_out[name] = work / f"{name}.heldout.docs.jsonl"
        held_out[name].write_text("".join(documents[i] + "\n" for i in sorted(held)),
                                  encoding="utf-8")
        documents = [d for i, d in enumerate(documents) if i not in held]
        docs = work / f"{name}.train.docs.jsonl"
        docs.write_text("".join(d + "\n" for d in documents), encoding="utf-8")
    lines = _instruct(docs, spec, work / f"{name}.lines.jsonl", seed, log)
    kept = _sample(lines, spec["keep"], seed)
    return {"documents": len(documents), "lines": len(lines), "kept": len(kept),
            "twins": sum(1 for x in lines if '#swap"' in x[:200]), "commands": log,
            "_lines": kept}


def build_fewrel(data_dir: Path, work: Path, seed: int) -> dict:
    """FewRel sentences linked to the FewRel KB by kg2instruction, as in v1."""
    log: list[str] = []
    inputs = work / "fewrel_inputs"
    _run([*_cli("kg2instruction"), "prepare-fewrel", "--fewrel",
          str(data_dir / "fewrel/fewrel_val_wiki_8rel.json"), "--relations",
          str(data_dir / "fewrel/relations.json"), "--output-dir", str(inputs)],
         inputs / "corpus.jsonl", log)
    docs = work / "fewrel.docs.jsonl"
    _run([*_cli("kg2instruction"), "build", "--kb-entities", str(inputs / "kb_entities.jsonl"),
          "--kb-triples", str(inputs / "kb_triples.tsv"), "--relations",
          str(inputs / "relations.json"), "--corpus", str(inputs / "corpus.jsonl"),
          "--output", str(docs)], docs, log)
    with_relations = work / "fewrel.related.docs.jsonl"
    related = [x for x in _read_lines(docs) if json.loads(x).get("relations")]
    with_relations.write_text("".join(x + "\n" for x in related), encoding="utf-8")
    spec = {"schema": "fewrel", "tasks": ["re"]}
    lines = _instruct(with_relations, spec, work / "fewrel.lines.jsonl", seed, log)
    kept = _sample(lines, FEWREL_KEEP, seed)
    return {"documents": len(related), "lines": len(lines), "kept": len(kept), "twins": 0,
            "commands": log, "_lines": kept}


def build_validation(data_dir: Path, work: Path, seed: int, held_out: dict[str, Path]) -> dict:
    """Validation lines: dev splits, or the held-out train sentences (whole schema asked)."""
    lines: list[str] = []
    counts: dict[str, int] = {}
    for name, (source, path, keep) in VALIDATION.items():
        spec = {**TRAIN[source], "neg_ratio": 1.0, "hard_negatives": False}
        log: list[str] = []
        if path is None:
            docs = held_out[source]
        else:
            docs = work / f"{name}.dev.docs.jsonl"
            _run([*_cli("deepke-llm"), "convert", "--format", spec["format"], "--input",
                  str(data_dir / path), "--schema", spec["schema"], "--split", "dev",
                  "--output", str(docs)], docs, log)
        kept = _sample(_instruct(docs, spec, work / f"{name}.val.jsonl", seed, log), keep, seed)
        counts[name] = len(kept)
        lines += kept
    return {"lines": lines, "per_source": counts}


@functools.cache
def _tokenizer():
    try:
        from transformers import AutoTokenizer

        from deepke_llm.default_model import default_model_path

        return AutoTokenizer.from_pretrained(str(default_model_path()))
    except Exception as exc:  # noqa: BLE001 - any failure only means no token counts
        print(f"build_mix: no token counts ({exc})", file=sys.stderr)
        return None


def count_tokens(lines: list[str]) -> dict | None:
    """Prompt + answer tokens of the lines with the default model's tokenizer (None when the
    default model is not cached: the counts are then lines only)."""
    tokenizer = _tokenizer()
    if tokenizer is None or not lines:
        return None
    records = [json.loads(x) for x in lines]
    prompts = tokenizer([r["instruction"] for r in records], add_special_tokens=False)["input_ids"]
    answers = tokenizer([r["output"] for r in records], add_special_tokens=False)["input_ids"]
    sizes = [len(p) + len(a) for p, a in zip(prompts, answers, strict=True)]
    return {"total": sum(sizes),
            "answer": sum(map(len, answers)), "mean": round(sum(sizes) / max(len(sizes), 1), 1),
            f"over_{MAX_LEN}": sum(1 for n in sizes if n > MAX_LEN)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="runs/default_v2/data")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--record", action="store_true",
                        help=f"also write the counts to {RECORD.relative_to(REPO)}")
    args = parser.parse_args()
    started = time.time()
    data_dir, out = Path(args.data_dir).resolve(), Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    held_out: dict[str, Path] = {}
    sources = {name: build_source(name, spec, data_dir, work, args.seed, held_out)
               for name, spec in TRAIN.items()}
    sources["fewrel"] = build_fewrel(data_dir, work, args.seed)
    train = []
    for counts in sources.values():
        counts["tokens"] = count_tokens(counts["_lines"])
        train += counts.pop("_lines")
    random.Random(args.seed).shuffle(train)
    validation = build_validation(data_dir, work, args.seed, held_out)
    (out / "train.jsonl").write_text("".join(x + "\n" for x in train), encoding="utf-8")
    (out / "val.jsonl").write_text("".join(x + "\n" for x in validation["lines"]),
                                   encoding="utf-8")
    tasks: dict[str, int] = {}
    for line in train:
        task = json.loads(line)["task"]
        tasks[task] = tasks.get(task, 0) + 1
    summary = {
        "command": "python training/default_model_v2/build_mix.py --data-dir DATA --out "
                   f"{args.out} --seed {args.seed}",
        "seed": args.seed, "train_lines": len(train), "per_task": tasks,
        "per_source": {name: {k: v for k, v in c.items()} for name, c in sources.items()},
        "val_lines": len(validation["lines"]), "val_per_source": validation["per_source"],
        "tokens": count_tokens(train), "tokenizer": "gemma-3-270m, the default model's",
        "max_len": MAX_LEN, "build_seconds": round(time.time() - started, 1),
    }
    text = json.dumps(summary, ensure_ascii=False, indent=1) + "\n"
    (out / "mix.json").write_text(text, encoding="utf-8")
    if args.record:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
