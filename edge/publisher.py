"""Durable publishing: a message is in the service's database before paho sees it, and leaves at PUBACK."""

from __future__ import annotations

import logging
import queue
import threading

import sqlite_utils
from paho.mqtt.client import MQTT_ERR_NO_CONN, MQTT_ERR_SUCCESS

from edge.bus import Bus
from edge.store import Migration, transaction

logger = logging.getLogger(__name__)

# paho numbers messages 1-65535; stay below so an id is never reused while its message is outstanding.
MAX_OUTSTANDING = 60_000
FLUSH_BATCH = 5000


def _create_publish_queue(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE publish_queue (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               topic TEXT NOT NULL,
               payload BLOB NOT NULL,
               qos INTEGER NOT NULL,
               retain INTEGER NOT NULL,
               created_at REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
           )"""
    )


MIGRATIONS = (Migration("publish_queue_v1", _create_publish_queue),)


class DurablePublisher:
    """Queue of messages for the local broker, kept in sqlite until the broker acknowledged them.

    `enqueue()` runs inside the caller's transaction, so a message is stored with the change that made it.
    `flush()` (after commit) hands new rows to paho; `reap()` deletes the rows whose PUBACK came. After a
    restart every row still present is sent again: at-least-once, and consumers dedupe by event id.
    One thread (the service's own loop) calls all three.
    """

    def __init__(self, db: sqlite_utils.Database, bus: Bus, max_outstanding: int = MAX_OUTSTANDING) -> None:
        self.db = db
        self.bus = bus
        self.max_outstanding = max_outstanding
        self._last_sent_id = 0
        self._mid_to_row: dict[int, int] = {}
        self._acked_rows: list[int] = []
        self._released: list[int] = []  # deleted inside the caller's transaction, which may still roll back
        self._lock = threading.Lock()

    def enqueue(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Store a message to publish; call inside the transaction that made it."""
        self.db.execute(
            "INSERT INTO publish_queue (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
            [topic, payload, qos, int(retain)],
        )

    def flush(self) -> int:
        """Hand committed rows not yet given to paho; paho keeps them across reconnects. Returns the count.

        At most `max_outstanding` are handed over at once: paho's message ids run 1-65535, and a publish whose
        id is still taken is dropped by paho. The rest wait here and go as acknowledgements come back.
        """
        room = self.max_outstanding - len(self._mid_to_row)
        if room <= 0:
            return 0
        rows = self.db.execute(
            "SELECT id, topic, payload, qos, retain FROM publish_queue WHERE id > ? ORDER BY id LIMIT ?",
            [self._last_sent_id, min(room, FLUSH_BATCH)],
        ).fetchall()
        sent = 0
        zero: list[int] = []
        for row_id, topic, payload, qos, retain in rows:
            # Hold our lock across publish and the mid record so reap() never sees an unknown mid.
            with self._lock:
                info = self.bus.publish(topic, payload, qos=qos, retain=bool(retain))
                if info.rc not in (MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN):
                    # Not taken (e.g. queue full): leave the row for the next flush.
                    logger.warning("paho refused a publish on %s (rc %s); it stays queued", topic, info.rc)
                    break
                if qos > 0:
                    self._mid_to_row[info.mid] = row_id
                else:
                    zero.append(row_id)
            self._last_sent_id = row_id
            sent += 1
        if zero:
            self._delete(zero)
        return sent

    def reap(self) -> int:
        """Delete rows the broker acknowledged; returns how many."""
        mids = []
        while True:
            try:
                mids.append(self.bus.published.get_nowait())
            except queue.Empty:
                break
        return self.release(mids)

    def release(self, mids: list[int]) -> int:
        """Delete the rows of these acknowledged message ids (others are not ours); returns how many.

        The ids become row ids at once (paho reuses a message id as soon as it was acknowledged). When the
        delete fails, the row ids wait for the next call, so a database error never strands an acknowledged
        row until a restart sends it again.
        """
        self.take(mids)
        with self._lock:
            done = list(self._acked_rows)
        if done:
            self._delete(done)
            with self._lock:
                del self._acked_rows[:len(done)]
                self._released = done
        return len(done)

    def take(self, mids: list[int]) -> None:
        """Note these acknowledged message ids (others are not ours); their rows go at the next release()."""
        with self._lock:
            for mid in mids:
                row_id = self._mid_to_row.pop(mid, None)
                if row_id is not None:
                    self._acked_rows.append(row_id)

    def rolled_back(self) -> None:
        """The caller's transaction around the last release() was rolled back: delete those rows next time."""
        with self._lock:
            self._acked_rows[:0] = self._released
            self._released = []

    def pending(self) -> int:
        """Rows not yet acknowledged by the broker."""
        return int(self.db.execute("SELECT count(*) FROM publish_queue").fetchone()[0])

    def _delete(self, ids: list[int]) -> None:
        with transaction(self.db):
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                self.db.execute(f"DELETE FROM publish_queue WHERE id IN ({','.join('?' * len(chunk))})", chunk)
