"""Tasks: per task the prompt pieces, the parsers and the gold-label forms, side by side."""

from deepke_llm.tasks import ee, ner, re  # noqa: F401 - registration
from deepke_llm.tasks.base import Task, get_task

__all__ = ["Task", "get_task"]
