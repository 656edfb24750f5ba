"""End to end on real brokers and real service processes: a door fact becomes a confirmed alert at the console."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import SITE, query, wait_until, write_config

from edge import topics
from edge.events import AccessGranted, DoorClosed, DoorOpened, dump_event

SOURCE = "badge/controller-1"


def _fact_topic(kind: str) -> str:
    return topics.fact_topic(SITE, "badge", "controller-1", kind)


def test_forced_door_alert_reaches_console_and_is_confirmed(tmp_path: Path, mqtt_broker, central_broker,
                                                             service_factory, client_factory) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, central_broker.port)
    watcher = client_factory(central_broker.port)
    watcher.subscribe(topics.console_alerts_filter(SITE))
    service_factory(config, "console")
    service_factory(config, "edge")
    device = client_factory(mqtt_broker.port)

    opened = DoorOpened(site=SITE, source=SOURCE, door="front")
    device.publish(_fact_topic("door_opened"), dump_event(opened))

    batches = wait_until(lambda: watcher.payloads(), 10, "the alert on the central broker")
    assert batches[0]["v"] == 1 and batches[0]["site"] == SITE
    received = batches[0]["messages"]
    alert = received[0]["alert"]
    assert received[0]["type"] == "new"
    assert alert["kind"] == "door_forced_open" and alert["door"] == "front"
    assert alert["fact_ids"] == [opened.event_id]
    edge_db = tmp_path / "data" / "edge.db"
    console_db = tmp_path / "data" / "console.db"
    assert query(edge_db, "SELECT kind, state FROM alerts") == [("door_forced_open", "new")]
    wait_until(lambda: query(console_db, "SELECT alert_id FROM alerts") == [(alert["alert_id"],)], 10,
               "the console to store the alert")
    wait_until(lambda: query(edge_db, "SELECT count(*) FROM outbox") == [(0,)], 10,
               "the console's confirmation to empty the outbox")


def test_granted_door_raises_nothing_and_held_door_resolves_on_close(tmp_path: Path, mqtt_broker,
                                                                     service_factory, client_factory) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None,
                          rules={"max_open_s": 1})
    alerts = client_factory(mqtt_broker.port)
    alerts.subscribe(topics.alerts_filter(SITE))
    service_factory(config, "edge")
    device = client_factory(mqtt_broker.port)

    device.publish(_fact_topic("access_granted"),
                   dump_event(AccessGranted(site=SITE, source=SOURCE, door="lab", credential="26bit:1/****2")))
    device.publish(_fact_topic("door_opened"), dump_event(DoorOpened(site=SITE, source=SOURCE, door="lab")))
    held = wait_until(lambda: alerts.payloads(), 10, "the held-open alert")
    assert [m["alert"]["kind"] for m in held] == ["door_held_open"]
    device.publish(_fact_topic("door_closed"), dump_event(DoorClosed(site=SITE, source=SOURCE, door="lab")))
    messages = wait_until(lambda: len(alerts.payloads()) >= 2 and alerts.payloads(), 10, "the end message")
    assert messages[1]["type"] == "end"
    assert messages[1]["alert"]["state"] == "resolved"
    assert messages[1]["alert"]["resolved_by"] == "rule:door_held_open"
    assert all(m["alert"]["kind"] != "door_forced_open" for m in messages)


def test_alert_ack_from_cli_reaches_console(tmp_path: Path, mqtt_broker, central_broker, service_factory,
                                            client_factory) -> None:
    """The door stays open for the whole test: its held-open limit is long, or on a slow run a second alert
    (door_held_open, 3 s by default here) joins the forced-open one before the console is read."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, central_broker.port,
                          rules={"max_open_s": 3600})
    service_factory(config, "console")
    service_factory(config, "edge")
    device = client_factory(mqtt_broker.port)
    device.publish(_fact_topic("door_opened"), dump_event(DoorOpened(site=SITE, source=SOURCE, door="dock")))
    edge_db = tmp_path / "data" / "edge.db"
    (alert_id,) = wait_until(lambda: query(edge_db, "SELECT alert_id FROM alerts"), 10, "the alert")[0]

    cli = [sys.executable, "-m", "edge.cli", "--config", str(config)]
    done = subprocess.run([*cli, "alerts", "ack", alert_id[-12:], "--by", "guard-anna", "--note", "on my way"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert f"{alert_id} door_forced_open is acknowledged (by guard-anna)" in done.stdout

    missing = subprocess.run([*cli, "alerts", "ack", "ffffffffffff"], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1
    assert "no alert matches 'ffffffffffff'" in missing.stderr

    console_db = tmp_path / "data" / "console.db"
    wait_until(lambda: query(console_db, "SELECT state FROM alerts") == [("acknowledged",)], 10,
               "the acknowledgement at the console")
    listed = subprocess.run([*cli, "alerts", "list", "--console", "--json"], capture_output=True, text=True,
                            timeout=30)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["alert_id"], r["state"], r["acknowledged_by"], r["note"]) for r in rows] == [
        (alert_id, "acknowledged", "guard-anna", "on my way")]


def test_alerts_tail_and_list_show_readable_lines(tmp_path: Path, mqtt_broker, service_factory,
                                                  client_factory) -> None:
    """tail only sees alerts raised after it subscribed, so facts for new doors go out until it prints one."""
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None)
    service_factory(config, "edge")
    cli = [sys.executable, "-m", "edge.cli", "--config", str(config)]
    tail = subprocess.Popen([*cli, "alerts", "tail", "--count", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    device = client_factory(mqtt_broker.port)
    for attempt in range(20):
        device.publish(_fact_topic("door_opened"),
                       dump_event(DoorOpened(site=SITE, source=SOURCE, door=f"front-{attempt}")))
        try:
            tail.wait(1)
            break
        except subprocess.TimeoutExpired:
            continue
    out, err = tail.communicate(timeout=10)
    assert tail.returncode == 0, err
    assert re.search(r"NEW +high +door_forced_open +front-\d+ +Door front-\d+ forced open: no badge grant", out), out

    listed = subprocess.run([*cli, "alerts", "list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"new +high +door_forced_open +front-0 ", listed.stdout), listed.stdout
