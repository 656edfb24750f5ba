"""Alerts survive broker and process deaths: real brokers killed, real services killed, every alert counted."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import SITE, MqttClient, ServiceProcess, query, wait_until, write_config

from edge import topics
from edge.events import DoorOpened, dump_event

SOURCE = "badge/controller-1"
FORCED_DOOR_TOPIC = topics.fact_topic(SITE, "badge", "controller-1", "door_opened")
# The doors stay open for the whole test: with a day-long held-open limit each fact raises exactly one
# alert (door_forced_open) and never a second one (door_held_open).
ONE_ALERT_PER_DOOR = {"max_open_s": 86400}
DELIVERY_DEADLINE_S = 120.0
POLL_S = 0.5


def _forced_door(i: int) -> bytes:
    return dump_event(DoorOpened(site=SITE, source=SOURCE, door=f"d{i}"))


def _count(db: Path, sql: str) -> int:
    """One number from a service database; -1 while it cannot be read yet."""
    rows = query(db, sql)
    return int(rows[0][0]) if rows else -1


def _tally(data: Path) -> dict[str, int]:
    """What each side holds, for the assertions and their messages."""
    edge_db, console_db = data / "edge.db", data / "console.db"
    return {
        "edge_facts": _count(edge_db, "SELECT count(*) FROM facts WHERE kind = 'door_opened'"),
        "edge_alerts": _count(edge_db, "SELECT count(*) FROM alerts"),
        "edge_forced_doors": _count(edge_db, "SELECT count(DISTINCT door) FROM alerts "
                                             "WHERE kind = 'door_forced_open'"),
        "edge_messages": _count(edge_db, "SELECT count(*) FROM alert_messages"),
        "edge_outbox": _count(edge_db, "SELECT count(*) FROM outbox"),
        "console_alerts": _count(console_db, "SELECT count(*) FROM alerts"),
        "console_forced_doors": _count(console_db, "SELECT count(DISTINCT json_extract(payload, '$.door')) "
                                                   "FROM alerts WHERE kind = 'door_forced_open'"),
        "console_messages": _count(console_db, "SELECT count(*) FROM alert_messages"),
        "console_new_messages": _count(console_db, "SELECT count(*) FROM alert_messages WHERE type = 'new'"),
        "console_new_alert_ids": _count(console_db, "SELECT count(DISTINCT alert_id) FROM alert_messages "
                                                    "WHERE type = 'new'"),
    }


def _log_trouble(services: Sequence[ServiceProcess], limit: int = 15) -> str:
    """Warnings, errors and tracebacks from the services' logs: the evidence when a count is off."""
    parts = []
    for service in services:
        lines = [line for line in service.output().splitlines()
                 if re.search(r"WARNING|ERROR|CRITICAL|Traceback|Error:", line)]
        shown = "\n    ".join(lines[-limit:]) or "(none)"
        parts.append(f"{service.service} ({service.log.name}), {len(lines)} warning/error lines, last ones:\n"
                     f"    {shown}")
    return "\n".join(parts)


def _wait_for_delivery(data: Path, expected: int, services: Sequence[ServiceProcess],
                       deadline_s: float = DELIVERY_DEADLINE_S) -> dict[str, int]:
    """Wait until the console holds `expected` alerts and the edge's outbox drained; fail with the counts."""
    edge_db, console_db = data / "edge.db", data / "console.db"

    def delivered() -> bool:
        return (_count(edge_db, "SELECT count(*) FROM outbox") == 0
                and _count(console_db, "SELECT count(*) FROM alerts") >= expected)

    try:
        wait_until(delivered, deadline_s, f"{expected} alerts at the console and an empty outbox", POLL_S)
    except pytest.fail.Exception:
        pytest.fail(f"alerts did not all reach the console within {deadline_s:g} s: {_tally(data)}\n"
                    f"{_log_trouble(services)}")
    return _tally(data)


def _assert_each_door_alerted_once(data: Path, expected: int, tally: dict[str, int], context: str) -> None:
    want = {
        "edge_facts": expected, "edge_alerts": expected, "edge_forced_doors": expected, "edge_messages": expected,
        "edge_outbox": 0, "console_alerts": expected, "console_forced_doors": expected,
        "console_messages": expected, "console_new_messages": expected, "console_new_alert_ids": expected,
    }
    wrong = {key: f"{tally[key]} (want {value})" for key, value in want.items() if tally[key] != value}
    assert not wrong, f"{context}: counts off: {wrong}; all counts {tally}"
    edge_ids = {row[0] for row in query(data / "edge.db", "SELECT alert_id FROM alerts")}
    console_ids = {row[0] for row in query(data / "console.db", "SELECT alert_id FROM alerts")}
    assert console_ids == edge_ids, (f"{context}: {len(edge_ids - console_ids)} edge alerts missing at the console, "
                                     f"{len(console_ids - edge_ids)} console alerts unknown to the edge")
    doors = {row[0] for row in query(data / "edge.db", "SELECT door FROM alerts")}
    assert doors == {f"d{i}" for i in range(expected)}, f"{context}: alerted doors are not d0..d{expected - 1}"


def _publish_all(device: MqttClient, doors: range) -> None:
    infos = [device.publish(FORCED_DOOR_TOPIC, _forced_door(i), wait=False) for i in doors]
    wait_until(lambda: all(info.is_published() for info in infos), 60,
               f"the local broker to take all {len(infos)} facts")


class Producer(threading.Thread):
    """Publishes forced-door facts at a steady pace (QoS 1), as a busy site's door controllers would."""

    def __init__(self, device: MqttClient, count: int, rate_per_s: float) -> None:
        super().__init__(name="fact-producer", daemon=True)
        self.device = device
        self.count = count
        self.rate_per_s = rate_per_s
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        started = time.monotonic()
        try:
            for i in range(self.count):
                ahead_s = started + i / self.rate_per_s - time.monotonic()
                if ahead_s > 0:
                    time.sleep(ahead_s)  # the pace of the site, not a wait for a result
                self.infos.append(self.device.publish(FORCED_DOOR_TOPIC, _forced_door(i), wait=False))
        except BaseException as err:  # reported by finish()
            self.error = err

    def finish(self, deadline_s: float = 60.0) -> None:
        """Wait until every fact was published and the local broker acknowledged it."""
        wait_until(lambda: not self.is_alive(), deadline_s, "the producer to publish every fact")
        assert self.error is None, f"producer failed: {self.error!r}"
        assert len(self.infos) == self.count
        bad = [info.rc for info in self.infos if info.rc != mqtt.MQTT_ERR_SUCCESS]
        assert not bad, f"{len(bad)} publishes refused by paho (first rc {bad[0]})"
        wait_until(lambda: all(info.is_published() for info in self.infos), deadline_s,
                   f"the local broker to acknowledge all {self.count} facts")


def test_thousand_alerts_raised_while_central_broker_is_down_all_arrive(tmp_path: Path, mqtt_broker,
                                                                        central_broker, service_factory,
                                                                        client_factory) -> None:
    """The outbox, not any broker, carries alerts through a 30 s outage of the central broker.

    Neither service is restarted: the edge's forwarder and the console must each find the broker again
    by themselves, and the console must end with every alert exactly once.
    """
    expected, outage_s = 1000, 30.0
    data = tmp_path / "data"
    config = write_config(tmp_path / "config.yaml", data, mqtt_broker.port, central_broker.port,
                          rules=ONE_ALERT_PER_DOOR)
    console = service_factory(config, "console")
    edge = service_factory(config, "edge")
    console_pid = console.proc.pid
    device = client_factory(mqtt_broker.port)

    central_broker.stop()
    down_at = time.monotonic()
    wait_until(lambda: "lost broker" in console.output(), 10, "the console to notice the outage")
    _publish_all(device, range(expected))
    wait_until(lambda: _count(data / "edge.db", "SELECT count(*) FROM outbox") == expected, 30,
               f"the edge to hold all {expected} alerts in its outbox")
    assert _count(data / "console.db", "SELECT count(*) FROM alerts") == 0

    time.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))  # the outage itself
    central_broker.start()
    back = f"reconnected to broker 127.0.0.1:{central_broker.port}"
    wait_until(lambda: back in console.output(), 15, "the console to reconnect by itself")
    wait_until(lambda: back in edge.output(), 15, "the edge's forwarder to reconnect by itself")
    tally = _wait_for_delivery(data, expected, [edge, console], deadline_s=60)

    print(f"\n{expected} alerts through a {outage_s:g} s central outage: {tally}")
    assert console.proc.poll() is None and console.proc.pid == console_pid, "the console was not the same process"
    _assert_each_door_alerted_once(data, expected, tally, "after the central outage")


def _central_links(services: Sequence[ServiceProcess], port: int) -> list[int]:
    """How often each service has connected to the central broker so far (restarts included)."""
    return [service.output().count(f"connected to broker 127.0.0.1:{port}") for service in services]


def test_ten_thousand_alerts_survive_central_broker_and_edge_kills(tmp_path: Path, mqtt_broker, central_broker,
                                                                   service_factory, client_factory) -> None:
    """At-least-once forwarding plus dedupe is exactly-once only if no link in the chain loses or doubles.

    While facts stream in, the central broker (no persistence: it forgets every queued message) is killed
    10 times and the edge 3 times (once during a central outage), all with SIGKILL. Each central kill waits
    until both services are connected again, so that every kill cuts live links. Afterwards each fact must
    have raised one alert at the edge (no second alert for a door after a redelivery or a replay) and each
    alert must be at the console once (nothing lost in a dead broker, nothing stored twice).
    """
    expected, rate_per_s = 10_000, 400.0
    disruptions = ["central", "central", "edge", "central", "central", "central+edge", "central", "central",
                   "edge", "central", "central", "central"]
    central_down_s = (0.5, 1.0, 1.5)
    data = tmp_path / "data"
    config = write_config(tmp_path / "config.yaml", data, mqtt_broker.port, central_broker.port,
                          rules=ONE_ALERT_PER_DOOR)
    console = service_factory(config, "console")
    edge = service_factory(config, "edge")
    producer = Producer(client_factory(mqtt_broker.port), expected, rate_per_s)

    started = time.monotonic()
    producer.start()
    spacing_s = expected / rate_per_s / (len(disruptions) + 1)
    central_kills = edge_kills = 0
    for n, what in enumerate(disruptions, start=1):
        time.sleep(max(0.0, started + n * spacing_s - time.monotonic()))  # spread over the producing period
        cut = [console, edge] if "central" in what else [edge]
        links = _central_links(cut, central_broker.port)
        if "central" in what:
            central_broker.kill()
        if "edge" in what:
            edge.kill()
            edge_kills += 1
        if "central" in what:
            time.sleep(central_down_s[central_kills % len(central_down_s)])  # the outage itself
            central_broker.start()
            central_kills += 1
        if "edge" in what:
            edge.start()
        wait_until(lambda cut=cut, before=links: all(
                       now > then for now, then in zip(_central_links(cut, central_broker.port), before, strict=True)),
                   15, f"{' and '.join(s.service for s in cut)} to connect to the central broker again after "
                       f"disruption {n} ({what})")
    chaos_s = time.monotonic() - started
    producer.finish()
    produced_s = time.monotonic() - started
    tally = _wait_for_delivery(data, expected, [edge, console])
    delivered_s = time.monotonic() - started

    summary = (f"{expected} facts at {rate_per_s:g}/s, {central_kills} central broker kills and {edge_kills} edge "
               f"kills over {chaos_s:.1f} s; all published after {produced_s:.1f} s, delivered after "
               f"{delivered_s:.1f} s; counts {tally}")
    print(f"\n{summary}")
    assert (central_kills, edge_kills) == (10, 3)
    assert console.output().count(f"lost broker 127.0.0.1:{central_broker.port}") == central_kills, (
        "a central kill did not cut the console's link: the scenario did not run as meant")
    _assert_each_door_alerted_once(data, expected, tally, summary)


def test_console_restart_loses_nothing(tmp_path: Path, mqtt_broker, central_broker, service_factory,
                                       client_factory) -> None:
    """A console killed mid-stream keeps its broker session: what it had not stored comes again, once."""
    expected, rate_per_s = 3000, 300.0
    data = tmp_path / "data"
    config = write_config(tmp_path / "config.yaml", data, mqtt_broker.port, central_broker.port,
                          rules=ONE_ALERT_PER_DOOR)
    console = service_factory(config, "console")
    edge = service_factory(config, "edge")
    producer = Producer(client_factory(mqtt_broker.port), expected, rate_per_s)

    started = time.monotonic()
    producer.start()
    console_db = data / "console.db"
    for kill_at in (expected // 3, 2 * expected // 3):
        wait_until(lambda at=kill_at: _count(console_db, "SELECT count(*) FROM alerts") >= at, 30,
                   f"{kill_at} alerts at the console")
        console.kill()
        time.sleep(1.0)  # the console is down while alerts keep coming
        console.start()
    producer.finish()
    tally = _wait_for_delivery(data, expected, [edge, console], deadline_s=90)

    print(f"\n{expected} alerts with 2 console kills, delivered after {time.monotonic() - started:.1f} s: {tally}")
    _assert_each_door_alerted_once(data, expected, tally, "after console kills")
