"""The cardholder list in the badge service's sqlite database: lookups, CSV import/export, whole-list updates."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable
from typing import Any

import sqlite_utils
from pydantic import ValidationError

from edge.store import Migration, transaction
from firmware_bridge.access import Cardholder

logger = logging.getLogger(__name__)

CSV_FIELDS = ("id", "name", "credential", "card_format", "enabled", "valid_from", "valid_until", "doors", "schedule")


def _create(db: sqlite_utils.Database) -> None:
    db.execute("""CREATE TABLE cardholders (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, credential TEXT NOT NULL UNIQUE, card_format TEXT,
        enabled INTEGER NOT NULL, valid_from TEXT, valid_until TEXT, doors TEXT NOT NULL, schedule TEXT NOT NULL)""")
    db.execute("CREATE TABLE cardholder_source (id INTEGER PRIMARY KEY CHECK (id = 1), source TEXT, version TEXT, "
               "updated_at TEXT)")


MIGRATIONS: tuple[Migration, ...] = (Migration("badge_0001_cardholders", _create),)


class CardholderError(ValueError):
    """A cardholder list that cannot be used; `problems` names each bad row or field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
        self.problems = problems


def _row(holder: Cardholder) -> dict[str, Any]:
    data = holder.model_dump(mode="json")
    data["doors"] = ",".join(holder.doors)
    data["enabled"] = int(holder.enabled)
    return data


def _from_row(row: dict[str, Any]) -> Cardholder:
    return Cardholder(**{**row, "enabled": bool(row["enabled"]), "doors": tuple(row["doors"].split(","))})


def validate_all(records: Iterable[dict[str, Any]], where: str) -> list[Cardholder]:
    """Every record as a Cardholder, or CardholderError naming each bad record, field and value."""
    holders: list[Cardholder] = []
    problems: list[str] = []
    seen_ids: dict[str, int] = {}
    seen_cards: dict[str, int] = {}
    for number, record in enumerate(records, start=1):
        try:
            holder = Cardholder.model_validate(record)
        except ValidationError as err:
            for e in err.errors():
                field = ".".join(str(p) for p in e["loc"]) or "record"
                problems.append(f"{where} {number}: {field}: {e['msg']}")
            continue
        for key, seen, label in ((holder.id, seen_ids, "id"), (holder.credential, seen_cards, "credential")):
            if key in seen:
                problems.append(f"{where} {number}: {label} repeats {where} {seen[key]}")
            seen[key] = number
        holders.append(holder)
    if problems:
        raise CardholderError(problems)
    return holders


def parse_csv(text: str) -> list[Cardholder]:
    """Cardholders from CSV with a header row (columns CSV_FIELDS; `doors` separated by `;`)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"id", "credential"} - set(reader.fieldnames or ())
    if missing:
        raise CardholderError([f"CSV header lacks column(s) {sorted(missing)}; expected {', '.join(CSV_FIELDS)}"])
    unknown = set(reader.fieldnames or ()) - set(CSV_FIELDS)
    if unknown:
        raise CardholderError([f"CSV header has unknown column(s) {sorted(unknown)}; expected {', '.join(CSV_FIELDS)}"])
    records = []
    for row in reader:
        if None in row:
            records.append({"__extra_cells__": row[None]})  # more cells than columns: let validation name it
            continue
        record: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
        if "doors" in record:
            record["doors"] = tuple(d.strip() for d in record["doors"].split(";") if d.strip())
        records.append(record)
    return validate_all(records, "CSV line")


def to_csv(holders: Iterable[Cardholder]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for holder in holders:
        row = _row(holder)
        row["doors"] = ";".join(holder.doors)
        row["enabled"] = "true" if holder.enabled else "false"
        writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_FIELDS})
    return out.getvalue()


def parse_json_list(payload: bytes) -> tuple[str | None, list[Cardholder]]:
    """The retained config message: `{"version": "...", "cardholders": [...]}`."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as err:
        raise CardholderError([f"not JSON: {err}"]) from err
    if not isinstance(data, dict) or not isinstance(data.get("cardholders"), list):
        raise CardholderError(["expected an object with a `cardholders` list"])
    version = data.get("version")
    return (str(version) if version is not None else None), validate_all(data["cardholders"], "cardholder")


class CardholderStore:
    """Reads and replaces the cardholder table; lookups are by credential, with an in-memory index."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self._by_credential: dict[str, Cardholder] = {}
        self._data_version = -1
        self.reload()

    def refresh_if_changed(self) -> bool:
        """Reload when another connection (e.g. `sitewarden badge cardholders import`) committed a change."""
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return False
        self.reload()
        return True

    def reload(self) -> None:
        self._data_version = self.db.execute("PRAGMA data_version").fetchone()[0]
        rows = self.db.execute(f"SELECT {', '.join(CSV_FIELDS)} FROM cardholders").fetchall()
        holders = [_from_row(dict(zip(CSV_FIELDS, row, strict=True))) for row in rows]
        self._by_credential = {h.credential: h for h in holders}

    def lookup(self, credential: str, card_format: str | None) -> Cardholder | None:
        holder = self._by_credential.get(credential)
        if holder is None or (holder.card_format and card_format and holder.card_format != card_format):
            return None
        return holder

    def all(self) -> list[Cardholder]:
        return sorted(self._by_credential.values(), key=lambda h: h.id)

    def __len__(self) -> int:
        return len(self._by_credential)

    def replace_all(self, holders: list[Cardholder], source: str, version: str | None = None) -> None:
        """Swap the whole list in one transaction (a reader never sees half a list)."""
        with transaction(self.db):
            self.db.execute("DELETE FROM cardholders")
            self.db["cardholders"].insert_all([_row(h) for h in holders])  # type: ignore[union-attr]
            self.db.execute("INSERT OR REPLACE INTO cardholder_source VALUES (1, ?, ?, datetime('now'))",
                            [source, version])
        self.reload()

    def upsert(self, holders: list[Cardholder]) -> None:
        with transaction(self.db):
            for holder in holders:
                self.db.execute("DELETE FROM cardholders WHERE credential = ? AND id != ?",
                                [holder.credential, holder.id])
                self.db["cardholders"].upsert(_row(holder), pk="id")  # type: ignore[union-attr]
        self.reload()

    def version(self) -> str | None:
        row = self.db.execute("SELECT version FROM cardholder_source WHERE id = 1").fetchone()
        return row[0] if row else None
