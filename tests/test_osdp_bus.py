"""OSDP doors end to end: reader inputs as door facts, several readers on one bus, the bus port vanishing,
ASCII card data.

Readers are libosdp PeripheralDevices; the badge (and edge) services run as processes on a real mosquitto.
An RS-485 bus with several readers is a hub thread: the ControlPanel's bytes go to every reader, each
reader's bytes back to the ControlPanel.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SITE, MqttClient, ServiceProcess, wait_until, write_config
from osdp import CardFormat, Channel, Command, Event, LibFlag, LogLevel, PDInfo, PeripheralDevice
from test_badge_service import InProcessBadge
from test_osdp import CAPS, KEY, WRONG_KEY, Events, input_report

from edge import topics
from edge.brokers import MosquittoBroker
from firmware_bridge.osdp_bus import CardPresented, OsdpBus, OsdpEvent, ReaderSpec, ReaderStatus
from firmware_bridge.osdp_channel import SerialChannel
from firmware_bridge.sim_controller import SerialPair
from firmware_bridge.wiegand import WiegandBits, encode

DEADLINE_S = 20.0
GRANT_WINDOW_S = 1.0
DOCK_KEY = bytes(range(100, 116))
YARD_KEY = bytes(range(200, 216))
ANN = encode("H10301", 10, 100)


class PipeChannel(Channel):
    """One reader's transceiver on a shared bus: it reads what the hub copies to it and writes for the hub."""

    def __init__(self) -> None:
        super().__init__()
        self.rx_r, self.rx_w = os.pipe()  # hub -> reader
        self.tx_r, self.tx_w = os.pipe()  # reader -> hub
        os.set_blocking(self.rx_r, False)

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self.rx_r, max_bytes)
        except OSError:
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return os.write(self.tx_w, bytes(buf))
        except OSError:
            return 0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        for fd in (self.rx_r, self.rx_w, self.tx_r, self.tx_w):
            os.close(fd)


class BusHub:
    """The RS-485 wire: the ControlPanel's bytes (the pty master) to every reader, each reader's bytes back.

    Readers do not hear each other here; a libosdp PD ignores frames not addressed to it anyway. Each reader
    writes a whole frame at once and only the addressed reader answers, so replies do not interleave.
    """

    def __init__(self, master: int, readers: list[PipeChannel]) -> None:
        self.master = master
        self.readers = readers
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="rs485-hub", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from_readers = {r.tx_r: r for r in self.readers}
        while True:
            readable, _, _ = select.select([self.master, self._stop_r, *from_readers], [], [])
            if self._stop_r in readable:
                return
            if self.master in readable:
                data = os.read(self.master, 4096)
                for reader in self.readers:
                    os.write(reader.rx_w, data)
            for fd in from_readers:
                if fd in readable:
                    os.write(self.master, os.read(fd, 4096))

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        os.close(self._stop_r)
        os.close(self._stop_w)


class PluggablePtyChannel(Channel):
    """A reader whose bus adapter can be unplugged and plugged back in (a new pty master)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._fd = -1
        self.plug(fd)

    def plug(self, fd: int) -> None:
        os.set_blocking(fd, False)
        with self._lock:
            self._fd = fd

    def unplug(self) -> None:
        with self._lock:  # after this no read or write touches the old descriptor, which may be reused
            self._fd = -1

    def read(self, max_bytes: int) -> bytes:
        with self._lock:
            if self._fd < 0:
                return b""
            try:
                return os.read(self._fd, max_bytes)
            except OSError:
                return b""

    def write(self, buf: bytes) -> int:
        with self._lock:
            if self._fd < 0:
                return 0
            try:
                return os.write(self._fd, bytes(buf))
            except OSError:
                return 0

    def flush(self) -> None:
        pass


class ReaderPd:
    """A libosdp PeripheralDevice with Secure Channel enforced: the reader on the wall."""

    def __init__(self, address: int, key: bytes, channel: Channel) -> None:
        self.channel = channel
        self._commands: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.received: list[dict[str, Any]] = []
        self.pd = PeripheralDevice(PDInfo(address, channel, scbk=key, flags=[LibFlag.EnforceSecure]), CAPS,
                                   log_level=LogLevel.Error, command_handler=self._command)
        self.pd.start()

    def _command(self, command: dict[str, Any]) -> tuple[int, None]:
        self._commands.put(command)
        return 0, None

    def swipe(self, bits: WiegandBits) -> None:
        assert self.pd.submit_event({"event": Event.CardRead, "reader_no": 0, "direction": 0,
                                     "format": CardFormat.Wiegand, "length": bits.count, "data": bits.to_bytes()})

    def report_inputs(self, *active: int) -> None:
        assert self.pd.submit_event(input_report(*active))

    def outputs(self) -> list[dict[str, Any]]:
        """Output (lock) commands received so far."""
        while True:
            try:
                self.received.append(self._commands.get_nowait())
            except queue.Empty:
                break
        return [c for c in self.received if c["command"] == Command.Output]

    def stop(self) -> None:
        self.pd.stop()


@pytest.fixture
def readers() -> Iterator[Callable[[int, bytes, Channel], ReaderPd]]:
    made: list[ReaderPd] = []

    def make(address: int, key: bytes, channel: Channel) -> ReaderPd:
        made.append(ReaderPd(address, key, channel))
        return made[-1]

    yield make
    for reader in made:
        reader.stop()


@pytest.fixture
def bus_hub() -> Iterator[Callable[[SerialPair, int], list[PipeChannel]]]:
    """An RS-485 bus on a pty pair with `n` reader taps; stopped before the pty closes."""
    hubs: list[tuple[BusHub, list[PipeChannel]]] = []

    def make(pair: SerialPair, n: int) -> list[PipeChannel]:
        taps = [PipeChannel() for _ in range(n)]
        hubs.append((BusHub(pair.master, taps), taps))
        return taps

    yield make
    for hub, taps in hubs:
        hub.stop()
        for tap in taps:
            tap.close()


class Site:
    """The badge service (and the edge, when asked) as processes, and a subscriber to everything they say."""

    def __init__(self, tmp_path: Path, broker: MosquittoBroker, service_factory: Callable[[Path, str], ServiceProcess],
                 client_factory: Callable[[int], MqttClient], port: Path, readers: dict[str, dict[str, Any]],
                 edge: bool = False) -> None:
        self.watcher = client_factory(broker.port)
        self.watcher.subscribe(topics.facts_filter(SITE))
        self.watcher.subscribe(topics.alerts_filter(SITE))
        holders = {"version": "v1", "cardholders": [{"id": "ann", "credential": "10:100"}]}
        client_factory(broker.port).client.publish(topics.config_topic(SITE, "badge", "cardholders"),
                                                   json.dumps(holders), qos=1, retain=True).wait_for_publish(5)
        for name, reader in readers.items():
            key_file = tmp_path / f"{name}.key"
            key_file.write_text(reader.pop("key").hex() + "\n")
            reader["key_file"] = str(key_file)
        badge = {"osdp": {"bus-1": {"port": str(port), "baudrate": 115200, "recover_min_s": 0.5, "recover_max_s": 2,
                                    "readers": readers}}}
        self.config = write_config(tmp_path / "config.yaml", tmp_path / "data", broker.port, None,
                                   rules={"grant_window_s": GRANT_WINDOW_S}, badge=badge)
        if edge:
            service_factory(self.config, "edge")
        self.badge = service_factory(self.config, "badge")
        wait_until(lambda: "cardholder list replaced" in self.badge.output(), DEADLINE_S, "the cardholder list")

    def facts(self, kind: str) -> list[dict[str, Any]]:
        return [p for p in self.watcher.payloads(f"sitewarden/{SITE}/badge/") if p.get("kind") == kind]

    def wait_fact(self, kind: str, count: int = 1) -> list[dict[str, Any]]:
        return wait_until(lambda: (f := self.facts(kind)) and len(f) >= count and f, DEADLINE_S,
                          f"{count} {kind} fact(s)")

    def alerts(self, kind: str) -> list[dict[str, Any]]:
        return [p for p in self.watcher.payloads(f"sitewarden/{SITE}/alert/") if p["alert"]["kind"] == kind]

    def wait_alert(self, kind: str, what: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        return wait_until(lambda: next((m for m in self.alerts(kind) if what(m)), None), DEADLINE_S, f"a {kind} alert")


def test_door_contact_and_exit_button_on_an_osdp_reader_feed_the_door_rules(
        tmp_path: Path, mqtt_broker: MosquittoBroker, serial_pty: Callable[[str], SerialPair],
        service_factory: Callable[[Path, str], ServiceProcess], client_factory: Callable[[int], MqttClient],
        readers: Callable[[int, bytes, Channel], ReaderPd]) -> None:
    """Input status reports from the reader (contact on input 0, exit button on input 1) become DoorOpened,
    DoorClosed and ExitRequested for its door: an exit request covers the opening after it, an opening without
    one is forced, and a door left open is held (the edge's limit here is 3 s) until it closes. The edge's
    grant window is 1 s here, so the test lets it pass between the two openings."""
    pair = serial_pty("rs485")
    reader = readers(7, KEY, PluggablePtyChannel(pair.master))
    site = Site(tmp_path, mqtt_broker, service_factory, client_factory, pair.link,
                {"lobby": {"address": 7, "door": "front", "key": KEY, "contact_input": 0, "rex_input": 1}}, edge=True)
    site.wait_fact("device_came_online")

    reader.report_inputs(1)  # exit button pressed, door closed
    pressed_at = time.monotonic()
    exit_request = site.wait_fact("exit_requested")[0]
    assert (exit_request["door"], exit_request["source"]) == ("front", "badge/bus-1.lobby")
    reader.report_inputs(0, 1)  # the door opens while the button is still held
    authorized = site.wait_fact("door_opened")[0]
    reader.report_inputs()
    site.wait_fact("door_closed")
    time.sleep(max(0.0, pressed_at + GRANT_WINDOW_S * 2 - time.monotonic()))  # the exit request's window passes
    reader.report_inputs(0)  # opened with no exit request and no badge
    forced = site.wait_fact("door_opened", 2)[1]
    assert forced["door"] == "front"

    forced_alert = site.wait_alert("door_forced_open", lambda m: True)["alert"]
    assert (forced_alert["door"], forced_alert["fact_ids"]) == ("front", [forced["event_id"]])
    held = site.wait_alert("door_held_open", lambda m: m["type"] == "new")["alert"]
    assert held["fact_ids"] == [forced["event_id"]]
    reader.report_inputs()
    site.wait_alert("door_held_open", lambda m: m["alert"]["state"] == "resolved")
    assert len(site.facts("exit_requested")) == 1  # the button was held, not pressed again
    assert all(authorized["event_id"] not in m["alert"]["fact_ids"] for m in site.alerts("door_forced_open"))


def test_a_contact_input_the_reader_does_not_report_is_logged_once_and_the_exit_button_still_works(
        tmp_path: Path, mqtt_broker: MosquittoBroker, serial_pty: Callable[[str], SerialPair],
        service_factory: Callable[[Path, str], ServiceProcess], client_factory: Callable[[int], MqttClient],
        readers: Callable[[int, bytes, Channel], ReaderPd]) -> None:
    """contact_input 6 on a reader with 4 inputs: a mistake only the reader's reports reveal. Every report
    counts it, the first one logs it, and the exit button on input 1 keeps working."""
    pair = serial_pty("rs485")
    reader = readers(7, KEY, PluggablePtyChannel(pair.master))
    site = Site(tmp_path, mqtt_broker, service_factory, client_factory, pair.link,
                {"lobby": {"address": 7, "door": "front", "key": KEY, "contact_input": 6, "rex_input": 1}})
    site.wait_fact("device_came_online")
    reader.report_inputs()
    reader.report_inputs(1)
    assert site.wait_fact("exit_requested")[0]["door"] == "front"
    assert site.badge.output().count("contact_input is 6 but the reader reports 4 inputs") == 1
    assert site.facts("door_opened") == site.facts("door_closed") == []

def test_two_readers_on_one_bus_come_online_and_each_swipe_opens_its_own_door(
        tmp_path: Path, mqtt_broker: MosquittoBroker, serial_pty: Callable[[str], SerialPair],
        service_factory: Callable[[Path, str], ServiceProcess], client_factory: Callable[[int], MqttClient],
        bus_hub: Callable[[SerialPair, int], list[PipeChannel]],
        readers: Callable[[int, bytes, Channel], ReaderPd]) -> None:
    """Two PDs at addresses 1 and 2, each with its own Secure Channel key, behind one RS-485 adapter."""
    pair = serial_pty("rs485")
    lobby_tap, dock_tap = bus_hub(pair, 2)
    lobby = readers(1, KEY, lobby_tap)
    dock = readers(2, DOCK_KEY, dock_tap)
    site = Site(tmp_path, mqtt_broker, service_factory, client_factory, pair.link,
                {"lobby": {"address": 1, "door": "front", "key": KEY},
                 "dock": {"address": 2, "door": "dock", "key": DOCK_KEY}})
    online = site.wait_fact("device_came_online", 2)
    assert {f["device_id"] for f in online} == {"badge/bus-1.lobby", "badge/bus-1.dock"}
    assert lobby.pd.is_sc_active() and dock.pd.is_sc_active()

    dock.swipe(ANN)
    granted = site.wait_fact("access_granted")[0]
    swiped = site.wait_fact("badge_swiped")[0]
    assert (granted["door"], granted["source"], swiped["reader"]) == ("dock", "badge/bus-1.dock", "bus-1/dock")
    wait_until(dock.outputs, DEADLINE_S, "the unlock at the dock reader")
    lobby.swipe(ANN)
    granted = site.wait_fact("access_granted", 2)[1]
    assert (granted["door"], granted["source"]) == ("front", "badge/bus-1.lobby")
    wait_until(lobby.outputs, DEADLINE_S, "the unlock at the lobby reader")
    assert len(dock.outputs()) == 1  # the lobby's grant did not unlock the dock


def _first_status_of_each(events: Events, names: set[str]) -> dict[str, ReaderStatus]:
    found: dict[str, ReaderStatus] = {}
    end = time.monotonic() + DEADLINE_S
    while set(found) != names and (left := end - time.monotonic()) > 0:
        try:
            event: OsdpEvent = events.q.get(timeout=left)
        except queue.Empty:
            break
        if isinstance(event, ReaderStatus):
            found.setdefault(event.reader, event)
    assert set(found) == names, f"status of {names - set(found)} did not come"
    return found


def test_on_a_shared_bus_a_silent_reader_is_not_blamed_on_its_key(
        serial_pty: Callable[[str], SerialPair], bus_hub: Callable[[SerialPair, int], list[PipeChannel]],
        readers: Callable[[int, bytes, Channel], ReaderPd]) -> None:
    """The offline reason is the reader's own: other readers answering on the bus do not make a missing reader
    look like one whose key does not match."""
    pair = serial_pty("rs485")
    lobby_tap, dock_tap = bus_hub(pair, 2)
    readers(1, KEY, lobby_tap)
    readers(2, WRONG_KEY, dock_tap)  # yard (address 3) is not there at all
    events = Events()
    bus = OsdpBus("bus-1", SerialChannel(str(pair.link), 115200),
                  [ReaderSpec("lobby", 1, KEY), ReaderSpec("dock", 2, DOCK_KEY), ReaderSpec("yard", 3, YARD_KEY)],
                  events, recover_min_s=0.5, recover_max_s=5)
    bus.start()
    try:
        status = _first_status_of_each(events, {"lobby", "dock", "yard"})
    finally:
        bus.stop()
    assert status["lobby"].online
    assert not status["dock"].online and "key does not match" in status["dock"].reason
    assert not status["yard"].online and status["yard"].reason == "no reply from the reader"


def test_osdp_reader_is_offline_while_the_bus_port_is_gone_and_back_with_secure_channel(
        tmp_path: Path, mqtt_broker: MosquittoBroker, serial_pty: Callable[[str], SerialPair],
        service_factory: Callable[[Path, str], ServiceProcess], client_factory: Callable[[int], MqttClient],
        readers: Callable[[int, bytes, Channel], ReaderPd]) -> None:
    """The RS-485 adapter is pulled (pty closed, its symlink gone) and plugged back in (a new pty under the same
    name); the reader itself stays powered and keeps its key."""
    pair = serial_pty("rs485")
    channel = PluggablePtyChannel(pair.master)
    reader = readers(7, KEY, channel)
    site = Site(tmp_path, mqtt_broker, service_factory, client_factory, pair.link,
                {"lobby": {"address": 7, "door": "front", "key": KEY}})
    site.wait_fact("device_came_online")

    channel.unplug()
    pair.close()
    offline = site.wait_fact("device_went_offline")[0]
    assert offline["device_id"] == "badge/bus-1.lobby"
    assert offline["reason"].startswith("bus port:")
    channel.plug(serial_pty("rs485").master)
    site.wait_fact("device_came_online", 2)  # online means with Secure Channel: the bus requires it
    assert reader.pd.is_sc_active()
    reader.swipe(ANN)
    assert site.wait_fact("access_granted")[0]["door"] == "front"
    wait_until(reader.outputs, DEADLINE_S, "the unlock at the reader")
    output = site.badge.output()  # the port lost once and back once, each logged once
    assert output.count("; reopening") == 1 and output.count("port open again") == 1
    assert output.count("offline: bus port") == 1 and output.count("online with Secure Channel") == 2


def _facts(watcher: MqttClient, kind: str) -> list[dict[str, Any]]:
    return [p for p in watcher.payloads(f"sitewarden/{SITE}/badge/") if p.get("kind") == kind]


def _ascii_card(text: bytes) -> dict[str, Any]:
    """A card read as libosdp's ControlPanel hands it over for ASCII card data (osdp_FMT)."""
    return {"event": Event.CardRead, "reader_no": 0, "format": CardFormat.ASCII, "direction": 0, "data": text}


def test_ascii_card_data_is_decided_on_its_text(tmp_path: Path, mqtt_broker: MosquittoBroker,
                                                client_factory: Callable[[int], MqttClient],
                                                caplog: pytest.LogCaptureFixture) -> None:
    """ASCII card data cannot come from a real peer here: libosdp 3.2.9's PeripheralDevice drops it ("Event
    CardRead::format::OSDP_CARD_FMT_ASCII is deprecated. Ignoring"; osdp_FMT was deprecated in OSDP 2.2.2) and
    its ControlPanel ignores an osdp_FMT reply ("Ignoring deprecated response osdp_FMT"). So the event a
    ControlPanel would hand over is given to the running service's bus dispatcher directly; from there on,
    the decision, the facts and mosquitto are real. A reader of another make might still send it."""
    caplog.set_level(logging.INFO)
    events = Events()
    OsdpBus("bus-0", SerialChannel(str(tmp_path / "absent"), 115200), [ReaderSpec("lobby", 7, KEY)],
            events)._dispatch(7, _ascii_card(b"KIM-0042"))
    assert events.q.get_nowait() == CardPresented("lobby", text="KIM-0042")

    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.facts_filter(SITE))
    holders = {"version": "v1", "cardholders": [{"id": "kim", "credential": "KIM-0042", "card_format": "ascii"}]}
    client_factory(mqtt_broker.port).client.publish(topics.config_topic(SITE, "badge", "cardholders"),
                                                    json.dumps(holders), qos=1, retain=True).wait_for_publish(5)
    key_file = tmp_path / "lobby.key"
    key_file.write_text(KEY.hex())
    badge = {"osdp": {"bus-1": {"port": str(tmp_path / "dev" / "rs485"), "readers": {
        "lobby": {"address": 7, "door": "front", "key_file": str(key_file)}}}}}
    service = InProcessBadge(write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None,
                                          badge=badge))
    try:
        wait_until(lambda: "cardholder list replaced" in caplog.text, DEADLINE_S, "the cardholder list")
        bus = service.service.buses["bus-1"]
        bus._dispatch(7, _ascii_card(b"KIM-0042"))
        bus._dispatch(7, _ascii_card(b"KIM-0043"))
        swiped = wait_until(lambda: len(f := _facts(watcher, "badge_swiped")) == 2 and f, DEADLINE_S, "two swipes")
        granted = wait_until(lambda: _facts(watcher, "access_granted"), DEADLINE_S, "the grant")[0]
        denied = wait_until(lambda: _facts(watcher, "access_denied"), DEADLINE_S, "the denial")[0]
    finally:
        service.close()
    assert [(f["card_format"], f["credential"], f["reader"]) for f in swiped] == [
        ("ascii", "ascii:****2", "bus-1/lobby"), ("ascii", "ascii:****3", "bus-1/lobby")]
    assert (granted["door"], granted["cardholder"]) == ("front", "kim")
    assert (denied["door"], denied["reason"]) == ("front", "unknown_card")
    assert "KIM-004" not in caplog.text  # card text is masked in logs like card numbers

