"""Bad payloads on subscribed topics are counted and logged once; the edge keeps working."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SITE, wait_until, write_config

from edge import topics
from edge.events import DoorOpened, dump_event


def test_garbage_on_fact_topics_never_stops_the_edge(tmp_path: Path, mqtt_broker, service_factory,
                                                     client_factory) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None)
    edge = service_factory(config, "edge")
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.alerts_filter(SITE))
    watcher.subscribe(topics.stats_topic(SITE, "edge"))
    device = client_factory(mqtt_broker.port)
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
    alerts = wait_until(lambda: [p for p in watcher.payloads("sitewarden/test-site/alert/")], 10,
                        "the alert from the good fact after the garbage")
    assert alerts[0]["alert"]["fact_ids"] == [good.event_id]

    def stats() -> dict:
        found = watcher.payloads(topics.stats_topic(SITE, "edge"))
        return found[-1] if found else {}

    counts = wait_until(lambda: stats().get("rejected", {}).get("unknown_kind") == 3 and stats()["rejected"],
                        10, "the rejection counters")
    assert counts == {"not_json": 3, "not_utf8": 3, "bad_schema": 3, "too_large": 3, "unknown_kind": 3,
                      "topic_mismatch": 3, "bad_status": 1, "bad_command": 1}
    log = edge.output()
    for reason in bad:
        assert log.count(f"{topic}: {reason}") == 1, f"{reason} should be logged exactly once:\n{log}"
    assert edge.proc is not None and edge.proc.poll() is None
