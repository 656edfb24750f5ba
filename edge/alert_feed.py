"""The local alert topics, fed straight from the alert store's message log: in order, at least once."""

from __future__ import annotations

import logging
from collections import deque

import sqlite_utils
from paho.mqtt.client import MQTT_ERR_NO_CONN, MQTT_ERR_SUCCESS

from edge import topics
from edge.bus import Bus

logger = logging.getLogger(__name__)

MAX_OUTSTANDING = 30_000
FLUSH_BATCH = 5000


class AlertFeed:
    """Publishes every `alert_messages` row to `sitewarden/<site>/alert/<kind>` (QoS 1), in sequence order.

    The messages are already durable in the alert store, so nothing is copied to a queue: the table
    `alert_feed` remembers up to which sequence number the local broker acknowledged everything, and a
    restart sends what follows again (at-least-once; consumers dedupe by message id). `flush()` runs after
    the commit that stored new messages; `release()` and `save()` run inside the next transaction.
    One thread calls all of them.
    """

    def __init__(self, db: sqlite_utils.Database, bus: Bus, site: str,
                 max_outstanding: int = MAX_OUTSTANDING) -> None:
        self.db = db
        self.bus = bus
        self.site = site
        self.max_outstanding = max_outstanding
        self._acked = self._stored_cursor()
        self._saved = self._acked  # what the database holds; behind `_acked` after a rolled-back save
        self._sent = self._acked
        self._mid_to_seq: dict[int, int] = {}
        self._outstanding: deque[int] = deque()  # handed to paho, oldest first
        self._done: set[int] = set()  # acknowledged, but an older one is not yet

    def flush(self) -> int:
        """Hand paho the committed messages it has not had yet; returns how many."""
        room = self.max_outstanding - len(self._mid_to_seq)
        if room <= 0:
            return 0
        rows = self.db.execute(
            "SELECT m.seq, a.kind, m.payload FROM alert_messages m JOIN alerts a ON a.alert_id = m.alert_id "
            "WHERE m.seq > ? ORDER BY m.seq LIMIT ?", [self._sent, min(room, FLUSH_BATCH)],
        ).fetchall()
        sent = 0
        for seq, kind, payload in rows:
            info = self.bus.publish(topics.alert_topic(self.site, kind), payload.encode(), qos=1)
            if info.rc not in (MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN):
                logger.warning("paho refused an alert message (rc %s); it goes with the next flush", info.rc)
                break
            self._mid_to_seq[info.mid] = seq
            self._outstanding.append(seq)
            self._sent = seq
            sent += 1
        return sent

    def release(self, mid: int) -> bool:
        """The broker acknowledged message `mid`; False if it was not one of ours."""
        seq = self._mid_to_seq.pop(mid, None)
        if seq is None:
            return False
        self._done.add(seq)
        return True

    def save(self) -> None:
        """Move the durable cursor past every message acknowledged without a gap (inside a transaction)."""
        acked = self._acked
        while self._outstanding and self._outstanding[0] in self._done:
            acked = self._outstanding.popleft()
            self._done.discard(acked)
        self._acked = acked
        if acked != self._saved:
            self.db.execute("UPDATE alert_feed SET acked_seq = ? WHERE id = 1", [acked])
            self._saved = acked

    def rolled_back(self) -> None:
        """The transaction of the last save() was rolled back: the next save() writes the cursor again.

        Otherwise the database keeps the old cursor while memory moved on, and every restart sends the
        messages after it (already delivered) again.
        """
        self._saved = self._stored_cursor()

    @property
    def outstanding(self) -> int:
        """Messages handed to paho whose acknowledgement has not come back yet."""
        return len(self._mid_to_seq)

    def _stored_cursor(self) -> int:
        return int(self.db.execute("SELECT acked_seq FROM alert_feed WHERE id = 1").fetchone()[0])

    def pending(self) -> int:
        """Messages the local broker has not acknowledged yet."""
        return int(self.db.execute("SELECT count(*) FROM alert_messages WHERE seq > ?", [self._acked]).fetchone()[0])
