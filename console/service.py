"""The console receiver: subscribes to every site's alerts, stores each once, confirms it to its site."""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from console.store import MIGRATIONS, store_message, store_rejected
from edge import topics
from edge.alerts import AlertBatch, AlertMessage, ConsoleAck
from edge.bus import Bus, Inbound, LinkChanged
from edge.config import Settings
from edge.rejects import RejectLog
from edge.services import ServiceSpec
from edge.store import database_path, open_database, savepoint, transaction

logger = logging.getLogger(__name__)

BATCH_MAX = 2000
WAIT_S = 0.5
# Commits (each an fsync) at least this far apart, so one carries whatever arrived meanwhile; after a
# quiet spell nothing waits.
MIN_WRITE_INTERVAL_S = 0.005
# Ids per confirmation message: a backlog of batches must not make one unbounded MQTT message.
ACK_MAX_IDS = 1000
_READ_ERRORS = (ValidationError, ValueError, RecursionError)


@dataclass
class _Received:
    """What one MQTT message carried: alert messages to store, and ids of unreadable ones kept raw."""

    messages: list[AlertMessage] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


class ConsoleReceiver:
    """Stores in batches: one commit, then the MQTT acks and one confirmation per site.

    Sites forward batches of alert messages (`AlertBatch` on `sitewarden/<site>/console/alerts`); single
    messages on `sitewarden/<site>/alert/<kind>`, as edges sent them before batching, are still taken.
    Every message is stored once (dedupe by message id) and confirmed by id, repeats included.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = open_database(database_path(settings.data_dir, "console"), MIGRATIONS)
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.rejects = RejectLog("console")
        self.bus = Bus(settings.console.broker, client_id=settings.console.client_id, site=settings.site.id,
                       service="console", inbox=self.inbox, clean_session=False, manual_ack=True)
        self.stored_total = 0
        self.duplicate_total = 0
        self._last_write = 0.0

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set."""
        self.bus.subscribe(topics.console_alerts_filter("+"))
        self.bus.subscribe(topics.alerts_filter("+"))
        self.bus.start()
        logger.info("console receiving alerts of every site from %s", self.bus.where)
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.bus.stop()
            self.db.conn.close()

    def step(self, timeout_s: float = WAIT_S) -> None:
        """One batch of inbound MQTT messages: one commit, then the MQTT acks and one confirmation per site."""
        pause = self._last_write + MIN_WRITE_INTERVAL_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            batch = [self.inbox.get(timeout=timeout_s)]
        except queue.Empty:
            return
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        confirm: dict[str, list[str]] = defaultdict(list)
        handled: list[Inbound] = []
        with transaction(self.db):
            for item in batch:
                if isinstance(item, LinkChanged):
                    continue
                handled.append(item)
                topic = topics.parse_topic(item.topic)
                if topic is None or topic.kind not in ("alert", "console_alerts"):
                    self.rejects.reject(item.topic, "unknown_topic", "not an alert topic", item.payload)
                    continue
                received = self._parse_one(item, topic.site) if topic.kind == "alert" else \
                    self._parse_batch(item, topic.site)
                self._store(item, topic.site, received.messages)
                # Confirm repeats too: the site resent because our last confirmation was lost. Unreadable
                # messages kept raw for a person are confirmed so the site does not send them again and again.
                confirm[topic.site] += [m.message_id for m in received.messages] + received.kept
        self._last_write = time.monotonic()
        for item in handled:
            self.bus.ack(item)
        for site, ids in confirm.items():
            for start in range(0, len(ids), ACK_MAX_IDS):
                ack = ConsoleAck(message_ids=tuple(ids[start:start + ACK_MAX_IDS]))
                self.bus.publish(topics.console_ack_topic(site), ack.model_dump_json().encode(), qos=1)

    def _parse_one(self, item: Inbound, site: str) -> _Received:
        """A single alert message on `sitewarden/<site>/alert/<kind>`."""
        received = _Received()
        try:
            message = AlertMessage.model_validate_json(item.payload)
        except _READ_ERRORS as err:
            self.rejects.reject(item.topic, "bad_alert_message", str(err).splitlines()[0], item.payload)
            self._keep_unreadable(item, site, _loads(item.payload), item.payload, received)
            return received
        if message.alert.site != site:
            self.rejects.reject(item.topic, "topic_mismatch", f"payload says site {message.alert.site}",
                                item.payload)
            self._keep_unreadable(item, site, _loads(item.payload), item.payload, received)
            return received
        received.messages.append(message)
        return received

    def _parse_batch(self, item: Inbound, site: str) -> _Received:
        """A site's batch: read whole when all of it is good (the usual case), else message by message."""
        received = _Received()
        try:
            batch = AlertBatch.model_validate_json(item.payload)
        except _READ_ERRORS:
            pass
        else:
            if batch.site == site and all(m.alert.site == site for m in batch.messages):
                received.messages.extend(batch.messages)
                return received
        data = _loads(item.payload)
        entries = data.get("messages") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            self.rejects.reject(item.topic, "bad_alert_batch", "not a batch of alert messages", item.payload)
            return received
        for entry in entries:
            try:
                message = AlertMessage.model_validate(entry)
            except _READ_ERRORS as err:
                self.rejects.reject(item.topic, "bad_alert_message", str(err).splitlines()[0], item.payload)
                self._keep_unreadable(item, site, entry, None, received)
                continue
            if message.alert.site != site:
                self.rejects.reject(item.topic, "topic_mismatch", f"payload says site {message.alert.site}",
                                    item.payload)
                self._keep_unreadable(item, site, entry, None, received)
                continue
            received.messages.append(message)
        return received

    def _store(self, item: Inbound, site: str, messages: list[AlertMessage]) -> None:
        """Store the messages of one MQTT message together; should one fail, each on its own savepoint."""
        if not messages:
            return
        try:
            with savepoint(self.db, "received"):
                stored = [store_message(self.db, message) for message in messages]
        except sqlite3.OperationalError:
            raise  # the database itself is in trouble: nothing commits, nothing is acked, all comes again
        except Exception:
            stored = [self._store_alone(item, site, message) for message in messages]
        self.stored_total += sum(stored)
        self.duplicate_total += len(stored) - sum(stored)

    def _store_alone(self, item: Inbound, site: str, message: AlertMessage) -> bool:
        """One message on its own savepoint; one that cannot be stored is kept raw (and still confirmed)."""
        try:
            with savepoint(self.db):
                return store_message(self.db, message)
        except sqlite3.OperationalError:
            raise
        except Exception as err:
            self.rejects.reject(item.topic, "unstorable", f"{type(err).__name__}: {err}", item.payload, err)
            store_rejected(self.db, message.message_id, site, item.topic, "unstorable",
                           message.model_dump_json().encode())
            return False

    def _keep_unreadable(self, item: Inbound, site: str, data: Any, raw: bytes | None, received: _Received) -> None:
        """Keep an alert message we cannot read but can identify (by its message id), raw, for a person."""
        message_id = data.get("message_id") if isinstance(data, dict) else None
        if not isinstance(message_id, str) or not 1 <= len(message_id) <= 64:
            return
        store_rejected(self.db, message_id, site, item.topic, "unreadable",
                       raw if raw is not None else json.dumps(data).encode())
        received.kept.append(message_id)

    def stats(self) -> dict[str, Any]:
        """Counters."""
        return {"stored": self.stored_total, "duplicates": self.duplicate_total,
                "rejected": dict(self.rejects.counts)}


def _loads(payload: bytes) -> Any:
    """The JSON in a payload, or None when it is not JSON."""
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def run(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `sitewarden run console`."""
    ConsoleReceiver(settings).run(stop)


SERVICE = ServiceSpec(name="console", summary="central receiver of every site's alerts", run=run)
