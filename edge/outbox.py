"""The forwarder's outbox: which alert messages the central console has not confirmed yet."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

logger = logging.getLogger(__name__)

# Overflow ends (and may be reported again) when the outbox drains below this share of its bound.
OVERFLOW_CLEAR_RATIO = 0.9


@dataclass(frozen=True)
class Row:
    """One message waiting for the console."""

    seq: int
    message_id: str
    payload: bytes


class Outbox:
    """Bounded, durable, ordered by the site's sequence number.

    A row names a message in `alert_messages` (same `seq`), where the message itself is stored once.

    When full it evicts the oldest message of the lowest severity, counts it, and calls `on_overflow`
    once per overflow episode so the edge can raise an alert about it: never a silent loss.
    """

    def __init__(self, db: sqlite_utils.Database, max_rows: int,
                 on_overflow: Callable[[int], None] | None = None) -> None:
        self.db = db
        self.max_rows = max_rows
        self.on_overflow = on_overflow
        self.evicted_total = 0
        self._episode_evicted = 0
        self._overflowing = False
        self.depth = 0
        self.begin()
        self.reload()

    def begin(self) -> None:
        """Remember the overflow state at the start of a transaction, for `reload` to return to."""
        self._begun = (self.evicted_total, self._episode_evicted, self._overflowing)

    def reload(self) -> None:
        """Bring memory back in line with the database after a rolled-back transaction: the depth, and the
        overflow state as it was at `begin` (else the retry of the batch that overflowed would evict again
        without calling `on_overflow`, whose alert rolled back with the batch)."""
        self.depth = int(self.db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        self.evicted_total, self._episode_evicted, self._overflowing = self._begun

    def add(self, seq: int, severity_rank: int) -> None:
        """Queue the stored message `seq` (inside the caller's transaction), evicting if the outbox is full."""
        while self.depth >= self.max_rows:
            self._evict_one()
        self.db.execute("INSERT INTO outbox (seq, severity_rank) VALUES (?, ?)", [seq, severity_rank])
        self.depth += 1

    def _evict_one(self) -> None:
        row = self.db.execute("SELECT seq, severity_rank FROM outbox ORDER BY severity_rank, seq LIMIT 1").fetchone()
        if row is None:
            self.depth = 0
            return
        self.db.execute("DELETE FROM outbox WHERE seq = ?", [row[0]])
        self.depth -= 1
        self.evicted_total += 1
        self._episode_evicted += 1
        if not self._overflowing:
            self._overflowing = True
            logger.error(
                "outbox full at %d messages: evicting the oldest lowest-severity ones (first: seq %d, "
                "severity rank %d); the console will not receive them", self.max_rows, row[0], row[1],
            )
            if self.on_overflow is not None:
                self.on_overflow(self.max_rows)

    def after_confirm(self) -> None:
        """Close an overflow episode once the outbox drained."""
        if self._overflowing and self.depth < self.max_rows * OVERFLOW_CLEAR_RATIO:
            logger.warning("outbox below its bound again; %d messages were evicted in this overflow",
                           self._episode_evicted)
            self._overflowing = False
            self._episode_evicted = 0

    def confirm(self, message_ids: list[str]) -> int:
        """Delete what the console confirmed (inside the caller's transaction); returns rows removed."""
        removed = 0
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            removed += self.db.execute(
                f"DELETE FROM outbox WHERE seq IN (SELECT seq FROM alert_messages WHERE message_id IN ({marks}))",
                chunk,
            ).rowcount
        self.depth -= removed
        self.after_confirm()
        return removed

    def after(self, seq: int, limit: int) -> list[Row]:
        """Messages from `seq` on, in order."""
        rows = self.db.execute(
            "SELECT o.seq, m.message_id, m.payload FROM outbox o JOIN alert_messages m ON m.seq = o.seq "
            "WHERE o.seq >= ? ORDER BY o.seq LIMIT ?", [seq, limit]
        ).fetchall()
        return [Row(seq, message_id, payload.encode()) for seq, message_id, payload in rows]
