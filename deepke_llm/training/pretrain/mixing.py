"""The data order of a pretraining run: sources mixed by weight, a pure function of
``(seed, position in the run)``.

:class:`MixtureSampler` draws each data epoch's samples from every source according to the mixing
weights, shuffled with generators seeded by ``(seed, epoch)`` only, and spans the whole run as one
Trainer epoch. Trainer's own resume (``ignore_data_skip=False``: skip the batches already
trained) therefore continues exactly where a run stopped, on one process or many, with no script
to skip seen data.
"""

from __future__ import annotations

import logging

import numpy as np

from deepke_llm.training.pretrain.indexed_dataset import IndexedDataset

__all__ = ["MixtureSampler", "mixing_weights", "source_quotas"]

logger = logging.getLogger(__name__)


def source_quotas(counts: np.ndarray, weights: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` samples over sources in proportion to ``weights`` (largest remainder)."""
    weights = np.where(counts > 0, weights, 0.0).astype(np.float64)
    if weights.sum() <= 0:
        raise ValueError("mixing weights select no source that has samples")
    exact = total * weights / weights.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = total - int(quotas.sum())
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[:remainder]] += 1
    return quotas


class MixtureSampler:
    """The run's sample order, mixing sources by weight; a pure function of ``(seed, position)``.

    Data epochs of ``samples_per_epoch`` samples follow each other: each source is read as an
    endless sequence of seeded permutations of its samples, so an up-weighted source repeats only
    after all its samples were seen and a down-weighted one shows new samples every epoch; an
    epoch's picks from all sources are shuffled together with a generator seeded by the epoch.

    The sampler spans the whole run (``total_samples``), so the Trainer sees a single epoch and
    its resume (skip the batches already trained) lands exactly, on every rank: nothing depends
    on ``set_epoch`` reaching the sampler, which accelerate does not guarantee once the sampler is
    wrapped for several processes and for skipping.
    """

    def __init__(self, source_ids: np.ndarray, weights: np.ndarray, seed: int,
                 samples_per_epoch: int, total_samples: int | None = None) -> None:
        source_ids = np.asarray(source_ids)
        num_sources = len(weights)
        self.by_source = [np.flatnonzero(source_ids == s) for s in range(num_sources)]
        counts = np.array([len(ix) for ix in self.by_source], dtype=np.int64)
        self.quotas = source_quotas(counts, np.asarray(weights, dtype=np.float64), samples_per_epoch)
        self.seed = seed
        self.samples_per_epoch = int(samples_per_epoch)
        self.num_samples = int(total_samples if total_samples is not None else samples_per_epoch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Trainer epoch (one per pass over this sampler); only 0 in runs built by build_trainer."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        # a Trainer epoch after the first continues the sequence instead of replaying it
        start = self.epoch * self.num_samples
        stop = start + self.num_samples
        data_epoch, offset = divmod(start, self.samples_per_epoch)
        position = start
        while position < stop:
            order = self.epoch_order(data_epoch)[offset:offset + stop - position]
            yield from order.tolist()
            position += len(order)
            data_epoch, offset = data_epoch + 1, 0

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Dataset indices of epoch ``epoch``, in training order."""
        picks = []
        for source, (indices, quota) in enumerate(zip(self.by_source, self.quotas, strict=True)):
            if quota:
                picks.append(self._stream_slice(source, indices, epoch * int(quota), int(quota)))
        order = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
        return order[np.random.default_rng([self.seed, 1, epoch]).permutation(len(order))]

    def _stream_slice(self, source: int, indices: np.ndarray, start: int, count: int) -> np.ndarray:
        size = len(indices)
        out = []
        while count > 0:
            sweep, offset = divmod(start, size)
            perm = np.random.default_rng([self.seed, 0, source, sweep]).permutation(size)
            take = min(count, size - offset)
            out.append(indices[perm[offset:offset + take]])
            start += take
            count -= take
        return np.concatenate(out)


def mixing_weights(indexed: IndexedDataset, mix: dict[str, float]) -> np.ndarray:
    """Weights per source id: the configured ones, or natural proportions (sample counts)."""
    names = indexed.source_names
    if not mix:
        return indexed.samples_per_source().astype(np.float64)
    unknown = sorted(set(mix) - set(names))
    if unknown:
        raise ValueError(f"mix: unknown sources {unknown}; the dataset has {names}")
    left_out = [n for n in names if n not in mix]
    if left_out:
        logger.info("mix: sources %s are not used (weight 0)", left_out)
    return np.array([float(mix.get(n, 0.0)) for n in names])
