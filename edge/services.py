"""How services plug in: each declares a ServiceSpec under the `sitewarden.services` entry-point group."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from edge.config import Settings

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "sitewarden.services"
COMMANDS_GROUP = "sitewarden.commands"  # top-level command groups a package adds, e.g. `sitewarden models`

RunFunction = Callable[[Settings, threading.Event], None]


class ServiceCannotStart(RuntimeError):
    """A service found at start that it cannot do its job (a missing model, a bad device); the message says
    which setting and what to do. `sitewarden run` prints it and exits 1."""


@dataclass(frozen=True)
class ServiceSpec:
    """A service the CLI can run: its run function and, for `sitewarden demo`, its simulator."""

    name: str
    summary: str
    run: RunFunction
    simulate: RunFunction | None = None
    demo_settings: Callable[[Path], dict[str, Any]] | None = None  # its config section in the demo, by data dir
    commands: Any = None  # a click group, added to the CLI as `sitewarden <name> ...`


def discover() -> dict[str, ServiceSpec]:
    """Every installed service, by name."""
    found: dict[str, ServiceSpec] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = ep.load()
        except Exception:  # a broken plug-in must not take the CLI down with it
            logger.exception("service %s (%s) failed to load", ep.name, ep.value)
            continue
        if not isinstance(spec, ServiceSpec):
            logger.error("entry point %s (%s) is not a ServiceSpec", ep.name, ep.value)
            continue
        found[ep.name] = spec
    return dict(sorted(found.items()))


def discover_commands() -> dict[str, Any]:
    """Top-level click groups that installed packages add to the CLI, by name."""
    found: dict[str, Any] = {}
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception:  # as for services: a broken plug-in must not take the CLI down
            logger.exception("command group %s (%s) failed to load", ep.name, ep.value)
    return dict(sorted(found.items()))
