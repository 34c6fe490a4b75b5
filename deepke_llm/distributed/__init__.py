"""Ray jobs around the one pipeline: sharded extraction, exactly once per shard
(:mod:`deepke_llm.distributed.extract`), and the KG2Instruction build with its knowledge base
shared through the object store (:mod:`deepke_llm.distributed.kg2instruction`); Ray itself is
the extra ``[ray]`` (:mod:`deepke_llm.distributed.session`)."""

from deepke_llm.distributed.extract import (
    MANIFEST,
    JobSummary,
    ShardError,
    ShardWorker,
    extract_shards,
    resolve_shards,
)
from deepke_llm.distributed.kg2instruction import ChunkWorker, kg2instruction_runner
from deepke_llm.distributed.session import ray_session, require_ray

__all__ = ["MANIFEST", "ChunkWorker", "JobSummary", "ShardError", "ShardWorker",
           "extract_shards", "kg2instruction_runner", "ray_session", "require_ray",
           "resolve_shards"]
