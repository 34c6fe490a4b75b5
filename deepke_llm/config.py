"""Configs, the one way: dataclasses whose fields carry their help (and lower bound) in metadata.

Every config (``ExtractConfig``, ``EvaluationConfig``, ``GenerationConfig``, ``SftConfig``,
``PretrainConfig``, kg2instruction's ``BuildConfig`` and ``LinkerConfig``) declares its fields
with :func:`config_field`; the command line reads the help with :func:`field_help` (and
``click.IntRange`` from the minimum), :func:`check_ranges` enforces the minimum, saved run configs
carry the same names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["check_ranges", "config_field", "field_help"]


def config_field(default: Any = dataclasses.MISSING, help: str = "", minimum: float | None = None,
                 **kwargs: Any) -> Any:
    """A dataclass field carrying its help text and, for a number, the least value it allows.

    A list or dict default is copied for each instance (as ``default_factory`` would).
    """
    if isinstance(default, list | dict):
        value = default
        kwargs["default_factory"] = lambda: type(value)(value)
        default = dataclasses.MISSING
    metadata: dict[str, Any] = {"help": help}
    if minimum is not None:
        metadata["minimum"] = minimum
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def field_help(config: Any, name: str) -> str:
    """The help text of field ``name`` of a config dataclass (or instance): what ``--help`` shows."""
    for item in dataclasses.fields(config):
        if item.name == name:
            return item.metadata.get("help", "")
    raise KeyError(f"{getattr(config, '__name__', type(config).__name__)} has no field '{name}'")


def check_ranges(config: Any) -> None:
    """Raise ``ValueError`` naming the first field below the ``minimum`` its metadata gives."""
    for item in dataclasses.fields(config):
        minimum = item.metadata.get("minimum")
        value = getattr(config, item.name)
        if minimum is not None and value is not None and value < minimum:
            raise ValueError(f"{item.name}: must be >= {minimum}, got {value}")
