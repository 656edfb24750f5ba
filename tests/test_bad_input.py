"""Bad payloads on subscribed topics are counted and logged once; the edge keeps working."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from conftest import SITE, query, wait_until, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_events import fact_shaped_objects

from edge import topics
from edge.brokers import free_port
from edge.bus import Inbound
from edge.config import load_settings
from edge.events import FACT_KINDS, DoorOpened, dump_event
from edge.ids import new_id
from edge.service import EdgeService
from edge.store import transaction


def _edge_watched(tmp_path: Path, mqtt_broker, service_factory, client_factory) -> tuple[Any, Any, Any]:
    """A running edge, a client watching its alerts and stats, and a client playing a device."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None)
    edge = service_factory(config, "edge")
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.alerts_filter(SITE))
    watcher.subscribe(topics.stats_topic(SITE, "edge"))
    return edge, watcher, client_factory(mqtt_broker.port)


def _last_stats(watcher: Any) -> dict[str, Any]:
    found = watcher.payloads(topics.stats_topic(SITE, "edge"))
    return found[-1] if found else {}


def test_garbage_on_fact_topics_never_stops_the_edge(tmp_path: Path, mqtt_broker, service_factory,
                                                     client_factory) -> None:
    edge, watcher, device = _edge_watched(tmp_path, mqtt_broker, service_factory, client_factory)
    topic = topics.fact_topic(SITE, "badge", "ctl-1", "door_opened")
    bad = {
        "not_json": b"{this is not json",
        "not_utf8": b"\xff\xfe\xfd\x00\x81",
        "bad_schema": json.dumps({"kind": "door_opened", "site": SITE, "door": 7}).encode(),
        "too_large": b'{"kind": "door_opened", "pad": "' + b"x" * (1024 * 1024) + b'"}',
        "unknown_kind": json.dumps({"kind": "door_teleported", "site": SITE}).encode(),
        "topic_mismatch": dump_event(DoorOpened(site="another-site", source="badge/ctl-1", door="x")),
    }
    for _ in range(3):
        for payload in bad.values():
            device.publish(topic, payload)
    device.publish(topics.status_topic(SITE, "badge"), b"\x00\x01 who knows")
    device.publish(topics.command_topic(SITE, "edge", "alert_ack"), b'{"alert": 1}')

    good = DoorOpened(site=SITE, source="badge/ctl-1", door="front")
    device.publish(topic, dump_event(good))
    alert_prefix = topics.alert_topic(SITE, "door_forced_open")
    alerts = wait_until(lambda: watcher.payloads(alert_prefix), 10, "the alert from the good fact after the garbage")
    assert alerts[0]["alert"]["fact_ids"] == [good.event_id]

    def stats() -> dict:
        return _last_stats(watcher)

    counts = wait_until(lambda: stats().get("rejected", {}).get("unknown_kind") == 3 and stats()["rejected"],
                        10, "the rejection counters")
    assert counts == {"not_json": 3, "not_utf8": 3, "bad_schema": 3, "too_large": 3, "unknown_kind": 3,
                      "topic_mismatch": 3, "bad_status": 1, "bad_command": 1}
    log = edge.output()
    for reason in bad:
        assert log.count(f"{topic}: {reason}") == 1, f"{reason} should be logged exactly once:\n{log}"
    assert edge.proc is not None and edge.proc.poll() is None


def test_poison_payloads_cannot_crash_loop_the_edge(tmp_path: Path, mqtt_broker, central_broker, service_factory,
                                                    client_factory) -> None:
    """Deep nesting and giant integers raise RecursionError/ValueError in json; a retained one would come back
    on every start, and the persistent session would redeliver an unacked one forever."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, central_broker.port)
    device = client_factory(mqtt_broker.port)
    fact_topic = topics.fact_topic(SITE, "badge", "ctl-1", "door_opened")
    deep = b"[" * 5000
    giant = b'{"kind": "door_opened", "n": ' + b"9" * 5000 + b"}"
    device.client.publish(fact_topic, deep, qos=1, retain=True).wait_for_publish(5)
    edge = service_factory(config, "edge")
    device.publish(fact_topic, giant)
    central = client_factory(central_broker.port)
    central.client.publish(topics.console_ack_topic(SITE), deep, qos=1, retain=True).wait_for_publish(5)

    edge.stop()
    edge.start()  # the retained poison is delivered again on start: still no crash
    good = DoorOpened(site=SITE, source="badge/ctl-1", door="front")
    device.publish(fact_topic, dump_event(good))
    wait_until(lambda: query(tmp_path / "data" / "edge.db", "SELECT count(*) FROM alerts") == [(1,)], 10,
               "the alert from the good fact")
    assert edge.proc is not None and edge.proc.poll() is None
    assert "RecursionError" in edge.output()
    assert "Traceback" not in edge.output()


def test_console_keeps_and_confirms_an_alert_message_it_cannot_read(tmp_path: Path, central_broker,
                                                                     service_factory, client_factory) -> None:
    """Otherwise a site would resend it every ack timeout, forever (e.g. a newer edge than console)."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", central_broker.port, central_broker.port)
    service_factory(config, "console")
    site = client_factory(central_broker.port)
    site.subscribe(topics.console_ack_topic(SITE))
    unreadable = json.dumps({"message_id": "01a1fe57-0000-7000-8000-000000000001", "v": 2, "seq": 1,
                             "type": "new", "alert": {"kind": "from_the_future"}}).encode()
    site.publish(topics.alert_topic(SITE, "from_the_future"), unreadable)
    acks = wait_until(lambda: site.payloads(), 10, "the console's confirmation")
    assert acks == [{"message_ids": ["01a1fe57-0000-7000-8000-000000000001"]}]
    rows = query(tmp_path / "data" / "console.db", "SELECT message_id, site, reason, payload FROM rejected_messages")
    assert rows == [("01a1fe57-0000-7000-8000-000000000001", SITE, "unreadable", unreadable)]
    assert query(tmp_path / "data" / "console.db", "SELECT count(*) FROM alerts") == [(0,)]


def test_any_fact_shaped_message_is_handled_or_labelled_by_the_edge(tmp_path: Path, caplog) -> None:
    """The edge's whole fact path (parse, store in a real sqlite file, rules, alert store) in this process,
    without brokers, over generated facts: each is stored or counted as bad_schema/unknown_kind/topic_mismatch;
    none is a handler_error, and no rule fails with a traceback."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", free_port(), None)
    edge = EdgeService(load_settings(config))
    caplog.set_level(logging.WARNING)

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=fact_shaped_objects(), ours=st.booleans())
    def handle(data: dict, ours: bool) -> None:
        if ours:
            data = {**data, "site": SITE}
        kind = data.get("kind")
        named = kind if isinstance(kind, str) and kind in FACT_KINDS else "door_opened"
        topic = topics.fact_topic(SITE, "badge", "ctl-1", named)
        with transaction(edge.db):
            edge._handle_safely(Inbound(edge.local, topic, json.dumps(data).encode(), 1, False, 1))

    try:
        handle()
    finally:
        edge.db.conn.close()
    assert set(edge.rejects.counts) <= {"bad_schema", "unknown_kind", "topic_mismatch"}, edge.rejects.counts
    assert edge.counts["facts_received"] > 0
    failures = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not failures, failures[0].getMessage()


def test_edge_counts_a_list_kind_as_bad_schema_and_handles_the_next_fact(tmp_path: Path, mqtt_broker,
                                                                         service_factory, client_factory) -> None:
    """`{"kind": [...]}` raised `TypeError: unhashable type` in the parser: a handler_error with a traceback."""
    edge, watcher, device = _edge_watched(tmp_path, mqtt_broker, service_factory, client_factory)
    topic = topics.fact_topic(SITE, "badge", "ctl-1", "door_opened")
    good = DoorOpened(site=SITE, source="badge/ctl-1", door="front")
    for kind in (["door_opened"], {"door_opened": 1}, 7, None, True):
        body = json.loads(dump_event(good)) | {"kind": kind, "event_id": new_id()}
        device.publish(topic, json.dumps(body).encode())
    device.publish(topic, dump_event(good))

    alert_prefix = topics.alert_topic(SITE, "door_forced_open")
    alerts = wait_until(lambda: watcher.payloads(alert_prefix), 10, "the alert from the good fact")
    assert alerts[0]["alert"]["fact_ids"] == [good.event_id]

    def rejected() -> dict:
        return _last_stats(watcher).get("rejected", {})

    assert wait_until(lambda: rejected().get("bad_schema") == 5 and rejected(), 10, "the counters") == \
        {"bad_schema": 5}
    log = edge.output()
    assert log.count(f"{topic}: bad_schema") == 1, log
    assert "Traceback" not in log and "handler_error" not in log
