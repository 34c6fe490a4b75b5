"""Our IEPile-format scoring (``deepke_llm.evaluation.iepile_eval.score_iepile``) gives IEPile's own
numbers on a few hundred randomly generated test files, as strict NER gives seqeval's.

The reference below is a transcription, in this module's words, of IEPile's evaluator: zjunlp/IEPile
(commit 933918d) ``ie2instruction/eval_func.py`` (``evaluate``: lines grouped by
``source + id``, the first line's ``label``, every line's ``output`` extracted on its own and the
tuples concatenated; ``convert_kg`` for the gold), ``ie2instruction/eval/extracter/{ner,re,ee}_extracter.py``
(``post_process``: an output that is not a JSON object counts an error and predicts nothing;
items of the wrong shape are skipped; RE reads ``subject``/``object``; EE drops ``"NAN"``
arguments) and ``ie2instruction/eval/metric/{metric,ner_metric,re_metric,ee_metric}.py``
(multiset matching in ``normal`` mode, sets in ``set`` mode; P and R rounded to two decimals of a
percentage, F1 from the rounded values; EE events ``(type, trigger)`` and arguments ``(type,
argument, role)``). The generated files stay inside what IEPile reads correctly (subject/object
keys, string ids, one instruction per chunk, no ``"NAN"`` trigger), where our scorer promises the
same numbers; its fixes of IEPile's silent failures are tested in ``test_metrics_iepile.py``.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict

import pytest

from deepke_llm.evaluation.iepile_eval import score_iepile

NAN = "NAN"
WORDS = ["Alice", "Bob", "Acme", "Paris", "Rome", "Oracle", "laid off", "met", "2019", "CEO"]
TYPES = ["person", "location", "organization"]
RELATIONS = ["work for", "located in", "born in"]
EVENTS = {"attack": ["attacker", "target"], "layoff": ["layoff party", "time"]}


# ---- the reference: IEPile's evaluator, transcribed ------------------------------------------

def _iepile_extract(task: str, output: str) -> tuple[bool, list[tuple]]:
    """``post_process`` of IEPile's NER/RE/EE extracter: (parsed, tuples)."""
    try:
        value = json.loads(output)
    except json.JSONDecodeError:
        return False, []
    if type(value) is not dict:
        return False, []
    tuples: list[tuple] = []
    for key, items in value.items():
        if type(key) is not str or type(items) is not list:
            continue
        for item in items:
            if task == "ner":
                if type(item) is str:
                    tuples.append((item, key))
            elif task == "re":
                if type(item) is not dict:
                    continue
                head, tail = item.get("subject", ""), item.get("object", "")
                if type(head) is str and type(tail) is str:
                    tuples.append((head, key, tail))
            else:
                if type(item) is not dict or type(item.get("trigger", "")) is not str:
                    continue
                arguments = []
                for role, argument in item.get("arguments", {}).items():
                    for one in argument if type(argument) is list else [argument]:
                        if one != NAN:
                            arguments.append((one, role))
                tuples.append((key, item.get("trigger", ""), tuple(arguments)))
    return True, tuples


def _iepile_gold(task: str, label: list[dict]) -> list[tuple]:
    """``convert_kg`` of eval_func.py."""
    if task == "ner":
        return [(it["entity"], it["entity_type"]) for it in label]
    if task == "re":
        return [(it.get("head", ""), it.get("relation", ""), it.get("tail", "")) for it in label]
    return [(it["event_type"], it["event_trigger"],
             tuple((a["argument"], a["role"]) for a in it["arguments"])) for it in label]


class _Counter:
    """``count_instance_f1`` of the metric classes: matched, predicted and gold counts."""

    def __init__(self, match: str) -> None:
        self.match, self.tp, self.pred, self.gold = match, 0, 0, 0

    def add(self, gold: list[tuple], pred: list[tuple]) -> None:
        if self.match == "set":
            gold, pred = list(set(gold)), list(set(pred))
        self.pred += len(pred)
        self.gold += len(gold)
        left = list(gold)
        for item in pred:
            if item in left:
                self.tp += 1
                left.remove(item)

    def prf(self, prefix: str = "") -> dict[str, float]:
        p = round(self.tp / self.pred * 100, 2) if self.pred else 0.0
        r = round(self.tp / self.gold * 100, 2) if self.gold else 0.0
        return {f"{prefix}P": p, f"{prefix}R": r,
                f"{prefix}F1": round(2 * p * r / (p + r), 2) if p + r else 0.0}


def iepile_reference(path: str, task: str, match: str) -> dict[str, float]:
    """IEPile's ``evaluate`` on one file: its result dict (without the rouge metrics)."""
    return iepile_counts(path, task, match)[0]


def iepile_counts(path: str, task: str, match: str) -> tuple[dict[str, float], list[_Counter]]:
    """IEPile's result dict and its exact counts (NER/RE: one counter; EE: events, arguments)."""
    records: dict[str, dict] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            data = json.loads(line)
            key = data.get("source", "None") + data["id"]
            if key in records:
                records[key]["output"].append(data["output"])
            else:
                records[key] = {"output": [data["output"]], "label": json.loads(data["label"])}
    errors = 0
    counters = [_Counter(match), _Counter(match)]  # EE: events, arguments
    for record in records.values():
        pred: list[tuple] = []
        for output in record["output"]:
            parsed, tuples = _iepile_extract(task, output)
            errors += not parsed
            pred.extend(tuples)
        gold = _iepile_gold(task, record["label"])
        if task != "ee":
            counters[0].add(gold, pred)
            continue
        counters[0].add([(t, g) for t, g, _ in gold], [(t, g) for t, g, _ in pred])
        counters[1].add([(t, a, r) for t, _, args in gold for a, r in args],
                        [(t, a, r) for t, _, args in pred for a, r in args])
    result: dict[str, float] = {"总样本数": len(records), "错误数": errors}
    if task == "ee":
        return {**result, **counters[0].prf("event_"), **counters[1].prf("argument_")}, counters
    return {**result, **counters[0].prf()}, counters[:1]


# ---- random IEPile test files -----------------------------------------------------------------

def _mention(rng: random.Random) -> str:
    return rng.choice(WORDS)


def _gold(task: str, rng: random.Random) -> list[dict]:
    size = rng.randint(0, 4)
    if task == "ner":
        return [{"entity": _mention(rng), "entity_type": rng.choice(TYPES)} for _ in range(size)]
    if task == "re":
        return [{"head": _mention(rng), "relation": rng.choice(RELATIONS), "tail": _mention(rng)}
                for _ in range(size)]
    events = []
    for _ in range(size):
        kind = rng.choice(list(EVENTS))
        events.append({"event_type": kind, "event_trigger": _mention(rng),
                       "arguments": [{"argument": _mention(rng), "role": rng.choice(EVENTS[kind])}
                                     for _ in range(rng.randint(0, 3))]})
    return events


def _item(task: str, key: str, rng: random.Random, gold: list[dict]) -> object:
    """One predicted item: often a copy of a gold one, sometimes of the wrong shape."""
    if rng.random() < 0.08:
        return rng.choice([7, None, ["x"], {"x": 1}, "text"])
    if task == "ner":
        same = [g["entity"] for g in gold if g["entity_type"] == key]
        return rng.choice(same) if same and rng.random() < 0.6 else _mention(rng)
    if task == "re":
        same = [g for g in gold if g["relation"] == key]
        pair = rng.choice(same) if same and rng.random() < 0.6 else \
            {"head": _mention(rng), "tail": _mention(rng)}
        item = {"subject": pair["head"], "object": pair["tail"]}
        if rng.random() < 0.05:
            del item[rng.choice(["subject", "object"])]  # scored as an empty string by both
        return item
    same = [g for g in gold if g["event_type"] == key]
    event = rng.choice(same) if same and rng.random() < 0.6 else None
    arguments: dict[str, object] = {}
    for role in EVENTS[key]:
        given = [a["argument"] for a in (event or {}).get("arguments", []) if a["role"] == role]
        choice = rng.random()
        arguments[role] = (NAN if choice < 0.25 else given[0] if given and choice < 0.7 else
                           [*given, NAN, _mention(rng)] if choice < 0.85 else _mention(rng))
    trigger = event["event_trigger"] if event else _mention(rng)
    return {"trigger": trigger, "arguments": arguments}


def _output(task: str, keys: list[str], rng: random.Random, gold: list[dict]) -> str:
    roll = rng.random()
    if roll < 0.06:
        return rng.choice(["Sure! Here they are:", "[]", "{not json", '"text"', "null"])
    answer = {key: [_item(task, key, rng, gold) for _ in range(rng.randint(0, 3))]
              for key in keys}
    if roll < 0.1 and keys:
        answer[keys[0]] = "not a list"
    return json.dumps(answer, ensure_ascii=False)


def _schema_keys(task: str) -> list[str]:
    return {"ner": TYPES, "re": RELATIONS, "ee": list(EVENTS)}[task]


def write_random_file(path, task: str, records: int, seed: int) -> None:
    """An IEPile test file: each record's schema in one or two chunks (one line per chunk),
    records' lines interleaved now and then, as a sharded run may write them."""
    rng = random.Random(seed)
    lines: list[str] = []
    for number in range(records):
        gold = _gold(task, rng)
        keys = _schema_keys(task)
        cut = rng.randint(1, len(keys))
        chunks = [keys[:cut], keys[cut:]] if cut < len(keys) else [keys]
        source = rng.choice(["A", "B"])
        for chunk in chunks:
            instruction = json.dumps({"instruction": "extract", "schema": chunk,
                                      "input": f"text {number}"}, ensure_ascii=False)
            lines.append(json.dumps({
                "id": f"r{number}", "source": source,
                "task": task.upper(), "instruction": instruction,
                "label": json.dumps(gold, ensure_ascii=False),
                "output": _output(task, chunk, rng, gold)}, ensure_ascii=False))
    by_position = defaultdict(list)
    for i, line in enumerate(lines):
        by_position[i + (rng.random() < 0.1) * 3].append(line)  # some lines move a little later
    path.write_text("\n".join(line for i in sorted(by_position) for line in by_position[i]) + "\n",
                    encoding="utf-8")


@pytest.mark.parametrize("task", ["ner", "re", "ee"])
@pytest.mark.parametrize("match", ["normal", "set"])
def test_iepile_scoring_equals_iepile_evaluator_on_random_files(tmp_path, task, match):
    checked = 0
    for seed in range(20):
        path = tmp_path / f"{task}-{seed}.json"
        write_random_file(path, task, records=15, seed=seed)
        score = score_iepile(str(path), task, match)
        reference, counters = iepile_counts(str(path), task, match)
        ours = {k: v for k, v in score.extra["iepile"].items() if k != "match_mode"}
        assert ours == reference, seed
        levels = ["trigger_classification", "argument_classification"] if task == "ee" else [None]
        for level, counter in zip(levels, counters, strict=True):
            c = score.level("string", level).overall
            assert (c.tp, c.tp + c.fp, c.tp + c.fn) == (counter.tp, counter.pred, counter.gold)
        checked += reference["总样本数"]
    assert checked == 20 * 15  # 300 records per task and match mode


def test_the_reference_is_iepile_on_a_hand_checked_file(tmp_path):
    # two chunk lines of one record merged, a duplicated prediction (a false positive in normal
    # mode), an unparseable output (its gold missed, one error)
    rows = [("1", [{"entity": "Alice", "entity_type": "person"}], {"person": ["Alice", "Alice"]}),
            ("1", [{"entity": "Alice", "entity_type": "person"}], {"location": []}),
            ("2", [{"entity": "Rome", "entity_type": "location"}], "Sure!")]
    path = tmp_path / "t.json"
    path.write_text("".join(json.dumps({
        "id": i, "source": "s", "instruction": json.dumps({"input": "x", "schema": [n]}),
        "label": json.dumps(label), "output": out if isinstance(out, str) else json.dumps(out)})
        + "\n" for n, (i, label, out) in enumerate(rows)), encoding="utf-8")
    assert iepile_reference(str(path), "ner", "normal") == {
        "总样本数": 2, "错误数": 1, "P": 50.0, "R": 50.0, "F1": 50.0}
    assert iepile_reference(str(path), "ner", "set") == {
        "总样本数": 2, "错误数": 1, "P": 100.0, "R": 50.0, "F1": 66.67}
