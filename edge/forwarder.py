"""Forwarding alerts to the central console: in order, at-least-once, confirmed end to end."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict

from pydantic import ValidationError

from edge import topics
from edge.alerts import ConsoleAck
from edge.bus import Bus
from edge.outbox import Outbox, Row
from edge.rejects import RejectLog

logger = logging.getLogger(__name__)

# One MQTT message carries up to this many alert messages (an `AlertBatch`), and stays under this size
# unless a single alert message is larger by itself. Brokers in front of consoles often cap message size.
BATCH_MAX_MESSAGES = 200
BATCH_MAX_BYTES = 128 * 1024


class Forwarder:
    """Sends outbox rows to the central broker and deletes them only when the console confirms them.

    A PUBACK from the central broker is not enough: the broker keeps messages in memory and loses them
    when it dies. Rows are sent in sequence order with at most `max_in_flight` unconfirmed, several to an
    MQTT message (an `AlertBatch` on `console_alerts_topic`); the console confirms them by message id, so
    a confirmation may cover part of a batch. After a reconnect, or when the oldest unconfirmed message
    waited `ack_timeout_s`, sending starts again from the oldest unconfirmed row (go-back-N), in batches
    cut afresh; the console dedupes the repeats by message id.
    """

    def __init__(self, outbox: Outbox, bus: Bus, *, site: str, max_in_flight: int, ack_timeout_s: float,
                 rejects: RejectLog) -> None:
        self.outbox = outbox
        self.bus = bus
        self.topic = topics.console_alerts_topic(site)
        self._envelope = b'{"v":1,"site":' + json.dumps(site).encode() + b',"messages":['
        self.max_in_flight = max_in_flight
        self.ack_timeout_s = ack_timeout_s
        self.rejects = rejects
        self._next_seq = 0
        self._in_flight: OrderedDict[str, float] = OrderedDict()  # message_id -> monotonic send time
        self.sent_total = 0
        self.confirmed_total = 0
        self.resends = 0
        self._timed_out_logged = False

    def on_link(self, up: bool) -> None:
        """Start over from the oldest unconfirmed row whenever the link comes back."""
        if up:
            self._rewind()

    def _rewind(self) -> None:
        if self._in_flight:
            self.resends += 1
        self._in_flight.clear()
        self._next_seq = 0

    def on_ack(self, payload: bytes, topic: str) -> None:
        """Handle the console's confirmation (inside the caller's transaction)."""
        try:
            ack = ConsoleAck.model_validate(json.loads(payload))
        except (ValueError, RecursionError, ValidationError) as err:
            self.rejects.reject(topic, "bad_console_ack", str(err).splitlines()[0], payload)
            return
        ids = list(ack.message_ids)
        for message_id in ids:
            self._in_flight.pop(message_id, None)
        self.confirmed_total += self.outbox.confirm(ids)
        self._timed_out_logged = False

    def pump(self, now: float) -> int:
        """Send what the window allows; returns how many were sent."""
        if not self.bus.connected.is_set():
            return 0
        if self._in_flight:
            oldest = next(iter(self._in_flight.values()))
            if now - oldest > self.ack_timeout_s:
                if not self._timed_out_logged:
                    logger.warning("console confirmed nothing for %.0f s; sending %d unconfirmed alert "
                                   "messages again", now - oldest, len(self._in_flight))
                    self._timed_out_logged = True
                self._rewind()
        room = self.max_in_flight - len(self._in_flight)
        if room <= 0:
            return 0
        rows = self.outbox.after(self._next_seq, room)
        for batch in _cut(rows):
            # The stored messages are the wire JSON already: the batch is assembled, not serialized again.
            self.bus.publish(self.topic, self._envelope + b",".join(row.payload for row in batch) + b"]}", qos=1)
            for row in batch:
                self._in_flight[row.message_id] = now
            self._next_seq = batch[-1].seq + 1
        self.sent_total += len(rows)
        return len(rows)

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet confirmed."""
        return len(self._in_flight)


def _cut(rows: list[Row]) -> list[list[Row]]:
    """Consecutive rows in batches of at most BATCH_MAX_MESSAGES and (unless one row is larger) BATCH_MAX_BYTES."""
    batches: list[list[Row]] = []
    batch: list[Row] = []
    size = 0
    for row in rows:
        if batch and (len(batch) >= BATCH_MAX_MESSAGES or size + len(row.payload) > BATCH_MAX_BYTES):
            batches.append(batch)
            batch, size = [], 0
        batch.append(row)
        size += len(row.payload) + 1
    if batch:
        batches.append(batch)
    return batches
