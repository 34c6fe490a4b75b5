"""FewRel -> KG2Instruction inputs (KB entities, triples, relations, corpus) plus gold documents.

FewRel is read by the core reader (:func:`deepke_llm.datasets.fewrel.read_fewrel`: one Document
per sentence, tokens joined by spaces, head/tail on their first listed mention with ``kb_id``);
this adapter detokenises each sentence (token offsets kept, so gold spans move with their tokens)
and writes the inputs. The KB comes from ``kb_entities.jsonl`` / ``kb_triples.tsv`` when given
and is completed from the sentences themselves (every head/tail surface is an alias of its QID,
every sentence's triple a KB triple) — the way the shipped FewRel KB was made — so the same
adapter works for FewRel relations it has never seen. A KB completed this way covers every gold
mention and triple by construction: measure on held-out sentences for the realistic case. KB
aliases are tokenised text too and get the same detokenisation, so they match the detokenised
sentences. Corpus ids are neutral (``fewrel-00001``): nothing in the corpus reveals the gold
relation (the reader's id is kept in the gold document's ``source_id``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepke_llm.io import ResumableWriter, write_jsonl_atomic
from deepke_llm.problems import Problems
from deepke_llm.records import Document
from kg2instruction.inputs import (
    InputError,
    read_entities,
    read_relations,
    read_triples,
)

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


def _detokenized(doc: Document) -> tuple[str, dict[str, Any]] | None:
    """The sentence's natural text and its gold document, or None when offsets do not line up."""
    offsets = doc.meta.get("tokens") or []
    text, spans = detokenize([doc.text[start:end] for start, end in offsets])
    by_start = {start: i for i, (start, _) in enumerate(offsets)}
    by_end = {end: i for i, (_, end) in enumerate(offsets)}
    relation = doc.relations[0]
    ends = []
    for entity in (relation.head, relation.tail):
        first, last = by_start.get(entity.start), by_end.get(entity.end)
        if first is None or last is None:
            return None
        start, end = spans[first][0], spans[last][1]
        ends.append({"type": "entity", "text": text[start:end], "start": start, "end": end,
                     "kb_id": entity.kb_id})
    return text, {"text": text, "language": "en", "entities": ends,
                  "relations": [{"type": relation.type, "head": ends[0], "tail": ends[1],
                                 "kb_relation": relation.kb_relation}],
                  "events": [], "source_id": doc.id}


def prepare_fewrel(fewrel_json: str | Path, out_dir: str | Path,
                   relations: str | Path | None = None, kb_entities: str | Path | None = None,
                   kb_triples: str | Path | None = None) -> dict[str, Any]:
    """Write kb_entities.jsonl, kb_triples.tsv, relations.json, corpus.jsonl and gold.jsonl.

    ``relations`` is a pid2name-style file (id -> [name, description]); relations missing from
    it are named by their id. Every file appears at its path only once complete. Returns counts
    (sentences, entities, triples, relations, issues).
    """
    from deepke_llm.datasets import DatasetError
    from deepke_llm.datasets.fewrel import read_fewrel

    issues = Problems(default_kind="broken_line")  # the reader's problems are broken lines
    try:
        docs = list(read_fewrel(fewrel_json, errors=issues, id_prefix="fewrel",
                                relations=relations))
    except DatasetError as exc:
        raise InputError(str(exc)) from None
    names = {r.id: r for r in read_relations(relations, issues)} if relations else {}
    aliases, triples = _kb_inputs(kb_entities, kb_triples, issues)
    corpus, gold, seen_relations = _corpus(docs, fewrel_json, issues, aliases, triples)
    out = Path(out_dir)
    write_jsonl_atomic(out / "corpus.jsonl", corpus)
    write_jsonl_atomic(out / "gold.jsonl", gold)
    write_jsonl_atomic(out / "kb_entities.jsonl", ({"id": entity_id, "aliases": list(forms)}
                                                   for entity_id, forms in aliases.items()))
    with ResumableWriter(out / "kb_triples.tsv") as writer:  # .partial, renamed when complete
        writer.write("head\trelation\ttail")
        for h, r, t in triples:
            writer.write(f"{h}\t{r}\t{t}")
    inventory = {}
    for rel_id in dict.fromkeys([*seen_relations, *(r for _, r, _ in triples)]):
        info = names.get(rel_id)
        inventory[rel_id] = {"name": info.name if info else rel_id,
                             "description": info.description if info else ""}
    write_jsonl_atomic(out / "relations.json", [inventory])  # one line: a JSON object
    return {"sentences": len(corpus), "entities": len(aliases), "triples": len(triples),
            "relations": len(inventory), "input_errors": issues.to_dict()}


def _kb_inputs(kb_entities: str | Path | None, kb_triples: str | Path | None, issues: Problems
               ) -> tuple[dict[str, dict[str, None]], dict[tuple[str, str, str], None]]:
    """Aliases (both spellings) and triples of an existing KB to extend, in file order."""
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
    return aliases, triples


def _corpus(docs: list, fewrel_json: str | Path, issues: Problems,
            aliases: dict[str, dict[str, None]], triples: dict[tuple[str, str, str], None]
            ) -> tuple[list[dict], list[dict], dict[str, None]]:
    """Corpus and gold lines of the sentences; their mentions and triples join the KB."""
    corpus, gold = [], []
    seen_relations: dict[str, None] = {}
    for doc in docs:
        made = _detokenized(doc)
        if made is None:
            issues.add("broken_line", f"{fewrel_json}: {doc.id}: mention offsets do not fall on "
                                      "token boundaries; skipped")
            continue
        text, gold_doc = made
        doc_id = f"fewrel-{len(corpus) + 1:05d}"
        corpus.append({"id": doc_id, "text": text})
        gold.append({"id": doc_id, **gold_doc})
        head, tail = gold_doc["entities"]
        for entity in (head, tail):
            aliases.setdefault(entity["kb_id"], {}).setdefault(entity["text"])
        rel_id = gold_doc["relations"][0]["kb_relation"]
        seen_relations.setdefault(rel_id)
        triples.setdefault((head["kb_id"], rel_id, tail["kb_id"]))
    return corpus, gold, seen_relations
