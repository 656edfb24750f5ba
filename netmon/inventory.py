"""The inventory: known stations (MACs) and access points (BSSID + SSID) in sqlite, a learning period,
retention, and CSV import/export."""

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
AP_CSV_FIELDS = ("bssid", "ssid", "channel", "security", "approved", "first_seen", "last_seen")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_INSERT = ("INSERT OR IGNORE INTO stations (mac, vendor, ip, approved, first_seen, last_seen) "
           "VALUES (?, ?, ?, ?, ?, ?)")
_INSERT_AP = ("INSERT INTO access_points (bssid, ssid, channel, security, approved, first_seen, last_seen) "
              "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(bssid, ssid) DO UPDATE SET "
              "approved = max(approved, excluded.approved)")  # learning approves one heard before


class InventoryError(ValueError):
    """A CSV row that cannot be imported; says the line and the field."""


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class Inventory:
    """Stations and access points the site knows. `learn_until` (epoch seconds) makes new stations, and access
    points sending a corporate SSID, approved instead of reported."""

    def __init__(self, path: Path | str = ":memory:", learn_until: float | None = None,
                 deferred: bool = False) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS stations (
            mac TEXT PRIMARY KEY, vendor TEXT, ip TEXT, name TEXT NOT NULL DEFAULT '',
            approved INTEGER NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL)""")
        self.db.execute("""CREATE TABLE IF NOT EXISTS access_points (
            bssid TEXT NOT NULL, ssid TEXT NOT NULL, channel INTEGER NOT NULL, security TEXT NOT NULL,
            approved INTEGER NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL,
            PRIMARY KEY (bssid, ssid))""")
        self.learn_until = learn_until
        self.deferred = deferred  # new stations wait for flush(): a live capture writes once a second, not per MAC
        self._pending: list[tuple[str, str | None, str | None, int, float, float]] = []
        self._known = {row[0] for row in self.db.execute("SELECT mac FROM stations")}
        self._pending_aps: list[tuple[str, str, int, str, int, float, float]] = []
        self._aps = {(b, s): bool(a) for b, s, a in self.db.execute(
            "SELECT bssid, ssid, approved FROM access_points")}

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

    def approved_aps(self) -> list[tuple[str, str]]:
        """(bssid, ssid) of the approved access points."""
        return sorted(key for key, approved in self._aps.items() if approved)

    def approves_ap(self, bssid: str, ssid: str) -> bool:
        """True for an access point approved for this SSID (imported, or learned in the learning period)."""
        return self._aps.get((bssid, ssid), False)

    def knows_ap(self, bssid: str, ssid: str) -> bool:
        """True for an access point already in the inventory, approved or not."""
        return (bssid, ssid) in self._aps

    def record_ap(self, bssid: str, ssid: str, channel: int, security: str, ts: float, approved: bool) -> None:
        """Add an access point heard for the first time with this SSID (deferred like stations)."""
        self._aps[(bssid, ssid)] = approved
        row = (bssid, ssid, channel, security, int(approved), ts, ts)
        if self.deferred:
            self._pending_aps.append(row)
            return
        self.db.execute(_INSERT_AP, row)

    def flush(self, last_seen: dict[str, float] | None = None,
              ap_last_seen: dict[tuple[str, str], float] | None = None, ready: set[str] | None = None) -> int:
        """Write the deferred new stations and access points and move last-seen times forward, in one
        transaction; returns how many new rows were written. With `ready`, only the stations whose MAC is in it
        are written (and taken out of it): the service puts a MAC there once its fact is stored, so a crash
        never leaves a station known but unreported. A failed write keeps every row for the next flush."""
        if ready is None:
            rows, keep = self._pending, []
        else:
            rows = [r for r in self._pending if r[0] in ready]
            keep = [r for r in self._pending if r[0] not in ready]
        aps = self._pending_aps
        if not rows and not aps and not last_seen and not ap_last_seen:
            return 0
        self._pending, self._pending_aps = keep, []
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany(_INSERT, rows)
                self.db.executemany(_INSERT_AP, aps)
                if last_seen:
                    self.db.executemany("UPDATE stations SET last_seen = max(last_seen, ?) WHERE mac = ?",
                                        [(ts, mac) for mac, ts in last_seen.items()])
                if ap_last_seen:
                    self.db.executemany("UPDATE access_points SET last_seen = max(last_seen, ?) WHERE bssid = ? "
                                        "AND ssid = ?", [(ts, b, s) for (b, s), ts in ap_last_seen.items()])
        except Exception:
            self._pending = rows + self._pending
            self._pending_aps = aps + self._pending_aps
            raise
        if ready is not None:
            ready.difference_update(r[0] for r in rows)
        return len(rows) + len(aps)

    def approved(self) -> list[str]:
        """MACs marked approved."""
        return [row[0] for row in self.db.execute("SELECT mac FROM stations WHERE approved = 1 ORDER BY mac")]

    def prune(self, max_age_s: float, now: float | None = None) -> int:
        """Forget unapproved stations and access points not seen for `max_age_s` (the site's MAC retention);
        returns how many."""
        now = time.time() if now is None else now
        cutoff = now - max_age_s
        gone = [row[0] for row in self.db.execute(
            "SELECT mac FROM stations WHERE approved = 0 AND last_seen < ?", (cutoff,))]
        aps = [(b, s) for b, s in self.db.execute(
            "SELECT bssid, ssid FROM access_points WHERE approved = 0 AND last_seen < ?", (cutoff,))]
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM stations WHERE approved = 0 AND last_seen < ?", (cutoff,))
            self.db.execute("DELETE FROM access_points WHERE approved = 0 AND last_seen < ?", (cutoff,))
        self._known.difference_update(gone)
        for key in aps:
            self._aps.pop(key, None)
        return len(gone) + len(aps)

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

    def export_aps_csv(self, out: TextIO) -> int:
        """Write every access point as CSV (header first); returns the row count."""
        writer = csv.writer(out)
        writer.writerow(AP_CSV_FIELDS)
        n = 0
        for bssid, ssid, channel, security, approved, first, last in self.db.execute(
                "SELECT bssid, ssid, channel, security, approved, first_seen, last_seen FROM access_points "
                "ORDER BY ssid, bssid"):
            writer.writerow([bssid, ssid, channel, security, "yes" if approved else "no", _iso(first), _iso(last)])
            n += 1
        return n

    def import_aps_csv(self, rows: Iterable[str], now: float | None = None) -> int:
        """Approve every access point in a CSV with `bssid` and `ssid` columns (`channel`, `security` kept when
        given). All or nothing, like `import_csv`."""
        now = time.time() if now is None else now
        reader = csv.DictReader(rows)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "bssid" not in fields or "ssid" not in fields:
            raise InventoryError("line 1: the CSV needs 'bssid' and 'ssid' columns")
        parsed = []
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "") for k, v in row.items() if k}
            bssid = row.get("bssid", "").strip().lower().replace("-", ":")
            if not _MAC.match(bssid):
                raise InventoryError(f"line {line}: bssid {row.get('bssid')!r} is not a MAC address")
            ssid = row.get("ssid", "")
            if not ssid or len(ssid.encode()) > 32:
                raise InventoryError(f"line {line}: ssid {ssid!r} must be 1 to 32 bytes")
            channel = row.get("channel", "").strip() or "0"
            if not channel.isdigit():
                raise InventoryError(f"line {line}: channel {channel!r} is not a number")
            parsed.append((bssid, ssid, int(channel), row.get("security", "").strip() or "unknown"))
        with self.db:
            self.db.execute("BEGIN")
            for bssid, ssid, channel, security in parsed:
                self.db.execute("INSERT INTO access_points (bssid, ssid, channel, security, approved, first_seen, "
                                "last_seen) VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT(bssid, ssid) DO UPDATE SET "
                                "approved = 1", (bssid, ssid, channel, security, now, now))
        self._aps.update(((bssid, ssid), True) for bssid, ssid, _, _ in parsed)
        return len(parsed)

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
