"""The store: WAL mode, migrations recorded once in the database."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from edge.migrations import MIGRATIONS
from edge.store import Migration, open_database


def test_database_is_wal_and_records_its_migrations(tmp_path: Path) -> None:
    db = open_database(tmp_path / "edge.db", MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: a commit survives power loss
    names = [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == sorted(m.name for m in MIGRATIONS)
    assert {"facts", "alerts", "outbox", "publish_queue"} <= set(db.table_names())


def test_reopening_applies_only_new_migrations(tmp_path: Path) -> None:
    calls: list[str] = []

    def step(name: str) -> Migration:
        def apply(db: sqlite_utils.Database) -> None:
            calls.append(name)
            db.execute(f"CREATE TABLE {name} (x INTEGER)")
        return Migration(name, apply)

    open_database(tmp_path / "s.db", [step("one")]).conn.close()
    db = open_database(tmp_path / "s.db", [step("one"), step("two")])
    assert calls == ["one", "two"]
    assert {"one", "two"} <= set(db.table_names())


def test_failed_migration_leaves_nothing_half_done(tmp_path: Path) -> None:
    def broken(db: sqlite_utils.Database) -> None:
        db.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        open_database(tmp_path / "s.db", [Migration("broken", broken)])
    db = sqlite_utils.Database(tmp_path / "s.db")
    assert "half" not in db.table_names()
    assert list(db.execute("SELECT name FROM _migrations")) == []
