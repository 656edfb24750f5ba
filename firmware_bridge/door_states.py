"""The last contact state the badge service published for each door, kept across restarts.

On start the first contact report of a door is compared with it: a door found open that was last
published closed (or never seen) is a DoorOpened now, so the edge's held-door rule has it; a door found
closed that was last published open is a DoorClosed (resolving a held-door alert); an unchanged state is
not repeated, so a restart does not look like an opening without a grant.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlite_utils

from edge.store import Migration, transaction


def _create(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE door_states (door TEXT PRIMARY KEY, open INTEGER NOT NULL, published_at TEXT NOT NULL)")


MIGRATIONS: tuple[Migration, ...] = (Migration("badge_0002_door_states", _create),)


class DoorStates:
    """Door id -> open (True) or closed (False), as last published; None when never seen."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self._open = {door: bool(is_open) for door, is_open in db.execute("SELECT door, open FROM door_states")}

    def get(self, door: str) -> bool | None:
        return self._open.get(door)

    def remember(self, door: str, is_open: bool) -> None:
        """Record the state (after its fact is stored: a crash in between repeats the fact, never loses it)."""
        with transaction(self.db):
            self.db.execute(
                "INSERT INTO door_states (door, open, published_at) VALUES (?, ?, ?) "
                "ON CONFLICT (door) DO UPDATE SET open = excluded.open, published_at = excluded.published_at",
                [door, int(is_open), datetime.now(UTC).isoformat()])
        self._open[door] = is_open
