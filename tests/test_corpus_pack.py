"""Greedy packing: whole sentences, at most max_len tokens, no token repeated or lost."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deepke_llm.training.pretrain.corpus import StreamPacker, greedy_pack


def test_greedy_packing_fills_samples_in_order_and_splits_only_long_sentences():
    # 3+4 fit in 8; 5 does not fit after them; 10 > 8 closes the open sample and is cut 8 + 2;
    # the remainder 2 opens the next sample, which 1 and 3 then join
    assert greedy_pack([3, 4, 5, 10, 1, 3], 8) == ([7, 5, 8], 6)
    assert greedy_pack([], 8) == ([], 0)
    assert greedy_pack([8, 8], 8) == ([8], 8)
    assert greedy_pack([16], 8) == ([8, 8], 0)
    # continuing an open sample from an earlier chunk
    assert greedy_pack([2, 3], 8, filled=5) == ([7], 3)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=60), st.integers(1, 32))
def test_packing_covers_the_stream_exactly_once(lengths, max_len):
    closed, open_size = greedy_pack(lengths, max_len)
    sizes = closed + ([open_size] if open_size else [])
    assert sum(sizes) == sum(lengths)
    assert all(0 < s <= max_len for s in sizes)
    # every cut is at a sentence boundary, except inside sentences longer than max_len
    sentence_ends = set(np.cumsum(lengths).tolist())
    long_spans = []
    start = 0
    for length in lengths:
        if length > max_len:
            long_spans.append((start, start + length))
        start += length
    for cut in np.cumsum(sizes)[:-1].tolist():
        assert cut in sentence_ends or any(s < cut < e for s, e in long_spans)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(1, 30), max_size=8), max_size=8), st.integers(4, 40))
def test_stream_packer_output_does_not_depend_on_chunking(chunks, max_len):
    rng = np.random.default_rng(0)
    token_chunks = [rng.integers(0, 1000, size=sum(c)).astype(np.uint32) for c in chunks]
    packer = StreamPacker(max_len)
    samples = [s for toks, units in zip(token_chunks, chunks, strict=True) for s in packer.add(toks, units)]
    samples += packer.flush()
    whole = StreamPacker(max_len)
    all_tokens = np.concatenate(token_chunks) if token_chunks else np.zeros(0, np.uint32)
    expected = whole.add(all_tokens, [u for c in chunks for u in c]) + whole.flush()
    assert [s.tolist() for s in samples] == [s.tolist() for s in expected]
    joined = np.concatenate(samples) if samples else np.zeros(0, np.uint32)
    assert joined.tolist() == all_tokens.tolist()
