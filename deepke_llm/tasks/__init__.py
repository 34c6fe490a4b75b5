"""Tasks: per task what does not depend on the prompt style (schema items, gold answers, records
from answers) and what the shared stages ask of it (grounding, scoring tuples), registered once."""

from deepke_llm.tasks import ner, re, ee  # noqa: F401, I001 - registration, in this order
from deepke_llm.tasks.base import _TASKS, Task, get_task

__all__ = ["Task", "get_task", "task_names"]


def task_names() -> list[str]:
    """Names of the registered tasks (CLI choices come from here)."""
    return list(_TASKS)
