"""KG2Instruction on Ray: the pipeline (knowledge base, gazetteer, rules, context scorer) put in
the object store once, chunks of the corpus processed on actors, results in corpus order."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from deepke_llm.distributed.session import ray_session

__all__ = ["ChunkWorker", "kg2instruction_runner"]


class ChunkWorker:
    """A Ray actor holding the KG2Instruction pipeline (knowledge base, rules, context scorer),
    deserialised once from the object store, that processes chunks of corpus records."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def process(self, chunk: list[tuple[int, dict[str, Any]]]) -> Any:
        from kg2instruction.pipeline import process_chunk

        return process_chunk(self.pipeline, chunk)


def kg2instruction_runner(address: str | None = None, num_cpus: float = 1.0,
                          max_retries: int = 2) -> Callable[[Any, Iterable], Iterator[Any]]:
    """A chunk runner for :func:`kg2instruction.pipeline.process_corpus` on Ray.

    The pipeline (with its knowledge base) is put in the object store once and each of
    ``config.workers`` actors loads it from there; chunks stream to them, at most two per actor
    in flight, and come back in corpus order (``ActorPool.get_next``), so the output, the
    checkpoints and ``--resume`` are those of the single-process run. A chunk is a pure
    function of its records, so Ray retrying it after an actor died changes nothing.
    """

    def run(pipeline: Any, records: Iterable) -> Iterator[Any]:
        from kg2instruction.pipeline import chunked

        with ray_session(address) as ray:
            from ray.util import ActorPool

            shared = ray.put(pipeline)
            worker = ray.remote(ChunkWorker).options(num_cpus=num_cpus, max_restarts=max_retries,
                                                     max_task_retries=max_retries)
            actors = [worker.remote(shared) for _ in range(pipeline.config.workers)]
            pool = ActorPool(actors)
            in_flight = 0
            try:
                for chunk in chunked(records, pipeline.config.chunk_size):
                    pool.submit(lambda actor, value: actor.process.remote(value), chunk)
                    in_flight += 1
                    if in_flight >= 2 * len(actors):
                        in_flight -= 1
                        yield pool.get_next()
                while pool.has_next():
                    yield pool.get_next()
            finally:
                for actor in actors:
                    with contextlib.suppress(Exception):
                        ray.kill(actor)

    return run
