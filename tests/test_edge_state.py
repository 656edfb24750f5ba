"""The edge service in-process: outbox overflow is loud, and a restart rebuilds state without repeats.

These drive EdgeService.step() directly with messages placed on its inbox (as paho's thread would), with
no broker: the forwarder's central broker is deliberately unreachable so the outbox fills.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import SITE, write_config

from edge import topics
from edge.brokers import free_port
from edge.bus import Inbound
from edge.config import load_settings
from edge.events import DoorClosed, DoorOpened, Event, ExitRequested, HeartbeatSent, dump_event, utcnow
from edge.service import EdgeService
from edge.store import transaction

SRC = "badge/ctl-1"


def _edge(tmp_path: Path, **rules: float) -> EdgeService:
    dead_port = free_port()  # nothing listens: the console is unreachable
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", dead_port, dead_port,
                          rules=rules, forwarder={"outbox_max_rows": 10})
    return EdgeService(load_settings(config))


def _deliver(edge: EdgeService, *facts: Event) -> None:
    for fact in facts:
        topic = topics.fact_topic(SITE, "badge", "ctl-1", fact.kind)  # type: ignore[attr-defined]
        edge.inbox.put(Inbound(edge.local, topic, dump_event(fact), 0, False, 0))
    edge.step(timeout_s=0.01)


def _rows(edge: EdgeService, sql: str) -> list[tuple]:
    return edge.db.execute(sql).fetchall()


def test_full_outbox_evicts_lowest_severity_first_and_says_so(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    edge = _edge(tmp_path, max_open_s=0.001)
    old = utcnow() - timedelta(seconds=5)
    # Three doors opened with no grant and held open, then closed: each makes a forced-open alert (high)
    # and a held-open alert (medium) with its end message.
    for door in ("h1", "h2", "h3"):
        _deliver(edge, DoorOpened(site=SITE, source=SRC, door=door, occurred_at=old))
        _deliver(edge, DoorClosed(site=SITE, source=SRC, door=door))
    # Forced doors (high), a burst larger than the outbox.
    with caplog.at_level(logging.WARNING):
        for i in range(12):
            _deliver(edge, DoorOpened(site=SITE, source=SRC, door=f"f{i}"),
                     DoorClosed(site=SITE, source=SRC, door=f"f{i}"))
    assert edge.outbox is not None
    assert edge.outbox.depth == 10 == _rows(edge, "SELECT count(*) FROM outbox")[0][0]
    made = 3 * 3 + 12 + 1  # the held doors, the forced burst, and the overflow alert itself
    assert edge.outbox.evicted_total == made - 10
    kinds = [r[0] for r in _rows(edge, "SELECT json_extract(a.payload, '$.alert.kind') FROM outbox "
                                       "JOIN alert_messages a USING (seq) ORDER BY seq")]
    assert "door_held_open" not in kinds, "medium-severity messages go first"
    assert kinds.count("outbox_overflowed") == 1
    assert len([r for r in caplog.records if "outbox full" in r.getMessage()]) == 1
    overflow = _rows(edge, "SELECT severity, state FROM alerts WHERE kind = 'outbox_overflowed'")
    assert overflow == [("critical", "new")]
    assert edge.stats()["outbox_evicted"] == edge.outbox.evicted_total
    # Everything is still in the local alert store: only forwarding lost the evicted messages.
    assert _rows(edge, "SELECT count(*) FROM alerts")[0][0] == 3 * 2 + 12 + 1


def test_restart_rebuilds_rule_state_and_never_raises_twice(tmp_path: Path) -> None:
    edge = _edge(tmp_path, max_open_s=60)
    opened_at = utcnow() - timedelta(seconds=30)
    exit_request = ExitRequested(site=SITE, source=SRC, door="lobby", occurred_at=opened_at - timedelta(seconds=1))
    held_open = DoorOpened(site=SITE, source=SRC, door="lobby", occurred_at=opened_at)
    forced = DoorOpened(site=SITE, source=SRC, door="dock")
    _deliver(edge, exit_request, held_open, forced)
    assert _rows(edge, "SELECT kind, door FROM alerts") == [("door_forced_open", "dock")]
    edge.db.conn.close()  # a crash: nothing else is cleaned up

    again = _edge(tmp_path, max_open_s=60)
    # The broker redelivers what the dead edge had not acked: recognised, not raised again.
    _deliver(again, forced)
    assert again.counts["facts_duplicate"] == 1
    assert _rows(again, "SELECT count(*) FROM alerts")[0][0] == 1
    # The lobby door was open before the crash: the rebuilt state still knows it.
    held_rule = next(r for r in again.rules if r.name == "door_held_open")
    with transaction(again.db):
        held_rule.on_tick(utcnow() + timedelta(seconds=31), again)
    assert sorted(r[0] for r in _rows(again, "SELECT door FROM alerts")) == ["dock", "lobby"]
    _deliver(again, DoorClosed(site=SITE, source=SRC, door="lobby"))
    assert _rows(again, "SELECT state FROM alerts WHERE door = 'lobby'") == [("resolved",)]


def test_backlog_after_downtime_raises_no_false_silence_or_held_door(tmp_path: Path) -> None:
    """After an outage the broker hands over minutes of queued facts, more than one batch: judged by the wall
    clock the heartbeat camera would look silent and a briefly open door held, until the backlog is read."""
    edge = _edge(tmp_path, max_open_s=30, silent_after_s=60)
    start = utcnow() - timedelta(seconds=600)
    facts: list[Event] = []
    for i in range(1200):  # one fact every 0.5 s over the last 10 minutes, more than two batches
        at = start + timedelta(seconds=i * 0.5)
        if i % 20 == 0:
            facts.append(HeartbeatSent(site=SITE, source="vision/cam-1", device_id="vision/cam-1",
                                       device_type="camera", interval_s=10, occurred_at=at))
        elif i == 601:
            facts.append(ExitRequested(site=SITE, source=SRC, door="lobby", occurred_at=at))
        elif i == 602:
            facts.append(DoorOpened(site=SITE, source=SRC, door="lobby", occurred_at=at))
        elif i == 641:  # closed after 19.5 s: within the limit
            facts.append(DoorClosed(site=SITE, source=SRC, door="lobby", occurred_at=at))
        else:
            facts.append(ExitRequested(site=SITE, source=SRC, door=f"d{i % 7}", occurred_at=at))
    for fact in facts:
        topic = topics.fact_topic(SITE, "badge", "ctl-1", fact.kind)  # type: ignore[attr-defined]
        edge.inbox.put(Inbound(edge.local, topic, dump_event(fact), 0, False, 0))
    steps = 0
    while not edge.inbox.empty():
        edge.step(timeout_s=0.01)
        steps += 1
    assert steps >= 3, "the backlog must span several batches for this test to mean anything"
    assert edge.counts["facts_received"] == 1200
    assert _rows(edge, "SELECT kind FROM alerts") == []
