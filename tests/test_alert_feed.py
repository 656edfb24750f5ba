"""Local alert topics are fed from the alert store's message log: at least once across restarts and upgrades."""

from __future__ import annotations

from pathlib import Path

from conftest import SITE, query, wait_until, write_config

from edge import publisher, topics
from edge.brokers import MosquittoBroker, free_port
from edge.bus import Inbound
from edge.config import load_settings
from edge.events import DoorOpened, dump_event
from edge.migrations import MIGRATIONS, _initial
from edge.outbox import Outbox
from edge.service import EdgeService
from edge.store import Migration, open_database, transaction

SRC = "badge/ctl-1"


def test_alert_messages_the_local_broker_never_acknowledged_go_out_after_a_restart(
        tmp_path: Path, service_factory, client_factory) -> None:
    """Stored before published: an edge that stops before the broker's PUBACK sends them again on start."""
    port = free_port()  # the local broker is down while the alerts are raised
    data = tmp_path / "data"
    config = write_config(tmp_path / "config.yaml", data, port, None, rules={"max_open_s": 86400})
    edge = EdgeService(load_settings(config))
    topic = topics.fact_topic(SITE, "badge", "ctl-1", "door_opened")
    for door in ("a", "b", "c"):
        fact = DoorOpened(site=SITE, source=SRC, door=door)
        edge.inbox.put(Inbound(edge.local, topic, dump_event(fact), 0, False, 0))
    edge.step(timeout_s=0.01)
    stored = [r[0] for r in edge.db.execute("SELECT message_id FROM alert_messages ORDER BY seq")]
    assert len(stored) == 3
    assert edge.db.execute("SELECT acked_seq FROM alert_feed").fetchone()[0] == 0
    assert edge.db.execute("SELECT count(*) FROM publish_queue").fetchone()[0] == 0, "no copy per alert"
    edge.db.conn.close()  # gone without a clean stop, as after kill -9

    broker = MosquittoBroker(tmp_path / "broker", port=port)
    try:
        watcher = client_factory(port)
        watcher.subscribe(topics.alerts_filter(SITE))
        service_factory(config, "edge")
        got = wait_until(lambda: len(watcher.payloads()) >= 3 and watcher.payloads(), 15, "the three alert messages")
        assert [m["message_id"] for m in got] == stored
        assert [m.topic for m in watcher.messages] == [topics.alert_topic(SITE, "door_forced_open")] * 3
        wait_until(lambda: query(data / "edge.db", "SELECT acked_seq FROM alert_feed") ==
                   query(data / "edge.db", "SELECT max(seq) FROM alert_messages"), 10,
                   "the feed's cursor past the acknowledged messages")
    finally:
        broker.stop()


def test_upgrade_keeps_the_outbox_and_does_not_publish_old_alert_messages_again(tmp_path: Path) -> None:
    """The lean schema: outbox rows point at alert_messages; what publish_queue holds still goes out from there."""
    path = tmp_path / "edge.db"
    old = open_database(path, (*publisher.MIGRATIONS, Migration("edge_v1", _initial)))
    with transaction(old):
        for seq in (1, 2, 3):
            old.execute("INSERT INTO alerts (alert_id, kind, severity, state, dedupe_key, raised_at, last_seen_at, "
                        "payload) VALUES (?, 'door_forced_open', 'high', 'new', ?, 0, 0, '{}')", [f"a{seq}", f"k{seq}"])
            old.execute("INSERT INTO alert_messages (seq, message_id, alert_id, type, created_at, payload) "
                        "VALUES (?, ?, ?, 'new', 0, ?)", [seq, f"m{seq}", f"a{seq}", f'{{"seq": {seq}}}'])
        for seq in (2, 3):
            old.execute("INSERT INTO outbox (seq, message_id, severity_rank, topic, payload) VALUES (?, ?, 3, 't', ?)",
                        [seq, f"m{seq}", f'{{"seq": {seq}}}'.encode()])
    old.conn.close()

    db = open_database(path, MIGRATIONS)
    assert db.execute("SELECT acked_seq FROM alert_feed").fetchone()[0] == 3
    outbox = Outbox(db, 10)
    assert outbox.depth == 2
    assert [(r.seq, r.message_id, r.payload) for r in outbox.after(0, 10)] == [
        (2, "m2", b'{"seq": 2}'), (3, "m3", b'{"seq": 3}')]
    with transaction(db):
        assert outbox.confirm(["m2", "unknown"]) == 1
    assert [r.seq for r in outbox.after(0, 10)] == [3]
