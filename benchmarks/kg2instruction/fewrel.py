"""Measure KG2Instruction on FewRel: each sentence's (head, relation, tail) is gold.

Runs the same three steps a user runs — ``kg2instruction prepare-fewrel``, ``kg2instruction
build``, scoring (kg2instruction.evaluate) — and reports triple recall (both entities linked to
the right ids), precision among produced triples of the covered relations, and linking accuracy
on gold mentions whose alias names several KB entities. Nothing here knows the relations or
entities: point --fewrel/--relations at held-out FewRel relations and, without --kb-entities /
--kb-triples, the KB is built from the sentences alone.

    python benchmarks/kg2instruction/fewrel.py                      # the shipped 8 relations
    python benchmarks/kg2instruction/fewrel.py --fewrel held_out.json --relations pid2name.json \\
        --no-shipped-kb --name fewrel_heldout
Writes benchmarks/results/kg2instruction/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("DEEPKE_DATA", REPO.parent / "shared" / "data")) / "fewrel"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fewrel", default=str(DATA / "fewrel_val_wiki_8rel.json"))
    parser.add_argument("--relations", default=str(DATA / "relations.json"))
    parser.add_argument("--kb-entities", default=str(DATA / "kb_entities.jsonl"))
    parser.add_argument("--kb-triples", default=str(DATA / "kb_triples.tsv"))
    parser.add_argument("--no-shipped-kb", action="store_true",
                        help="Build the KB from the FewRel sentences only.")
    parser.add_argument("--splitter", default="rules")
    parser.add_argument("--context", default="tfidf")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--name", default="fewrel")
    parser.add_argument("--output-dir", default=str(REPO / "benchmarks" / "results" /
                                                    "kg2instruction"))
    args = parser.parse_args()

    from kg2instruction.build import build
    from kg2instruction.evaluate import score_documents
    from kg2instruction.fewrel import prepare_fewrel
    from kg2instruction.pipeline import BuildConfig

    kb_entities = None if args.no_shipped_kb else args.kb_entities
    kb_triples = None if args.no_shipped_kb else args.kb_triples
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        prepared = prepare_fewrel(args.fewrel, work, args.relations, kb_entities, kb_triples)
        config = BuildConfig(splitter=args.splitter, context=args.context, workers=args.workers)
        started = time.monotonic()
        stats = build(work / "kb_entities.jsonl", work / "kb_triples.tsv",
                      work / "relations.json", work / "corpus.jsonl", work / "docs.jsonl",
                      config=config)
        seconds = time.monotonic() - started
        scores = score_documents(work / "docs.jsonl", work / "gold.jsonl",
                                 work / "kb_entities.jsonl", work / "kb_triples.tsv")
    commands = [
        "kg2instruction prepare-fewrel --fewrel FEWREL.json --relations RELATIONS.json"
        + ("" if args.no_shipped_kb else " --kb-entities KB_ENTITIES.jsonl "
           "--kb-triples KB_TRIPLES.tsv") + " --output-dir IN",
        "kg2instruction build --kb-entities IN/kb_entities.jsonl --kb-triples IN/kb_triples.tsv "
        f"--relations IN/relations.json --corpus IN/corpus.jsonl --output IN/docs.jsonl "
        f"--splitter {args.splitter} --context {args.context} --workers {args.workers}",
    ]
    result = {
        "inputs": {"fewrel": os.path.relpath(args.fewrel, REPO),
                   "relations": os.path.relpath(args.relations, REPO),
                   "shipped_kb": not args.no_shipped_kb},
        "prepared": {k: v for k, v in prepared.items() if k != "input_errors"},
        "scores": scores,
        "pipeline_stats": {k: v for k, v in stats.items() if k not in ("timing",)},
        "seconds": round(seconds, 2),
        "commands": commands,
        "reproduce": "python benchmarks/kg2instruction/fewrel.py " + " ".join(sys.argv[1:]),
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def markdown(result: dict) -> str:
    s, c = result["scores"], result["scores"]["counts"]
    lines = [
        f"# KG2Instruction on FewRel ({result['inputs']['fewrel']})", "",
        f"{result['prepared']['sentences']} sentences, {result['prepared']['relations']} relations, "
        f"KB of {result['prepared']['entities']} entities / {result['prepared']['triples']} "
        f"triples ({'shipped KB completed from the sentences' if result['inputs']['shipped_kb'] else 'built from the sentences'}); "
        f"pipeline {result['seconds']} s.", "",
        "| measure | value | counts |", "|---|---:|---|",
        f"| gold triple recall (both ids right) | {_pct(s['recall'])} | "
        f"{c['recalled']} / {c['gold_triples']} |",
        f"| precision (covered relations) | {_pct(s['precision'])} | "
        f"{c['correct']} / {c['produced']} |",
        f"| linking accuracy, ambiguous aliases | {_pct(s['ambiguous_alias_accuracy'])} | "
        f"{c['ambiguous_correct']} / {c['ambiguous_mentions']} |",
    ]
    if "ambiguous_alias_accuracy_distinguishable" in s:
        lines += [
            f"| ... where the KB distinguishes the candidates | "
            f"{_pct(s['ambiguous_alias_accuracy_distinguishable'])} | "
            f"{c.get('ambiguous_distinguishable_correct', 0)} / "
            f"{c.get('ambiguous_distinguishable', 0)} |",
            f"| ... where another candidate has the same aliases and neighbourhood | "
            f"{_pct(s['ambiguous_alias_accuracy_indistinguishable'])} | "
            f"{c.get('ambiguous_indistinguishable_correct', 0)} / "
            f"{c.get('ambiguous_indistinguishable', 0)} |"]
    lines += [
        f"| linking accuracy, all gold mentions | {_pct(s['mention_linking_accuracy'])} | "
        f"{c['mentions_correct']} / {c['gold_mentions']} |", "",
        "Precision counts only each sentence's one FewRel triple as right; other KB facts the "
        "sentence also states (e.g. \"1908 Summer Olympics follows 1906 Intercalated Games\" next "
        "to the annotated pair) count as wrong, so it is a lower bound.", "",
        "| relation | recall | precision | gold | produced |", "|---|---:|---:|---:|---:|"]
    for rel, r in s["per_relation"].items():
        lines.append(f"| {rel} | {_pct(r['recall'])} | {_pct(r['precision'])} | "
                     f"{r.get('gold', 0)} | {r.get('produced', 0)} |")
    dropped = result["pipeline_stats"]["dropped"]
    lines += ["", "Candidates dropped per rule: " + ", ".join(f"{k} {v}" for k, v in
                                                             dropped.items()), "",
              "Commands:", "", *[f"    {cmd}" for cmd in result["commands"]], "",
              f"Reproduce: `{result['reproduce'].strip()}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
