"""Old home of the resumable JSON-lines writer; everything now lives in :mod:`deepke_llm.io`."""

from deepke_llm.io import ResumableWriter, write_jsonl_atomic

__all__ = ["ResumableWriter", "write_jsonl_atomic"]
