"""The badge service as a process: a simulated controller on a real pty, decisions on a real mosquitto broker."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import SITE, MqttClient, ServiceProcess, wait_until, write_config

from edge import topics
from edge.brokers import MosquittoBroker
from edge.config import load_settings
from firmware_bridge.access import DAYS
from firmware_bridge.protocol import InputChanged, InputKind, Led, LedColor, Unlock, encode_frame
from firmware_bridge.service import BadgeService
from firmware_bridge.sim_controller import SerialPair, SimulatedController
from firmware_bridge.wiegand import WiegandBits, encode

DEADLINE_S = 10.0


def _badge_config(port: Path) -> dict[str, Any]:
    return {"controllers": {"ctl-1": {
        "port": str(port), "silence_timeout_s": 2,
        "doors": {"front": {"reader": 0, "contact": 0, "rex": 0, "relay": 0, "unlock_ms": 4000},
                  "lab": {"reader": 1, "contact": 1, "relay": 1, "formats": ["H10306", "H10301"]}}}}}


def _cardholders() -> dict[str, Any]:
    today = date.today()
    not_today = DAYS[(today.weekday() + 2) % 7]
    return {"version": "v1", "cardholders": [
        {"id": "ann", "credential": "10:100"},
        {"id": "ben", "credential": "10:101", "doors": ["lab"]},
        {"id": "cas", "credential": "10:102", "schedule": f"{not_today} 00:00-24:00"},
        {"id": "dee", "credential": "10:103", "enabled": False},
        {"id": "eve", "credential": "10:104", "valid_until": (today - timedelta(days=2)).isoformat()},
        {"id": "fay", "credential": "500:60000", "card_format": "H10306"},
    ]}


def _start_badge(tmp_path: Path, port: int, pair: SerialPair, service_factory: Callable[[Path, str], ServiceProcess],
                 client_factory: Callable[[int], MqttClient]) -> tuple[MqttClient, ServiceProcess, Path]:
    """Publish the cardholder list, start the badge service on `pair`, wait until it follows the list;
    returns a watcher of the facts, the service and its config."""
    watcher = client_factory(port)
    watcher.subscribe(topics.facts_filter(SITE))
    client_factory(port).client.publish(topics.config_topic(SITE, "badge", "cardholders"),
                                        json.dumps(_cardholders()), qos=1, retain=True).wait_for_publish(5)
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", port, None, badge=_badge_config(pair.link))
    service = service_factory(config, "badge")
    wait_until(lambda: "cardholder list replaced" in service.output(), DEADLINE_S, "the cardholder list")
    return watcher, service, config


class Rig:
    def __init__(self, pair: SerialPair, controller: SimulatedController, watcher: MqttClient,
                 service: ServiceProcess) -> None:
        self.pair, self.controller, self.watcher, self.service = pair, controller, watcher, service

    def facts(self, kind: str) -> list[dict[str, Any]]:
        return [p for p in self.watcher.payloads(f"sitewarden/{SITE}/badge/") if p.get("kind") == kind]

    def wait_fact(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        return wait_until(lambda: (f := self.facts(kind)) and len(f) >= count and f, DEADLINE_S,
                          f"{count} {kind} fact(s)")


@pytest.fixture
def rig(tmp_path: Path, mqtt_broker: MosquittoBroker, serial_pty: Callable[[str], SerialPair],
        service_factory: Callable[[Path, str], ServiceProcess],
        client_factory: Callable[[int], MqttClient]) -> Any:
    pair = serial_pty("ctl-1")
    controller = SimulatedController(pair.master)
    for index in (0, 1):
        controller.set_input(InputKind.DOOR_CONTACT, index, False)
    controller.set_input(InputKind.TAMPER, 0, False)
    controller.start()
    watcher, service, _ = _start_badge(tmp_path, mqtt_broker.port, pair, service_factory, client_factory)
    rig = Rig(pair, controller, watcher, service)
    rig.wait_fact("device_came_online")
    yield rig
    controller.stop()


def test_swipe_grants_and_the_unlock_reaches_the_controller(rig: Rig) -> None:
    """End to end: a swipe on the simulated reader -> AccessGranted on the broker -> UNLOCK at the controller."""
    rig.controller.swipe(0, encode("H10301", 10, 100))
    swiped = rig.wait_fact("badge_swiped")[0]
    granted = rig.wait_fact("access_granted")[0]
    assert (granted["door"], granted["cardholder"], granted["credential"]) == ("front", "ann", "H10301:10/****0")
    assert (swiped["door"], swiped["reader"], swiped["card_format"]) == ("front", "ctl-1/0", "H10301")
    unlock = rig.controller.wait_for_command(Unlock)
    assert unlock is not None and unlock.frame.output == 0 and unlock.frame.duration_ms == 4000
    led = rig.controller.wait_for_command(Led)
    assert led is not None and led.frame.color == LedColor.GREEN
    assert "10:100" not in rig.service.output()  # badge numbers are masked in logs


@pytest.mark.parametrize(("reader", "bits", "reason"), [
    (0, encode("H10301", 10, 999), "unknown_card"),
    (0, encode("H10301", 10, 101), "wrong_door"),
    (0, encode("H10301", 10, 102), "outside_schedule"),
    (0, encode("H10301", 10, 103), "disabled"),
    (0, encode("H10301", 10, 104), "expired"),
    (0, WiegandBits(26, encode("H10301", 10, 100).value ^ 1), "parity_error"),
    (0, encode("H10306", 500, 60000), "unknown_length"),
])
def test_denials_say_why_and_never_unlock(rig: Rig, reader: int, bits: WiegandBits, reason: str) -> None:
    rig.controller.swipe(reader, bits)
    denied = rig.wait_fact("access_denied")[0]
    assert (denied["door"], denied["reason"]) == ("front", reason)
    led = rig.controller.wait_for_command(Led)
    assert led is not None and led.frame.color == LedColor.RED
    assert rig.controller.wait_for_command(Unlock, timeout_s=0.5) is None


def test_a_door_with_two_formats_decodes_the_34_bit_card(rig: Rig) -> None:
    rig.controller.swipe(1, encode("H10306", 500, 60000))
    granted = rig.wait_fact("access_granted")[0]
    assert (granted["door"], granted["cardholder"]) == ("lab", "fay")
    unlock = rig.controller.wait_for_command(Unlock)
    assert unlock is not None and unlock.frame.output == 1


def test_door_contact_exit_button_and_tamper_become_facts(rig: Rig) -> None:
    rig.controller.set_input(InputKind.REQUEST_TO_EXIT, 0, True)
    rig.controller.set_input(InputKind.DOOR_CONTACT, 0, True)
    rig.controller.set_input(InputKind.DOOR_CONTACT, 0, False)
    rig.controller.set_input(InputKind.TAMPER, 0, True)
    assert rig.wait_fact("exit_requested")[0]["door"] == "front"
    assert rig.wait_fact("door_opened")[0]["door"] == "front"
    assert rig.wait_fact("door_closed")[0]["door"] == "front"
    assert rig.wait_fact("tamper_detected")[0]["device_id"] == "badge/ctl-1"


def test_bridge_reconnects_after_pty_closes(rig: Rig, serial_pty: Callable[[str], SerialPair]) -> None:
    """The USB adapter is pulled (pty closed, symlink gone) and plugged back in: offline, then online."""
    rig.controller.stop()
    rig.pair.close()
    offline = rig.wait_fact("device_went_offline")[0]
    assert offline["device_id"] == "badge/ctl-1"
    pair = serial_pty("ctl-1")
    controller = SimulatedController(pair.master)
    controller.set_input(InputKind.DOOR_CONTACT, 0, False)
    controller.start()
    try:
        rig.wait_fact("device_came_online", count=2)
        controller.swipe(0, encode("H10301", 10, 100))
        rig.wait_fact("access_granted")
        assert controller.wait_for_command(Unlock) is not None
        assert rig.service.output().count("lost:") == 1  # one outage, logged once
    finally:
        controller.stop()


def test_garbage_on_the_line_is_skipped_and_the_next_frame_counts(rig: Rig) -> None:
    rig.controller.write_raw(b"\x13\x37garbage" * 50 + b"\x00" + b"\xff" * 300 + b"\x00")
    rig.controller.swipe(0, encode("H10301", 10, 100))
    rig.wait_fact("access_granted")
    assert rig.service.output().count("skipped a bad frame") >= 1


def test_a_bad_cardholder_list_is_refused_and_the_old_one_kept(rig: Rig, mqtt_broker: MosquittoBroker,
                                                              client_factory: Callable[[int], MqttClient]) -> None:
    admin = client_factory(mqtt_broker.port)
    bad = {"version": "v2", "cardholders": [{"id": "zed", "credential": "10:100", "schedule": "someday 9-5"}]}
    admin.client.publish(topics.config_topic(SITE, "badge", "cardholders"), json.dumps(bad), qos=1,
                         retain=True).wait_for_publish(5)
    wait_until(lambda: "kept the current list" in rig.service.output(), DEADLINE_S, "the refusal in the log")
    assert "cardholder 1: schedule" in rig.service.output()
    rig.controller.swipe(0, encode("H10301", 10, 100))
    assert rig.wait_fact("access_granted")[0]["cardholder"] == "ann"


def _facts(watcher: MqttClient, kind: str) -> list[dict[str, Any]]:
    return [p for p in watcher.payloads(f"sitewarden/{SITE}/badge/") if p.get("kind") == kind]


def _alerts(watcher: MqttClient, kind: str) -> list[dict[str, Any]]:
    return [p for p in watcher.payloads(f"sitewarden/{SITE}/alert/") if p["alert"]["kind"] == kind]


@pytest.fixture
def controller(serial_pty: Callable[[str], SerialPair]) -> Iterator[tuple[SerialPair, SimulatedController]]:
    """A simulated controller, not started, whose doors and tamper switch are closed: no change is pending, so
    the host learns the states from the controller's answer to its status request."""
    pair = serial_pty("ctl-1")
    sim = SimulatedController(pair.master)
    sim.states.update({(InputKind.DOOR_CONTACT, 0): 0, (InputKind.DOOR_CONTACT, 1): 0, (InputKind.TAMPER, 0): 0})
    yield pair, sim
    sim.stop()


def test_a_door_open_when_the_service_starts_is_published_and_held_open_is_seen(
        tmp_path: Path, mqtt_broker: MosquittoBroker, controller: tuple[SerialPair, SimulatedController],
        service_factory: Callable[[Path, str], ServiceProcess], client_factory: Callable[[int], MqttClient]) -> None:
    """The front door was propped open while the badge service was down: its first contact report is published
    as DoorOpened, so the edge's held-door rule (limit 3 s here) sees it. After a restart with the door still
    open it is not published again (the edge has it; again, it would look like an opening without a grant),
    and closing it resolves the held-door alert."""
    pair, sim = controller
    sim.states[(InputKind.DOOR_CONTACT, 0)] = 1
    sim.start()
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.facts_filter(SITE))
    watcher.subscribe(topics.alerts_filter(SITE))
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None,
                          badge=_badge_config(pair.link))
    service_factory(config, "edge")
    badge = service_factory(config, "badge")
    opened = wait_until(lambda: _facts(watcher, "door_opened"), DEADLINE_S, "the door_opened fact")[0]
    assert opened["door"] == "front"
    held = wait_until(lambda: _alerts(watcher, "door_held_open"), DEADLINE_S, "the held-open alert")[0]["alert"]
    assert (held["door"], held["fact_ids"]) == ("front", [opened["event_id"]])

    badge.stop()
    again = service_factory(config, "badge")
    wait_until(lambda: "door front is open, as last published" in again.output(), DEADLINE_S,
               "the restarted service to see the door open")
    sim.set_input(InputKind.DOOR_CONTACT, 0, False)
    wait_until(lambda: _facts(watcher, "door_closed"), DEADLINE_S, "the door_closed fact")
    assert len(_facts(watcher, "door_opened")) == 1
    wait_until(lambda: [m for m in _alerts(watcher, "door_held_open") if m["alert"]["state"] == "resolved"],
               DEADLINE_S, "the held-open alert resolved")
    assert "door lab is closed" in badge.output() and "door_closed" not in json.dumps(_facts(watcher, "door_opened"))


class InProcessBadge:
    """BadgeService.run on a thread of the test process; what it raised is kept."""

    def __init__(self, config: Path) -> None:
        self.service = BadgeService(load_settings(config))
        self.stop = threading.Event()
        self.raised: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="badge-service")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.run(self.stop)
        except BaseException as err:
            self.raised = err

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def test_a_database_failure_stops_the_service_and_the_unstored_door_fact_comes_after_the_restart(
        tmp_path: Path, mqtt_broker: MosquittoBroker, controller: tuple[SerialPair, SimulatedController],
        client_factory: Callable[[int], MqttClient], caplog: pytest.LogCaptureFixture) -> None:
    """A malformed input is counted, logged once, and the service goes on; a failing database stops it instead
    of losing the fact it was storing, and the restarted service publishes the door it missed.

    The service runs in the test process so that its own facts connection can be made to fail on demand:
    `PRAGMA query_only` on it makes every write fail inside sqlite with SQLITE_READONLY, as on a filesystem
    gone read-only. (As root, chmod cannot make the file unwritable.) Pty, controller and mosquitto are real.
    """
    caplog.set_level(logging.INFO)
    pair, sim = controller
    sim.start()
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.facts_filter(SITE))
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None,
                          badge=_badge_config(pair.link))
    first = InProcessBadge(config)
    try:
        wait_until(lambda: _facts(watcher, "device_came_online"), DEADLINE_S, "the controller online")
        for seq, state in ((200, 1), (201, 0)):  # an input kind the protocol does not have, twice
            sim.write_raw(encode_frame(InputChanged(seq, 9, 0, state)))
        wait_until(lambda: first.service.rejects.counts["unknown_input"] == 2, DEADLINE_S, "both bad inputs counted")
        assert len([r for r in caplog.records if "unknown_input" in r.getMessage()]) == 1
        wait_until(lambda: "door front is closed" in caplog.text and first.service.producer.pending() == 0,
                   DEADLINE_S, "the first state report handled and every fact acknowledged")

        first.service.producer.db.execute("PRAGMA query_only = 1")
        sim.set_input(InputKind.DOOR_CONTACT, 0, True)
        first.thread.join(DEADLINE_S)
        assert not first.thread.is_alive(), "the service kept running on a failing database"
        assert isinstance(first.raised, sqlite3.OperationalError)
        critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(critical) == 1 and "its facts are NOT stored" in critical[0]
        assert "controller ctl-1: InputChanged(seq=" in critical[0] and "kind=1, index=0, state=1" in critical[0]
        assert _facts(watcher, "door_opened") == []
    finally:
        first.close()

    again = InProcessBadge(config)  # what systemd does; the database works again
    try:
        opened = wait_until(lambda: _facts(watcher, "door_opened"), DEADLINE_S, "the missed door_opened fact")
        assert [f["door"] for f in opened] == ["front"]
    finally:
        again.close()
    assert again.raised is None


def test_after_a_service_restart_the_controller_still_carries_out_unlocks(
        tmp_path: Path, mqtt_broker: MosquittoBroker, controller: tuple[SerialPair, SimulatedController],
        service_factory: Callable[[Path, str], ServiceProcess], client_factory: Callable[[int], MqttClient]) -> None:
    """The badge service restarts; the controller does not. Commands of the new run must not be taken for
    retries of the old run's commands (the controller acks a retry but does not carry it out again): the
    status request must be answered and the next grant must unlock."""
    pair, sim = controller
    sim.start()
    watcher, badge, config = _start_badge(tmp_path, mqtt_broker.port, pair, service_factory, client_factory)
    sim.swipe(0, encode("H10301", 10, 100))
    assert sim.wait_for_command(Unlock) is not None
    wait_until(lambda: _facts(watcher, "access_granted"), DEADLINE_S, "the first grant")

    badge.stop()
    again = service_factory(config, "badge")
    wait_until(lambda: "door front is closed, as last published" in again.output(), DEADLINE_S,
               "the status report asked for by the new run")
    sim.swipe(0, encode("H10301", 10, 100))
    wait_until(lambda: len(_facts(watcher, "access_granted")) == 2, DEADLINE_S, "the second grant")
    assert sim.wait_for_command(Unlock, after=1) is not None, "the grant after the restart did not unlock"


def test_a_controller_that_rebooted_while_unplugged_has_its_first_swipe_delivered(
        rig: Rig, serial_pty: Callable[[str], SerialPair]) -> None:
    """The controller is unplugged and comes back rebooted (new boot id) with a swipe already queued. Opening
    the port discards what it sent before (pyserial flushes the input), its boot HELLO included; its event
    numbers start again and match ones the host remembers from the old boot. The host must not take the
    swipe for a repeat: it neither acks nor delivers events until the controller has answered its
    HOST_HELLO (with a HELLO)."""
    rig.controller.swipe(0, encode("H10301", 10, 100))
    rig.wait_fact("access_granted")
    rig.controller.stop()
    rig.pair.close()
    rig.wait_fact("device_went_offline")
    pair = serial_pty("ctl-1.plugging-in")  # not under the port's name yet: the service cannot open it
    controller = SimulatedController(pair.master)
    controller.states.update({(InputKind.DOOR_CONTACT, 0): 0, (InputKind.DOOR_CONTACT, 1): 0})
    controller.swipe(0, encode("H10301", 10, 100))
    controller.start()  # HELLO and the swipe go out now, before the service opens the port
    try:
        os.replace(pair.link, rig.pair.link)
        pair.link = rig.pair.link
        rig.wait_fact("device_came_online", count=2)
        rig.wait_fact("access_granted", count=2)
        assert controller.wait_for_command(Unlock) is not None
    finally:
        controller.stop()


def test_firmware_older_than_host_hello_still_unlocks_and_is_logged_once_without_a_warning(
        tmp_path: Path, mqtt_broker: MosquittoBroker, serial_pty: Callable[[str], SerialPair],
        service_factory: Callable[[Path, str], ServiceProcess], client_factory: Callable[[int], MqttClient]) -> None:
    """Firmware that predates HOST_HELLO answers it "bad command": expected, so not a warning on every open."""
    pair = serial_pty("ctl-1")
    sim = SimulatedController(pair.master, knows_host_hello=False)
    sim.start()
    try:
        watcher, badge, _ = _start_badge(tmp_path, mqtt_broker.port, pair, service_factory, client_factory)
        sim.swipe(0, encode("H10301", 10, 100))
        assert sim.wait_for_command(Unlock) is not None
        wait_until(lambda: _facts(watcher, "access_granted"), DEADLINE_S, "the grant")
        assert "not carried out" not in badge.output()
        assert badge.output().count("predates HOST_HELLO") == 1
    finally:
        sim.stop()
