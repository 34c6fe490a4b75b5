"""Ray, the extra ``[ray]``: imported with a one-line ``pip install`` hint, connected once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["ray_session", "require_ray"]


def require_ray() -> Any:
    """The ``ray`` module, or :class:`ModuleNotFoundError` naming the ``pip install`` to run."""
    try:
        import ray
    except ImportError:
        raise ModuleNotFoundError("--ray needs the 'ray' package, which the light install leaves "
                                  "out: pip install 'deepke-llm[ray]'", name="ray") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """Ray, connected: to ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), else to
    ``$RAY_ADDRESS``, else a local cluster started here. A session this process started is shut
    down at the end; one it found running (a notebook, the tests) is left alone."""
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
