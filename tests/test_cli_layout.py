"""Every registered command imports, answers --help, and shows an example of itself."""

from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from deepke_llm.cli import COMMANDS, main


def _command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(command, click.Group):
            for name, sub in sorted(command.commands.items()):
                if name == sub.name:  # not an alias (kg2instruction fewrel-adapter)
                    walk(sub, path + [name])

    for name, target in COMMANDS.items():
        module, attribute = target.split(":")
        walk(getattr(importlib.import_module(module), attribute), [name])
    return paths


PATHS = _command_paths()


def test_every_command_module_lives_in_commands():
    assert all(target.startswith("deepke_llm.commands.") for target in COMMANDS.values())
    assert len(PATHS) > len(COMMANDS)  # the groups' subcommands are walked too


@pytest.mark.parametrize("path", PATHS, ids=[" ".join(p) for p in PATHS])
def test_help_shows_an_example(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    # the example spells the command itself (a group may show one of its subcommands)
    words = " ".join(path)
    assert any(words in line and not line.lstrip().startswith("Usage:")
               for line in result.output.splitlines()), result.output
