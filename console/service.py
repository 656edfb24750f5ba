"""The console receiver: subscribes to every site's alerts, stores each once, confirms it to its site."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import defaultdict
from typing import Any

from pydantic import ValidationError

from console.store import MIGRATIONS, store_message, store_rejected
from edge import topics
from edge.alerts import AlertMessage, ConsoleAck
from edge.bus import Bus, Inbound, LinkChanged
from edge.config import Settings
from edge.rejects import RejectLog
from edge.services import ServiceSpec
from edge.store import database_path, open_database, transaction

logger = logging.getLogger(__name__)

BATCH_MAX = 2000
WAIT_S = 0.5


class ConsoleReceiver:
    """Stores in batches: one commit, then the MQTT acks and one confirmation per site."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = open_database(database_path(settings.data_dir, "console"), MIGRATIONS)
        self.inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.rejects = RejectLog("console")
        self.bus = Bus(settings.console.broker, client_id=settings.console.client_id, site=settings.site.id,
                       service="console", inbox=self.inbox, clean_session=False, manual_ack=True)
        self.stored_total = 0
        self.duplicate_total = 0

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set."""
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
        """One batch."""
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
                message = self._parse(item)
                if message is None:
                    kept = self._keep_unreadable(item)
                    if kept is not None:
                        # Stored for a person; confirmed so the site stops sending it again and again.
                        confirm[kept[0]].append(kept[1])
                    continue
                if store_message(self.db, message):
                    self.stored_total += 1
                else:
                    self.duplicate_total += 1
                # Confirm repeats too: the site resent because our last confirmation was lost.
                confirm[message.alert.site].append(message.message_id)
        for item in handled:
            self.bus.ack(item)
        for site, ids in confirm.items():
            ack = ConsoleAck(message_ids=tuple(ids))
            self.bus.publish(topics.console_ack_topic(site), ack.model_dump_json().encode(), qos=1)

    def _parse(self, item: Inbound) -> AlertMessage | None:
        topic = topics.parse_topic(item.topic)
        if topic is None or topic.kind != "alert":
            self.rejects.reject(item.topic, "unknown_topic", "not an alert topic", item.payload)
            return None
        try:
            message = AlertMessage.model_validate_json(item.payload)
        except (ValidationError, ValueError, RecursionError) as err:
            self.rejects.reject(item.topic, "bad_alert_message", str(err).splitlines()[0], item.payload)
            return None
        if message.alert.site != topic.site:
            self.rejects.reject(item.topic, "topic_mismatch", f"payload says site {message.alert.site}",
                                item.payload)
            return None
        return message

    def _keep_unreadable(self, item: Inbound) -> tuple[str, str] | None:
        """(site, message id) of a message we could not read but can identify, after storing it raw."""
        topic = topics.parse_topic(item.topic)
        if topic is None or topic.kind != "alert":
            return None
        try:
            data = json.loads(item.payload)
            message_id = data["message_id"] if isinstance(data, dict) else None
        except (ValueError, RecursionError, KeyError):
            return None
        if not isinstance(message_id, str) or not 1 <= len(message_id) <= 64:
            return None
        store_rejected(self.db, message_id, topic.site, item.topic, "unreadable", item.payload)
        return topic.site, message_id

    def stats(self) -> dict[str, Any]:
        """Counters."""
        return {"stored": self.stored_total, "duplicates": self.duplicate_total,
                "rejected": dict(self.rejects.counts)}


def run(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `sitewarden run console`."""
    ConsoleReceiver(settings).run(stop)


SERVICE = ServiceSpec(name="console", summary="central receiver of every site's alerts", run=run)


