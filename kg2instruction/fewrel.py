"""FewRel -> KG2Instruction inputs (KB entities, triples, relations, corpus) plus gold documents.

FewRel JSON is ``{relation id: [{"tokens", "h": [name, QID, [[token idx...]...]], "t": ...}]}``.
Sentences are detokenised (character offsets of every token kept), so gold mentions become
character spans. The KB comes from ``kb_entities.jsonl`` / ``kb_triples.tsv`` when given and is
completed from the sentences themselves (every head/tail surface is an alias of its QID, every
sentence's triple a KB triple) — the way the shipped FewRel KB was made — so the same adapter
works for FewRel relations it has never seen. KB aliases are tokenised text too and get the same
detokenisation, so they match the detokenised sentences. Corpus ids are neutral
(``fewrel-00001``): nothing in the corpus reveals the gold relation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kg2instruction.inputs import InputError, InputIssues, read_entities, read_triples

_NO_SPACE_BEFORE = frozenset({",", ".", ";", ":", "!", "?", ")", "]", "}", "%", "'s", "'S",
                              "n't", "'re", "'ve", "'ll", "'d", "'m", "''", "...", "’s"})
_NO_SPACE_AFTER = frozenset({"(", "[", "{", "$", "``", "#", "“"})


def detokenize(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join tokens into natural text; returns the text and each token's (start, end).

    Spaces are dropped before closing punctuation and clitics and after opening brackets;
    straight double quotes alternate between opening and closing. Hyphens keep their spaces:
    "1990 - 1995" and "well - known" cannot be told apart from the tokens alone.
    """
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    quote_open = False
    glue_next = True
    for token in tokens:
        glue = glue_next or token in _NO_SPACE_BEFORE
        if token == '"':
            glue = glue_next or quote_open  # a closing quote hugs the word before it
        if parts and not glue:
            parts.append(" ")
            length += 1
        spans.append((length, length + len(token)))
        parts.append(token)
        length += len(token)
        glue_next = token in _NO_SPACE_AFTER
        if token == '"':
            glue_next = not quote_open
            quote_open = not quote_open
    return "".join(parts), spans


def detokenize_alias(alias: str) -> str:
    """A tokenised alias ("Washington , D.C .") in the detokenised form of the corpus."""
    return detokenize(alias.split(" "))[0]


def _mention_spans(item: list[Any], spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for group in item[2]:
        if group and all(isinstance(i, int) and 0 <= i < len(spans) for i in group):
            out.append((spans[min(group)][0], spans[max(group)][1]))
    return out


def prepare_fewrel(fewrel_json: str | Path, out_dir: str | Path,
                   relations: str | Path | None = None, kb_entities: str | Path | None = None,
                   kb_triples: str | Path | None = None) -> dict[str, Any]:
    """Write kb_entities.jsonl, kb_triples.tsv, relations.json, corpus.jsonl and gold.jsonl.

    ``relations`` is a pid2name-style file (id -> [name, description]); relations missing from
    it are named by their id. Returns counts (sentences, entities, triples, issues).
    """
    issues = InputIssues()
    try:
        with open(fewrel_json, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{fewrel_json}: cannot read FewRel JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{fewrel_json}: expected an object relation id -> list of sentences")
    names: dict[str, Any] = {}
    if relations is not None:
        try:
            with open(relations, encoding="utf-8") as handle:
                names = json.load(handle)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{relations}: cannot read relation names ({exc})") from None

    aliases: dict[str, dict[str, None]] = {}
    triples: dict[tuple[str, str, str], None] = {}
    if kb_entities is not None:
        for entity in read_entities(kb_entities, issues):
            bucket = aliases.setdefault(entity.id, {})
            for alias in entity.aliases:
                bucket.setdefault(detokenize_alias(alias))
                bucket.setdefault(alias)
    if kb_triples is not None:
        for head, rel, tail, _ in read_triples(kb_triples, issues):
            triples.setdefault((head, rel, tail))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as corpus, \
            open(out / "gold.jsonl", "w", encoding="utf-8") as gold:
        for rel_id, sentences in data.items():
            rel_name = _relation_name(names.get(rel_id), rel_id)
            for k, sentence in enumerate(sentences if isinstance(sentences, list) else []):
                where = f"{fewrel_json}: {rel_id}[{k}]"
                try:
                    tokens = [str(t) for t in sentence["tokens"]]
                    head, tail = sentence["h"], sentence["t"]
                    head_id, tail_id = str(head[1]), str(tail[1])
                except (KeyError, IndexError, TypeError):
                    issues.add("broken_line", f"{where}: expected tokens, h and t; skipped")
                    continue
                text, spans = detokenize(tokens)
                head_spans, tail_spans = _mention_spans(head, spans), _mention_spans(tail, spans)
                if not head_spans or not tail_spans:
                    issues.add("broken_line", f"{where}: bad token indices; skipped")
                    continue
                count += 1
                doc_id = f"fewrel-{count:05d}"
                corpus.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
                entities = []
                for entity_id, entity_spans in ((head_id, head_spans), (tail_id, tail_spans)):
                    for start, end in entity_spans:
                        aliases.setdefault(entity_id, {}).setdefault(text[start:end])
                        entities.append({"type": "entity", "text": text[start:end],
                                         "start": start, "end": end, "kb_id": entity_id})
                triples.setdefault((head_id, rel_id, tail_id))
                first_head = entities[0]
                first_tail = entities[len(head_spans)]
                gold.write(json.dumps({
                    "id": doc_id, "text": text, "language": "en", "entities": entities,
                    "relations": [{"type": rel_name, "head": first_head, "tail": first_tail,
                                   "kb_relation": rel_id}],
                    "events": []}, ensure_ascii=False) + "\n")

    with open(out / "kb_entities.jsonl", "w", encoding="utf-8") as handle:
        for entity_id, forms in aliases.items():
            handle.write(json.dumps({"id": entity_id, "aliases": list(forms)},
                                    ensure_ascii=False) + "\n")
    with open(out / "kb_triples.tsv", "w", encoding="utf-8") as handle:
        handle.write("head\trelation\ttail\n")
        handle.writelines(f"{h}\t{r}\t{t}\n" for h, r, t in triples)
    inventory = {rel_id: _relation_entry(names.get(rel_id), rel_id)
                 for rel_id in dict.fromkeys([*data, *(r for _, r, _ in triples)])}
    tmp = out / f"relations.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(inventory, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / "relations.json")
    return {"sentences": count, "entities": len(aliases), "triples": len(triples),
            "relations": len(inventory), "input_errors": issues.to_dict()}


def _relation_name(value: Any, rel_id: str) -> str:
    return _relation_entry(value, rel_id)["name"]


def _relation_entry(value: Any, rel_id: str) -> dict[str, str]:
    if isinstance(value, list) and value and isinstance(value[0], str):
        return {"name": value[0], "description": value[1] if len(value) > 1 else ""}
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return {"name": value["name"], "description": str(value.get("description", ""))}
    if isinstance(value, str):
        return {"name": value, "description": ""}
    return {"name": rel_id, "description": ""}
