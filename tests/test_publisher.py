"""The durable publisher against a real broker: more queued messages than paho has message ids."""

from __future__ import annotations

from pathlib import Path

from conftest import SITE, wait_until

from edge.brokers import MosquittoBroker, free_port
from edge.bus import Bus
from edge.config import BrokerSettings
from edge.publisher import MAX_OUTSTANDING, MIGRATIONS, DurablePublisher
from edge.store import open_database, transaction

ROWS = 65_600  # more than paho's 65,535 message ids


def test_backlog_beyond_pahos_message_ids_is_delivered_whole(tmp_path: Path, client_factory) -> None:
    """paho drops a publish whose message id is still taken; the publisher must hold such rows back."""
    port = free_port()
    db = open_database(tmp_path / "svc.db", MIGRATIONS)
    bus = Bus(BrokerSettings(port=port, reconnect_max_delay_s=1), client_id="svc", site=SITE, service=None)
    publisher = DurablePublisher(db, bus)
    with transaction(db):
        for i in range(ROWS):
            publisher.enqueue("sitewarden/test-site/svc/dev/thing_happened", str(i).encode())
    bus.start()  # nothing listens yet: everything stays queued
    while publisher.flush():
        pass
    assert publisher.pending() == ROWS
    broker = MosquittoBroker(tmp_path / "broker", port=port)
    try:
        watcher = client_factory(port)
        watcher.subscribe("sitewarden/test-site/svc/#")

        def delivered() -> bool:
            publisher.reap()
            publisher.flush()
            return publisher.pending() == 0

        wait_until(delivered, 120, f"all {ROWS} rows to be acknowledged", interval_s=0.2)
        got = wait_until(lambda: len(watcher.messages) >= ROWS and watcher.messages, 60, "every message")
        assert sorted(int(m.payload) for m in got) == list(range(ROWS))
        assert MAX_OUTSTANDING < 65_535
    finally:
        bus.stop()
        broker.stop()
