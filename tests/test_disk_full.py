"""A full data directory: the edge says so once, waits with backoff, loses nothing and resumes by itself."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import SITE, query, wait_until, write_config

from edge import topics
from edge.alert_store import AlertStore
from edge.brokers import free_port
from edge.bus import Inbound
from edge.config import load_settings
from edge.events import AccessDenied, DoorOpened, dump_event
from edge.ids import new_id
from edge.migrations import MIGRATIONS
from edge.service import EdgeService
from edge.store import TransactionLost, is_disk_full, open_database, savepoint, transaction

DATA_DIR_BYTES = 4 * 1024 * 1024
FULL_LINE = "is full ("


@pytest.fixture
def small_data_dir(tmp_path: Path) -> Any:
    """A 4 MB tmpfs mounted as the edge's data directory, so that the disk really fills (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the data directory needs root")
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DATA_DIR_BYTES}", "tmpfs", str(data)], check=True)
    stoppers: list[Any] = []
    try:
        yield data, stoppers.append
    finally:
        for stop in stoppers:  # nothing may hold a file open on it at unmount
            stop()
        subprocess.run(["umount", str(data)], check=True)


def _fill(path: Path) -> None:
    """Write zeros until the file system refuses."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as err:
                assert err.errno == errno.ENOSPC
                chunk = chunk[: len(chunk) // 2]
                if not chunk:
                    return


def _forced(door: str) -> bytes:
    return dump_event(DoorOpened(site=SITE, source="badge/ctl-1", door=door))


def test_edge_waits_out_a_full_disk_and_loses_nothing(small_data_dir, tmp_path: Path, mqtt_broker, service_factory,
                                                      client_factory) -> None:
    """Before: a raw sqlite3.OperationalError traceback after "edge stopped", then a crash loop under systemd.
    Now: one CRITICAL line naming the directory and its free space, a retained degraded health in the stats,
    facts held unacknowledged, and after space returns every fact stored and alerted exactly once, including
    across a restart while the disk is full (no alert message sent twice on the local alert topic)."""
    data, on_teardown = small_data_dir
    config = write_config(tmp_path / "config.yaml", data, mqtt_broker.port, None)
    edge = service_factory(config, "edge")
    on_teardown(edge.stop)
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.alerts_filter(SITE))
    watcher.subscribe(topics.stats_topic(SITE, "edge"))
    device = client_factory(mqtt_broker.port)
    db = data / "edge.db"

    def alerts() -> list[dict]:
        return watcher.payloads(topics.alert_topic(SITE, "door_forced_open"))

    def health() -> dict:
        stats = watcher.payloads(topics.stats_topic(SITE, "edge"))
        return stats[-1].get("health", {}) if stats else {}

    device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"), _forced("door-a"))
    wait_until(lambda: len(alerts()) == 1, 10, "the alert for door-a")
    wait_until(lambda: query(db, "SELECT acked_seq FROM alert_feed") == [(1,)], 10, "door-a's delivery recorded")

    _fill(data / "filler")
    doors = [f"door-b{i}" for i in range(5)]
    for door in doors:
        device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"), _forced(door))
    degraded = wait_until(lambda: health().get("attempts", 0) >= 3 and health(), 30, "three tries on a full disk")
    assert degraded["state"] == "degraded" and degraded["reason"] == "disk_full"
    assert degraded["data_dir"] == str(data) and isinstance(degraded["free_bytes"], int)
    assert edge.proc is not None and edge.proc.poll() is None, edge.output()
    first_run = edge.output()
    full_lines = [line for line in first_run.splitlines() if FULL_LINE in line]
    assert len(full_lines) == 1, first_run
    assert "CRITICAL" in full_lines[0] and str(data) in full_lines[0] and "bytes free" in full_lines[0]
    assert "Traceback" not in first_run and first_run.count("CRITICAL") == 1, first_run
    assert len(alerts()) == 1

    edge.stop()  # a restart while the disk is still full: the held facts come again from the broker
    edge.start()
    wait_until(lambda: FULL_LINE in edge.output()[len(first_run):], 20, "the restarted edge to meet the full disk")

    (data / "filler").unlink()
    wait_until(lambda: len(alerts()) >= 1 + len(doors), 60, "the alerts for the held facts")
    wait_until(lambda: health().get("state") == "ok", 10, "the degraded health to clear")
    wait_until(lambda: query(db, "SELECT acked_seq = (SELECT max(seq) FROM alert_messages) FROM alert_feed")
               == [(1,)], 10, "every delivery recorded")
    got = alerts()
    assert sorted(m["alert"]["door"] for m in got) == sorted(["door-a", *doors])
    # Alerts raised in memory by a batch that then failed to commit must not linger and absorb the retry's.
    assert [(m["type"], m["alert"]["count"]) for m in got] == [("new", 1)] * len(got)
    every = watcher.payloads(f"sitewarden/{SITE}/alert/")
    assert len({m["message_id"] for m in every}) == len(every), "an alert message was sent twice"
    assert query(db, "SELECT count(*) FROM facts WHERE kind = 'door_opened'") == [(1 + len(doors),)]
    output = edge.output()
    assert output.count(FULL_LINE) == 2, output  # once per run
    assert "has room again" in output and "Traceback" not in output
    assert output.count("forced open: no badge") == 1 + len(doors), "alerts that rolled back were logged"
    assert edge.proc.poll() is None


def test_restart_on_a_full_disk_does_not_resend_a_delivered_alert(small_data_dir, tmp_path: Path, mqtt_broker,
                                                                   service_factory, client_factory) -> None:
    """The issue's crash loop: the broker's acknowledgement of the last alert message was to be recorded in the
    same transaction as the next facts; that one failed on the full disk, so every restart sent the message
    again. Now the acknowledgement is recorded on its own (a few bytes still fit where a big fact does not)."""
    data, on_teardown = small_data_dir
    config = write_config(tmp_path / "config.yaml", data, mqtt_broker.port, None, rules={"max_open_s": 3600})
    edge = service_factory(config, "edge")
    on_teardown(edge.stop)
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(f"sitewarden/{SITE}/alert/#")
    watcher.subscribe(topics.stats_topic(SITE, "edge"))
    device = client_factory(mqtt_broker.port)

    def health() -> dict:
        stats = watcher.payloads(topics.stats_topic(SITE, "edge"))
        return stats[-1].get("health", {}) if stats else {}

    filler = data / "filler"
    _fill(filler)
    os.truncate(filler, filler.stat().st_size - 192 * 1024)  # room for a small fact and its alert, no more
    device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"), _forced("door-a"))
    wait_until(lambda: watcher.payloads(f"sitewarden/{SITE}/alert/"), 10, "the alert for door-a")
    big = AccessDenied(site=SITE, source="badge/ctl-1", door="door-b", credential="raw:26bit",
                       reason="x" * 240_000)
    device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "access_denied"), dump_event(big))
    wait_until(lambda: health().get("state") == "degraded", 20, "the degraded health")

    for _ in range(2):
        edge.stop()
        edge.start()
        wait_until(lambda: health().get("state") == "degraded" and health().get("attempts") == 1, 20,
                   "the restarted edge to meet the full disk")
    assert len(watcher.payloads(f"sitewarden/{SITE}/alert/")) == 1, "an alert message was sent again"

    filler.unlink()
    wait_until(lambda: query(data / "edge.db", "SELECT count(*) FROM facts") == [(2,)], 30, "the big fact stored")
    wait_until(lambda: health().get("state") == "ok", 10, "the degraded health to clear")
    edge.stop()
    edge.start()
    device.publish(topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"), _forced("door-c"))
    got = wait_until(lambda: [m for m in watcher.payloads(f"sitewarden/{SITE}/alert/")
                              if m["alert"]["door"] == "door-c"], 10, "the alert for door-c")
    doors = [m["alert"]["door"] for m in watcher.payloads(f"sitewarden/{SITE}/alert/")]
    assert doors.count("door-a") == 1 and len(got) == 1, doors


def test_sqlite_reports_a_database_that_cannot_grow_as_disk_full(tmp_path: Path) -> None:
    """`max_page_count` makes sqlite answer SQLITE_FULL as on a full disk, without root or a mount."""
    db = open_database(tmp_path / "edge.db", MIGRATIONS)
    _cap(db)
    with pytest.raises(sqlite3.Error) as caught:
        with transaction(db), savepoint(db):
            _insert_big_fact(db)
    assert is_disk_full(caught.value)
    assert not db.conn.in_transaction
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    _cap(db, None)
    with transaction(db):
        _insert_big_fact(db)


def test_edge_holds_a_batch_it_cannot_store_and_stores_it_once_when_it_fits(tmp_path: Path, caplog) -> None:
    """The edge's own loop, in this process (no broker: acks and publishes go nowhere, which this test does not
    look at), on a database capped like a full disk, for machines where the tmpfs tests skip: the batch is
    held, not counted twice, said once at CRITICAL; once the cap is lifted it is stored and its alert raised
    once. (Here the write fails before the rules' tick; on a real full disk the commit fails after it, which
    the tmpfs test covers.)"""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", free_port(), None,
                          rules={"max_open_s": 3600})
    edge = EdgeService(load_settings(config))
    caplog.set_level(logging.INFO)
    try:
        _cap(edge.db)
        # The small fact alone would fit in the pages there are; with the big one the batch does not.
        fact = DoorOpened(site=SITE, source="badge/ctl-1", door="front")
        big = AccessDenied(site=SITE, source="badge/ctl-1", door="front", credential="raw:26bit", reason="x" * 100_000)
        for one in (fact, big):
            edge.inbox.put(Inbound(edge.local, topics.fact_topic(SITE, "badge", "ctl-1", one.kind), dump_event(one),
                                   1, False, 1))
        wait_until(lambda: edge.step(0.05) or edge.health.get("attempts", 0) >= 3, 20, "three tries")
        assert edge.health["reason"] == "disk_full" and edge.health["held_messages"] == 2
        assert edge.counts["facts_received"] == 0
        assert [r.levelname for r in caplog.records if FULL_LINE in r.getMessage()] == ["CRITICAL"]
        _cap(edge.db, None)
        wait_until(lambda: edge.step(0.05) or edge.health["state"] == "ok", 20, "the fact stored")
        assert edge.db.execute("SELECT event_id FROM facts ORDER BY rowid").fetchall() == [(fact.event_id,),
                                                                                            (big.event_id,)]
        assert edge.db.execute("SELECT type, alert_id IN (SELECT alert_id FROM alerts) FROM alert_messages "
                               "ORDER BY seq").fetchall() == [("new", 1)]
        assert edge.counts["facts_received"] == 2
        raised = [r for r in caplog.records if "forced open" in r.getMessage()]
        assert len(raised) == 1, "alerts of rolled-back batches were logged"
    finally:
        edge.db.conn.close()


def test_edge_acks_nothing_it_did_not_store_when_the_disk_fills_inside_a_rule(small_data_dir, tmp_path: Path,
                                                                               monkeypatch) -> None:
    """Before: with the batch spilling to disk mid-transaction (cache_size=1), the write failed inside a rule
    raising an alert; sqlite undid the whole transaction, the rule's error was logged as "rule failed;
    continuing", the rest committed in a new transaction and every message was acked with none stored, health ok.
    Now the batch is held unacknowledged, and once space returns each fact is stored, alerted and acked once."""
    data, on_teardown = small_data_dir
    config = write_config(tmp_path / "config.yaml", data, free_port(), None, rules={"max_open_s": 3600})
    edge = EdgeService(load_settings(config))
    on_teardown(edge.db.conn.close)
    acked: list[int] = []
    edge.local.ack = lambda item: acked.append(item.mid)  # type: ignore[method-assign]
    failed_in_rule: list[BaseException] = []
    raise_alert = AlertStore.raise_alert

    def watched(self: AlertStore, draft: Any) -> Any:
        try:
            return raise_alert(self, draft)
        except Exception as err:
            failed_in_rule.append(err)
            raise

    monkeypatch.setattr(AlertStore, "raise_alert", watched)
    # Every page a write dirties goes to the WAL at once, so the failure comes mid-batch, inside a statement.
    edge.db.conn.execute("PRAGMA cache_size=1")
    edge.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = data / "filler"
    _fill(filler)
    os.truncate(filler, filler.stat().st_size - 20 * 1024)
    doors = [f"door-{i}" for i in range(3)]
    for mid, door in enumerate(doors, start=1):
        edge.inbox.put(Inbound(edge.local, topics.fact_topic(SITE, "badge", "ctl-1", "door_opened"), _forced(door),
                               1, False, mid))

    edge.step(0.05)
    stored = {row[0] for row in edge.db.execute("SELECT json_extract(payload, '$.door') FROM facts").fetchall()}
    assert any(is_disk_full(err) for err in failed_in_rule), "the disk did not fill inside a rule"
    assert acked == [], f"acked {acked} with {sorted(stored)} stored"
    assert edge.health["state"] == "degraded" and edge.health["held_messages"] == len(doors)

    filler.unlink()
    wait_until(lambda: edge.step(0.05) or edge.health["state"] == "ok", 20, "the held batch stored")
    assert sorted(acked) == [1, 2, 3]
    assert edge.db.execute("SELECT json_extract(payload, '$.door') FROM facts ORDER BY rowid").fetchall() \
        == [(door,) for door in doors]
    assert edge.db.execute("SELECT a.kind, a.door, m.type FROM alert_messages m JOIN alerts a USING (alert_id) "
                           "ORDER BY m.seq").fetchall() == [("door_forced_open", door, "new") for door in doors]


def test_transaction_commits_nothing_after_it_was_rolled_back_underneath(tmp_path: Path) -> None:
    """sqlite undoes a whole transaction on some errors (a full disk among them), and what runs after is in a
    transaction of its own: the batch must not look committed (nor be acked), and an item's savepoint must not
    begin and commit a transaction by itself."""
    db = open_database(tmp_path / "edge.db", MIGRATIONS)
    with pytest.raises(TransactionLost):
        with transaction(db):
            db.conn.rollback()  # as sqlite does on SQLITE_FULL
            db.execute("SELECT count(*) FROM facts").fetchone()
    assert not db.conn.in_transaction
    with pytest.raises(TransactionLost):
        with transaction(db):
            db.conn.rollback()
            with savepoint(db):  # would begin a transaction of its own and commit it on release
                _insert_big_fact(db)
    assert db.execute("SELECT count(*) FROM facts").fetchone()[0] == 0
    with transaction(db), savepoint(db):
        _insert_big_fact(db)
    assert db.execute("SELECT count(*) FROM facts").fetchone()[0] == 1


def test_outbox_overflow_is_alerted_when_the_batch_that_overflowed_is_stored_on_a_retry(small_data_dir,
                                                                                        tmp_path: Path,
                                                                                        caplog) -> None:
    """Before: the batch that overflowed the outbox did not fit on the disk; its `outbox_overflowed` alert rolled
    back with it, but the outbox still thought itself in an overflow episode, so the retry evicted silently."""
    data, on_teardown = small_data_dir
    config = write_config(tmp_path / "config.yaml", data, free_port(), free_port(),
                          rules={"max_open_s": 3600}, forwarder={"outbox_max_rows": 10})
    edge = EdgeService(load_settings(config))
    on_teardown(edge.db.conn.close)
    edge.local.ack = lambda item: None  # type: ignore[method-assign]
    # Opened long enough ago for the rule to decide at once, at the batch's tick.
    opened_at = datetime.now(UTC) - timedelta(minutes=1)
    for i in range(10):
        _put(edge, DoorOpened(site=SITE, source="badge/ctl-1", door=f"door-{i}", occurred_at=opened_at))
        edge.step(0.05)
    assert edge.outbox is not None and edge.outbox.depth == 10
    edge.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = data / "filler"
    _fill(filler)
    _put(edge, DoorOpened(site=SITE, source="badge/ctl-1", door="door-x", occurred_at=opened_at))
    edge.step(0.05)  # its alert overflows the outbox; the commit finds no room
    assert edge.health["reason"] == "disk_full"
    assert "outbox full at" in caplog.text, "the batch did not overflow the outbox before it failed"
    assert edge.db.execute("SELECT count(*) FROM alerts WHERE kind = 'outbox_overflowed'").fetchone() == (0,)

    filler.unlink()
    wait_until(lambda: edge.step(0.05) or edge.health["state"] == "ok", 20, "the held batch stored")
    assert edge.db.execute("SELECT count(*) FROM alerts WHERE kind = 'outbox_overflowed'").fetchone() == (1,)
    # Each message beyond the bound evicted one, counted once: the rolled-back try's evictions are not.
    messages = edge.db.execute("SELECT count(*) FROM alert_messages").fetchone()[0]
    assert edge.stats()["outbox_evicted"] == messages - 10 and edge.outbox.depth == 10


def test_edge_starts_on_a_full_disk_when_feeding_its_rules_raises_an_alert(small_data_dir, tmp_path: Path) -> None:
    """Rules fed the stored facts at start may raise an alert (here: a lower denied-swipes threshold than the
    facts were judged by). On a full disk that write failed the start-up itself, a crash loop under systemd;
    now the edge starts, holds what comes, says it is degraded, and raises the alert once space returns."""
    data, on_teardown = small_data_dir
    rules = {"max_open_s": 3600, "denied_burst_count": 5}
    first = EdgeService(load_settings(write_config(tmp_path / "config.yaml", data, free_port(), None, rules=rules)))
    first.local.ack = lambda item: None  # type: ignore[method-assign]
    for _ in range(3):
        _put(first, AccessDenied(site=SITE, source="badge/ctl-1", door="front", credential="raw:26bit", reason="x"))
        first.step(0.05)
    # A second connection keeps the WAL and its index in place when the edge closes, as a restart would find them.
    holder = sqlite3.connect(data / "edge.db")
    on_teardown(holder.close)
    holder.execute("SELECT count(*) FROM facts").fetchone()
    first.db.conn.close()
    holder.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = data / "filler"
    _fill(filler)

    rules["denied_burst_count"] = 2
    edge = EdgeService(load_settings(write_config(tmp_path / "config.yaml", data, free_port(), None, rules=rules)))
    on_teardown(edge.db.conn.close)
    edge.local.ack = lambda item: None  # type: ignore[method-assign]
    edge.step(0.05)
    assert edge.health["reason"] == "disk_full"
    assert edge.db.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
    filler.unlink()
    wait_until(lambda: edge.step(0.05) or edge.health["state"] == "ok", 20, "the rules fed once space returned")
    assert edge.db.execute("SELECT kind FROM alerts").fetchall() == [("denied_swipes",)]


def _put(edge: EdgeService, fact: Any) -> None:
    edge.inbox.put(Inbound(edge.local, topics.fact_topic(SITE, "badge", "ctl-1", fact.kind), dump_event(fact),
                           1, False, 1))


def _cap(db: Any, pages: int | None = 0) -> None:
    """Let the database grow no further (pages=0: its current size), or lift the cap (None)."""
    if pages == 0:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.conn.execute(f"PRAGMA max_page_count = {pages or 2**31}")


def _insert_big_fact(db: Any) -> None:
    db.execute("INSERT INTO facts (event_id, kind, source, occurred_at, payload) VALUES (?, ?, ?, ?, ?)",
               [new_id(), "door_opened", "badge/ctl-1", 0.0, "x" * 100_000])
