"""How the netmon service and `sitewarden netmon replay` set up their detectors: one code path, so both judge
a frame alike (the config's approved stations, the learning period, the site's inventory)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from edge.config_netmon import NetmonSettings
from netmon.engine import Engine
from netmon.inventory import Inventory
from netmon.packets import Record

logger = logging.getLogger(__name__)


def site_inventory_path(data_dir: Path) -> Path:
    """Where the service keeps the site's station and access point inventory."""
    return data_dir / "netmon" / "inventory.db"


def open_inventory(settings: NetmonSettings, path: Path | str = ":memory:", deferred: bool = False) -> Inventory:
    """The inventory at `path` as the service sees it at start: the learning period set, and the config's
    `lan.known_stations` approved."""
    until = settings.learn_until
    inventory = Inventory(path, learn_until=until.timestamp() if until else None, deferred=deferred)
    if settings.lan.known_stations:
        inventory.import_csv(["mac", *settings.lan.known_stations])
    return inventory


def copy_inventory(site_db: Path, into: Path) -> Path:
    """A private copy of the site's inventory (sqlite's online backup: consistent while the service writes), so a
    replay judges against what the service knows without changing it."""
    source = sqlite3.connect(f"file:{site_db}?mode=ro", uri=True)
    target = sqlite3.connect(into)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return into


def make_engine(settings: NetmonSettings, inventory: Inventory,
                parse: Callable[[int, float, bytes], Record | None] | None = None) -> Engine:
    """Every enabled detector behind one engine, judging with `inventory` (from `open_inventory`)."""
    return Engine(settings, inventory, parse=parse)
