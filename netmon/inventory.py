"""The station inventory: known MACs in sqlite, a learning period, retention, and CSV import/export."""

from __future__ import annotations

import csv
import re
import sqlite3
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

CSV_FIELDS = ("mac", "vendor", "ip", "name", "approved", "first_seen", "last_seen")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_INSERT = ("INSERT OR IGNORE INTO stations (mac, vendor, ip, approved, first_seen, last_seen) "
           "VALUES (?, ?, ?, ?, ?, ?)")


class InventoryError(ValueError):
    """A CSV row that cannot be imported; says the line and the field."""


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class Inventory:
    """Stations the site knows. `learn_until` (epoch seconds) makes new stations approved instead of reported."""

    def __init__(self, path: Path | str = ":memory:", learn_until: float | None = None,
                 deferred: bool = False) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS stations (
            mac TEXT PRIMARY KEY, vendor TEXT, ip TEXT, name TEXT NOT NULL DEFAULT '',
            approved INTEGER NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL)""")
        self.learn_until = learn_until
        self.deferred = deferred  # new stations wait for flush(): a live capture writes once a second, not per MAC
        self._pending: list[tuple[str, str | None, str | None, int, float, float]] = []
        self._known = {row[0] for row in self.db.execute("SELECT mac FROM stations")}

    def knows(self, mac: str) -> bool:
        """True for a MAC already in the inventory (approved or already reported)."""
        return mac in self._known

    def learning(self, ts: float) -> bool:
        """True while `ts` is inside the learning period."""
        return self.learn_until is not None and ts < self.learn_until

    def record_station(self, mac: str, vendor: str | None, ip: str | None, ts: float, approved: bool) -> None:
        """Add a station seen for the first time (written at once unless deferred: a restart must not report it
        again)."""
        self._known.add(mac)
        row = (mac, vendor, ip, int(approved), ts, ts)
        if self.deferred:
            self._pending.append(row)
            return
        self.db.execute(_INSERT, row)

    def flush(self, last_seen: dict[str, float] | None = None) -> int:
        """Write the deferred new stations and move stations' last-seen times forward, in one transaction;
        returns how many new stations were written."""
        rows, self._pending = self._pending, []
        if not rows and not last_seen:
            return 0
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(_INSERT, rows)
            if last_seen:
                self.db.executemany("UPDATE stations SET last_seen = max(last_seen, ?) WHERE mac = ?",
                                    [(ts, mac) for mac, ts in last_seen.items()])
        return len(rows)

    def approved(self) -> list[str]:
        """MACs marked approved."""
        return [row[0] for row in self.db.execute("SELECT mac FROM stations WHERE approved = 1 ORDER BY mac")]

    def prune(self, max_age_s: float, now: float | None = None) -> int:
        """Forget unapproved stations not seen for `max_age_s` (the site's MAC retention); returns how many."""
        now = time.time() if now is None else now
        gone = [row[0] for row in self.db.execute(
            "SELECT mac FROM stations WHERE approved = 0 AND last_seen < ?", (now - max_age_s,))]
        self.db.execute("DELETE FROM stations WHERE approved = 0 AND last_seen < ?", (now - max_age_s,))
        self._known.difference_update(gone)
        return len(gone)

    def export_csv(self, out: TextIO) -> int:
        """Write every station as CSV (header first); returns the row count."""
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        n = 0
        for mac, vendor, ip, name, approved, first, last in self.db.execute(
                "SELECT mac, vendor, ip, name, approved, first_seen, last_seen FROM stations ORDER BY mac"):
            writer.writerow([mac, vendor or "", ip or "", name, "yes" if approved else "no", _iso(first), _iso(last)])
            n += 1
        return n

    def import_csv(self, rows: Iterable[str], now: float | None = None) -> int:
        """Approve (or add approved) every MAC in a CSV with at least a `mac` column; `name` is kept. All or
        nothing: a bad row raises InventoryError naming its line and nothing is written."""
        now = time.time() if now is None else now
        reader = csv.DictReader(rows)
        if reader.fieldnames is None or "mac" not in [f.strip().lower() for f in reader.fieldnames]:
            raise InventoryError("line 1: the CSV needs a 'mac' column")
        parsed = []
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            mac = row.get("mac", "").lower().replace("-", ":")
            if not _MAC.match(mac):
                raise InventoryError(f"line {line}: mac {row.get('mac')!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
            parsed.append((mac, row.get("name", "")))
        with self.db:
            self.db.execute("BEGIN")
            for mac, name in parsed:
                self.db.execute("INSERT INTO stations (mac, name, approved, first_seen, last_seen) VALUES "
                                "(?, ?, 1, ?, ?) ON CONFLICT(mac) DO UPDATE SET approved = 1, "
                                "name = CASE WHEN excluded.name != '' THEN excluded.name ELSE name END",
                                (mac, name, now, now))
        self._known.update(mac for mac, _ in parsed)
        return len(parsed)
