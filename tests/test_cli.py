"""The CLI: every command documents itself with an example, and the version is there."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import click
import pytest
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



# The least each command needs to get as far as its config; `x` where any word does.
ARGS: dict[tuple[str, ...], list[str]] = {
    ("run",): ["edge"],
    ("models", "build"): ["no-such-model"],  # an unknown name: nothing is downloaded or built
    ("models", "fetch"): ["no-such-model"],
    ("kiosk", "totp"): ["JBSWY3DPEHPK3PXPJBSWY3DP"],
    ("kiosk", "api-token", "scope"): ["x", "--scope", "preregister"],  # a real scope: `x` is refused before the config
}
# Runs the whole appliance (brokers, services, the person-detection model): tests/test_demo.py covers it.
NOT_RUN_HERE = {("demo",)}
# Commands that need no config and must do their job without one.
WORK_WITHOUT_CONFIG = {("config", "example"), ("schema",), ("models", "list"), ("kiosk", "totp")}


def _leaf_commands() -> list[tuple[str, ...]]:
    return [path for path in _commands(cli) if path and not isinstance(_command(path), click.Group)]


def _minimal_args(path: tuple[str, ...], existing: Path) -> list[str]:
    if path in ARGS:
        return ARGS[path]
    args: list[str] = []
    for param in _command(path).params:
        if not param.required:
            continue
        value = param.type.choices[0] if isinstance(param.type, click.Choice) else \
            str(existing) if isinstance(param.type, click.Path) else "x"
        args += [value] if isinstance(param, click.Argument) else [param.opts[0], value]
    return args


BROKEN = {
    "bad_yaml": ("site: {id: [\n", "line 2"),
    "bad_value": ("site: {id: s1}\nmqtt: {port: 99999}\n", "mqtt.port: Input should be less than or equal to 65535"),
    "missing_file": (None, "No such file or directory"),
}


@pytest.mark.parametrize("path", [p for p in _leaf_commands() if p not in NOT_RUN_HERE], ids=" ".join)
def test_every_command_without_or_with_a_broken_config_answers_without_a_traceback(
        path: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Walks the whole command tree, plug-ins included. A command that needs a config says so in its help, and
    answers a missing one with one line saying how to pass it, a broken one with its problems by key path."""
    from edge.cli import NEEDS_CONFIG, needs_config

    for key in list(os.environ):
        if key.upper().startswith("SITEWARDEN_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    existing = tmp_path / "input.csv"
    existing.write_text("mac\n")
    args = _minimal_args(path, existing)
    runner = CliRunner()
    needs = needs_config(_command(path))
    assert (NEEDS_CONFIG in (_command(path).help or "")) == needs

    result = runner.invoke(cli, [*path, *args], obj={}, catch_exceptions=False, input="")
    assert "Traceback" not in result.output
    if needs:
        assert result.exit_code == 2, result.output
        assert result.output.strip().count("\n") == 0, result.output
        assert "--config FILE" in result.output and "SITEWARDEN_CONFIG" in result.output
    else:  # its help does not ask for a config, so it must not want one
        assert "needs a config" not in result.output
        if path in WORK_WITHOUT_CONFIG:
            assert result.exit_code == 0, result.output

    for case, (text, expected) in BROKEN.items():
        config = tmp_path / f"{case}.yaml"
        if text is not None:
            config.write_text(text)
        result = runner.invoke(cli, ["--config", str(config), *path, *args], obj={}, catch_exceptions=False,
                               input="")
        assert "Traceback" not in result.output, (case, result.output)
        if needs:
            assert result.exit_code == 1, (case, result.output)
            assert expected in result.output, (case, result.output)
        elif path in WORK_WITHOUT_CONFIG:
            assert result.exit_code == 0, (case, result.output)


def test_settings_from_the_environment_alone_are_not_a_missing_config(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """SITEWARDEN_SITE__ID and friends are a config too: what is wrong with them is shown by key path."""
    monkeypatch.delenv("SITEWARDEN_CONFIG", raising=False)
    monkeypatch.setenv("SITEWARDEN_MQTT__PORT", "99999")
    result = CliRunner().invoke(cli, ["netmon", "export"], obj={}, catch_exceptions=False)
    assert result.exit_code == 1
    assert "site: Field required" in result.output and "mqtt.port" in result.output
