"""How a service publishes facts: stored in its own database first, sent with QoS 1, sent again after a restart."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from edge import topics
from edge.bus import Bus
from edge.config import Settings
from edge.events import Event, dump_event
from edge.publisher import MIGRATIONS, DurablePublisher
from edge.store import Migration, database_path, open_database, transaction

logger = logging.getLogger(__name__)

REAP_INTERVAL_S = 0.2


class FactProducer:
    """A service's way out to the local broker.

    `publish()` commits the fact to the service's database, then hands it to paho; the row is deleted only
    when the broker acknowledged it. Whatever a crash or a broker outage left behind goes out again when
    the service starts. Safe to call from several threads.
    """

    def __init__(self, settings: Settings, service: str, migrations: tuple[Migration, ...] = (),
                 inbox: queue.SimpleQueue[Any] | None = None) -> None:
        self.site = settings.site.id
        self.service = service
        self.db = open_database(database_path(settings.data_dir, service), (*MIGRATIONS, *migrations))
        self.bus = Bus(settings.mqtt, client_id=f"sitewarden-{self.site}-{service}", site=self.site,
                       service=service, inbox=inbox)
        self.publisher = DurablePublisher(self.db, self.bus)
        # Held around every use of `db`: a service that keeps its own tables here takes it too (re-entrant).
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self.reap_errors = 0
        self._reaper = threading.Thread(target=self._reap_loop, name=f"{service}-reaper", daemon=True)

    def start(self) -> None:
        """Connect, and send what an earlier run left unacknowledged."""
        left = self.publisher.pending()
        if left:
            logger.info("%s: sending %d facts again that the broker had not acknowledged", self.service, left)
        self.bus.start()
        self._reaper.start()

    def publish(self, *facts: Event) -> None:
        """Store the facts (one transaction), then publish them in order."""
        with self.atomic() as out:
            out.extend(facts)

    @contextmanager
    def atomic(self) -> Iterator[list[Event]]:
        """One transaction on the service's database for the caller's own writes and the facts it appends.

        Both commit together or neither does (an exception rolls back and propagates); the facts are handed
        to the broker after the commit. Use `db` inside the block: `with producer.atomic() as out: ...`.
        """
        with self.lock:
            facts: list[Event] = []
            with transaction(self.db):
                yield facts
                for fact in facts:
                    topic = topics.fact_topic(self.site, self.service, fact.device, fact.kind)  # type: ignore[attr-defined]
                    self.publisher.enqueue(topic, dump_event(fact))
            self.publisher.flush()

    def pending(self) -> int:
        """Facts not yet acknowledged by the broker."""
        with self.lock:
            return self.publisher.pending()

    def _reap_loop(self) -> None:
        """Delete what the broker acknowledged, and hand over what waits (leftovers, or beyond paho's ids).

        A database error (disk full, locked file) is logged once per run of failures and retried each round:
        the thread must outlive it, or acknowledged facts would pile up and leftovers never go out.
        """
        failed = 0
        while True:
            try:
                with self.lock:
                    self.publisher.reap()
                    self.publisher.flush()
            except Exception:
                self.reap_errors += 1
                if not failed:
                    logger.exception("%s: clearing acknowledged facts failed; retrying every %.1f s",
                                     self.service, REAP_INTERVAL_S)
                failed += 1
            else:
                if failed:
                    logger.info("%s: clearing acknowledged facts works again after %d failed rounds",
                                self.service, failed)
                failed = 0
            if self._stop.wait(REAP_INTERVAL_S):
                return

    def stop(self) -> None:
        """Wait briefly for outstanding acknowledgements, then disconnect (what is left goes next start)."""
        self._stop.set()
        if self._reaper.is_alive():
            self._reaper.join(2)
        with self.lock:
            self.publisher.reap()
        self.bus.stop()
        self.db.conn.close()
