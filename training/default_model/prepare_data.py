"""Build the default adapter's training and validation data from ../shared/data.

Every step is a deepke-llm library call (the same code as `deepke-llm convert`, `kg2instruction
build` and `deepke-llm instruct`): gold records -> IEPile instruction lines, subsampled per source
to fit a CPU budget, mixed and shuffled with a fixed seed.

    python training/default_model/prepare_data.py --data-dir ../shared/data --out runs/default/data
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

from deepke_llm.datasets import read_dataset
from deepke_llm.instructions import documents_to_instructions
from deepke_llm.io import write_jsonl_atomic
from deepke_llm.records import read_documents

# source -> (reader format, file, schema, tasks, training lines kept); budgets sized so one pass
# is ~2.5M tokens with the Gemma tokenizer (~2.5 h of LoRA on 2 CPU cores, see README)
SOURCES = {
    "conll03": ("conll03", "conll2003/eng.train", "conll03", ["ner"], 12000),
    "conll04": ("spert", "conll04/conll04_train.json", "conll04", ["ner", "re"], 4000),
    "peoples_daily": ("bio", "chinese_ner/peoples_daily.dev", "peoples_daily", ["ner"], 2318),
}
VALIDATION = {
    "conll03": ("conll03", "conll2003/eng.testa", "conll03", ["ner"], 150),
    "conll04": ("spert", "conll04/conll04_dev.json", "conll04", ["ner", "re"], 100),
}
FEWREL_LINES = 1500
# Stage 2 continues the stage-1 adapter (init_adapter) where stage 1 was thin: CoNLL04 relations
# (stage 1 saw ~500 of them), with some of every other source so nothing is forgotten.
STAGE2 = {
    "conll04_re": ("spert", "conll04/conll04_train.json", "conll04", ["re"], 922, 2),
    "conll04_ner": ("spert", "conll04/conll04_train.json", "conll04", ["ner"], 922, 1),
    "conll03": ("conll03", "conll2003/eng.train", "conll03", ["ner"], 1500, 1),
    "peoples_daily": ("bio", "chinese_ner/peoples_daily.dev", "peoples_daily", ["ner"], 400, 1),
}
STAGE2_FEWREL_LINES = 200


def instruction_lines(data_dir: Path, spec, split: str, seed: int, neg_ratio: float) -> list[dict]:
    fmt, rel_path, schema, tasks, keep = spec
    documents = list(read_dataset(fmt, str(data_dir / rel_path), schema=schema, split=split))
    lines = list(documents_to_instructions(documents, schema, tasks, neg_ratio=neg_ratio, seed=seed))
    random.Random(seed).shuffle(lines)
    return lines[:keep]


def fewrel_lines(data_dir: Path, work: Path, seed: int) -> list[dict]:
    """FewRel sentences linked to the FewRel KB by kg2instruction (distant supervision)."""
    inputs = work / "fewrel_inputs"
    subprocess.run([sys.executable, "-m", "kg2instruction", "prepare-fewrel",
                    "--fewrel", str(data_dir / "fewrel/fewrel_val_wiki_8rel.json"),
                    "--relations", str(data_dir / "fewrel/relations.json"),
                    "--output-dir", str(inputs)], check=True)
    docs = work / "fewrel.docs.jsonl"
    subprocess.run([sys.executable, "-m", "kg2instruction", "build",
                    "--kb-entities", str(inputs / "kb_entities.jsonl"),
                    "--kb-triples", str(inputs / "kb_triples.tsv"),
                    "--relations", str(inputs / "relations.json"),
                    "--corpus", str(inputs / "corpus.jsonl"), "--output", str(docs)], check=True)
    documents = [d for d in read_documents(str(docs)) if d.relations]
    lines = list(documents_to_instructions(documents, "fewrel", "re", seed=seed))
    random.Random(seed).shuffle(lines)
    return lines[:FEWREL_LINES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="runs/default/data")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--neg-ratio", type=float, default=1.0)
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply every budget (0.1: a quick run).")
    parser.add_argument("--stage", type=int, choices=(1, 2), default=1,
                        help="1: train.jsonl + val.jsonl; 2: stage2_train.jsonl (continued training)")
    args = parser.parse_args()
    if args.stage == 2:
        return stage2(Path(args.data_dir), Path(args.out), args.seed + 1)
    data_dir, out = Path(args.data_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, counts = [], {}
    for name, spec in SOURCES.items():
        spec = (*spec[:4], int(spec[4] * args.scale))
        lines = instruction_lines(data_dir, spec, "train", args.seed, args.neg_ratio)
        counts[name] = len(lines)
        train += lines
    lines = fewrel_lines(data_dir, out, args.seed)[: int(FEWREL_LINES * args.scale)]
    counts["fewrel"] = len(lines)
    train += lines
    random.Random(args.seed).shuffle(train)
    val = []
    for spec in VALIDATION.values():
        val += instruction_lines(data_dir, spec, "dev", args.seed, 1.0)
    write_jsonl_atomic(out / "train.jsonl", train)
    write_jsonl_atomic(out / "val.jsonl", val)
    summary = {"train_lines": len(train), "per_source": counts, "val_lines": len(val),
               "seed": args.seed, "neg_ratio": args.neg_ratio, "scale": args.scale}
    (out / "data_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


def stage2(data_dir: Path, out: Path, seed: int) -> None:
    """Write out/stage2_train.jsonl (see STAGE2); a new seed draws other examples than stage 1."""
    out.mkdir(parents=True, exist_ok=True)
    train, counts = [], {}
    for name, (*spec, repeats) in STAGE2.items():
        lines = instruction_lines(data_dir, tuple(spec), "train", seed, 1.0)
        counts[name] = len(lines) * repeats
        train += lines * repeats
    lines = fewrel_lines(data_dir, out, seed)[:STAGE2_FEWREL_LINES]
    counts["fewrel"] = len(lines)
    train += lines
    random.Random(seed).shuffle(train)
    write_jsonl_atomic(out / "stage2_train.jsonl", train)
    summary = {"train_lines": len(train), "per_source": counts, "seed": seed}
    (out / "stage2_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
