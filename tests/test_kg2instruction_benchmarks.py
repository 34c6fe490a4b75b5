"""The KG2Instruction throughput benchmark's synthetic corpus: long documents, and a doubled
corpus made of new documents (not repeats), so "linear in corpus size" measures real work."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from deepke_llm.sentences import sentence_spans

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "perf" / "kg2instruction_throughput.py"


def _script():
    spec = importlib.util.spec_from_file_location("kg2instruction_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_corpus_has_long_documents_and_a_doubled_corpus_of_new_ones(tmp_path):
    bench = _script()
    sizes = bench.make_inputs(tmp_path, n_aliases=3000, n_triples=3000, n_sentences=600)
    first = [json.loads(x)["text"] for x in (tmp_path / "corpus.jsonl").read_text().splitlines()]
    both = [json.loads(x)["text"] for x in
            (tmp_path / "corpus2x.jsonl").read_text().splitlines()]
    assert both[:len(first)] == first
    assert not set(both[len(first):]) & set(first)  # the second half is new documents
    counts = [len(sentence_spans(text)) for text in first]
    assert sum(counts) == 600
    long_docs = [n for n in counts if n >= 50]
    assert sum(long_docs) == 300 and len(long_docs) == sizes["long_documents"] >= 4
    assert max(counts) == sizes["longest_document_sentences"]
