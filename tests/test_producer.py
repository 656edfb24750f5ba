"""Producers store a fact before publishing it, and send again after a restart what the broker never acked."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from conftest import SITE, wait_until, write_config

from edge import topics
from edge.brokers import MosquittoBroker, free_port
from edge.config import load_settings
from edge.events import DoorOpened
from edge.producer import FactProducer
from edge.store import database_path


def test_facts_published_while_the_broker_is_down_survive_a_crash(tmp_path: Path, client_factory) -> None:
    port = free_port()
    settings = load_settings(write_config(tmp_path / "config.yaml", tmp_path / "data", port, None))
    producer = FactProducer(settings, "badge")
    producer.start()
    facts = [DoorOpened(site=SITE, source="badge/ctl-1", door=f"d{i}") for i in range(200)]
    for fact in facts:
        producer.publish(fact)
    assert producer.pending() == 200  # stored, though no broker has seen them
    # A crash: the process dies with its paho queue; only the database remains.
    producer._stop.set()
    producer._reaper.join(5)
    producer.bus.client.loop_stop()
    producer.db.conn.close()

    broker = MosquittoBroker(tmp_path / "broker", port=port)
    try:
        watcher = client_factory(port)
        watcher.subscribe(topics.facts_filter(SITE))
        again = FactProducer(settings, "badge")
        again.start()
        got = wait_until(lambda: len(watcher.payloads()) >= 200 and watcher.payloads(), 15, "the 200 facts")
        assert sorted(p["event_id"] for p in got) == sorted(f.event_id for f in facts)
        wait_until(lambda: again.pending() == 0, 10, "the acknowledged rows to leave the store")
        again.stop()
    finally:
        broker.stop()


def test_producer_announces_its_availability(tmp_path: Path, mqtt_broker, client_factory) -> None:
    settings = load_settings(write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None))
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.status_topic(SITE, "badge"))
    producer = FactProducer(settings, "badge")
    producer.start()
    wait_until(lambda: [m.payload for m in watcher.messages] == [b"online"], 10, "online")
    producer.stop()
    wait_until(lambda: [m.payload for m in watcher.messages] == [b"online", b"offline"], 10, "offline on a clean stop")
    late = client_factory(mqtt_broker.port)
    late.subscribe(topics.status_topic(SITE, "badge"))
    retained = wait_until(lambda: late.messages, 10, "the retained availability")
    assert (retained[0].payload, bool(retained[0].retain)) == (b"offline", True)


def test_a_database_error_while_clearing_acks_is_logged_once_and_nothing_is_stranded(
        tmp_path: Path, client_factory, caplog: pytest.LogCaptureFixture) -> None:
    """Another connection holds the write lock (a real sqlite "database is locked"), then lets go."""
    port = free_port()
    settings = load_settings(write_config(tmp_path / "config.yaml", tmp_path / "data", port, None))
    producer = FactProducer(settings, "badge")
    producer.db.conn.execute("PRAGMA busy_timeout=50")
    facts = [DoorOpened(site=SITE, source="badge/ctl-1", door=f"d{i}") for i in range(20)]
    producer.publish(*facts)
    broker = MosquittoBroker(tmp_path / "broker", port=port)
    blocker = sqlite3.connect(database_path(settings.data_dir, "badge"), isolation_level=None)
    try:
        watcher = client_factory(port)
        watcher.subscribe(topics.facts_filter(SITE))
        with caplog.at_level(logging.INFO, logger="edge.producer"):
            blocker.execute("BEGIN IMMEDIATE")
            producer.start()
            got = wait_until(lambda: len(watcher.payloads()) >= 20 and watcher.payloads(), 15, "the 20 facts")
            wait_until(lambda: producer.reap_errors >= 5, 10, "several failed rounds")
            assert producer._reaper.is_alive()
            blocker.execute("ROLLBACK")
            wait_until(lambda: producer.pending() == 0, 10, "the acknowledged rows to leave the store")
        failed = [r for r in caplog.records if "clearing acknowledged facts failed" in r.getMessage()]
        again = [r for r in caplog.records if "works again" in r.getMessage()]
        assert len(failed) == 1 and "database is locked" in (failed[0].exc_text or "")
        assert len(again) == 1
        assert sorted(p["event_id"] for p in got) == sorted(f.event_id for f in facts)
        producer.stop()
    finally:
        blocker.close()
        broker.stop()
