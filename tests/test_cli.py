"""The CLI: every command documents itself with an example, and the version is there."""

from __future__ import annotations

import inspect

import click
from click.testing import CliRunner

from edge import __version__
from edge.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found

def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command

def test_every_command_has_help_ending_with_an_example_and_every_option_is_explained() -> None:
    runner = CliRunner()
    commands = _commands(cli)
    assert ("alerts", "tail") in commands and ("config", "check") in commands and ("run",) in commands
    for path in commands:
        result = runner.invoke(cli, [*path, "--help"], obj={})
        assert result.exit_code == 0, (path, result.output)
        command = _command(path)
        last = inspect.cleandoc(command.help or "").split("\n\n")[-1]
        where = f"`sitewarden {' '.join(path)} --help`"
        assert last.startswith("Example: sitewarden"), f"{where} does not end with an example"
        unexplained = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
        assert unexplained == [], f"`sitewarden {' '.join(path)}` options without help: {unexplained}"

def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"], obj={})
    assert result.exit_code == 0
    assert result.output.strip() == f"sitewarden, version {__version__}"

def test_run_unknown_service_names_the_installed_ones() -> None:
    result = CliRunner().invoke(cli, ["run", "teleporter"], obj={})
    assert result.exit_code == 2
    assert "unknown service 'teleporter'" in result.output
    assert "console, edge" in result.output

def test_services_are_discovered_from_entry_points() -> None:
    from edge.services import discover

    specs = discover()
    assert {"edge", "console", "badge"} <= set(specs)
    assert specs["badge"].simulate is not None and specs["badge"].commands is not None

