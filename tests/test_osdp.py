"""OSDP readers: a libosdp ControlPanel (ours) against a libosdp PeripheralDevice over a real pty, Secure Channel on."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from osdp import (
    Capability,
    CardFormat,
    Channel,
    Command,
    Event,
    LibFlag,
    LogLevel,
    PDCapabilities,
    PDInfo,
    PeripheralDevice,
    StatusReportType,
)

from edge import topics
from edge.brokers import MosquittoBroker
from edge.config import ConfigError, load_settings
from firmware_bridge.osdp_bus import (
    CardPresented,
    InputsReported,
    KeysPressed,
    LocalStatus,
    OsdpBus,
    OsdpEvent,
    ReaderSpec,
    ReaderStatus,
    provision_key,
)
from firmware_bridge.osdp_channel import SerialChannel
from firmware_bridge.sim_controller import SerialPair
from firmware_bridge.wiegand import encode

KEY = bytes(range(16))
WRONG_KEY = bytes(16)
ADDRESS = 7
INPUTS = 4
CAPS = PDCapabilities([(Capability.CommunicationSecurity, 1, 1), (Capability.LEDControl, 1, 1),
                       (Capability.AudibleControl, 1, 1), (Capability.OutputControl, 1, 1),
                       (Capability.ContactStatusMonitoring, 1, INPUTS)])


def input_report(*active: int) -> dict[str, Any]:
    """The PD event for an input status report (osdp_ISTATR): every input, `active` ones set."""
    report = bytes(int(i in active) for i in range(INPUTS))
    return {"event": Event.Status, "type": StatusReportType.Input, "nr_entries": INPUTS, "report": report}


class PtyChannel(Channel):
    """The reader's end of the bus: the pty master. `corrupt_next` garbles that many outgoing frames."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        os.set_blocking(fd, False)
        self.corrupt_next = 0
        self.last_corrupted: float | None = None

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self.fd, max_bytes)
        except OSError:
            return b""

    def write(self, buf: bytes) -> int:
        data = bytes(buf)
        if self.corrupt_next:
            self.corrupt_next -= 1
            garbled = bytearray(data)
            garbled[len(garbled) // 2] ^= 0x5A
            data = bytes(garbled)
            self.last_corrupted = time.monotonic()
        try:
            return os.write(self.fd, data)
        except OSError:
            return 0

    def flush(self) -> None:
        pass


class Reader:
    """A libosdp PeripheralDevice: the reader on the wall."""

    def __init__(self, pair: SerialPair, key: bytes | None) -> None:
        self.channel = PtyChannel(pair.master)
        self.commands: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        flags = [LibFlag.EnforceSecure] if key else [LibFlag.InstallMode]
        self.pd = PeripheralDevice(PDInfo(ADDRESS, self.channel, scbk=key, flags=flags), CAPS,
                                   log_level=LogLevel.Error, command_handler=self._command)
        self.pd.start()

    def _command(self, command: dict[str, Any]) -> tuple[int, None]:
        self.commands.put(command)
        return 0, None

    def stop(self) -> None:
        self.pd.stop()


@pytest.fixture
def osdp_reader(tmp_path: Path) -> Iterator[Callable[..., tuple[Reader, SerialPair]]]:
    made: list[tuple[Reader, SerialPair]] = []

    def make(key: bytes | None = KEY) -> tuple[Reader, SerialPair]:
        pair = SerialPair(tmp_path / "dev" / f"rs485-{len(made)}")
        reader = Reader(pair, key)
        made.append((reader, pair))
        return reader, pair

    yield make
    for reader, pair in made:
        reader.stop()
        pair.close()


class Events:
    def __init__(self) -> None:
        self.q: queue.SimpleQueue[OsdpEvent] = queue.SimpleQueue()

    def __call__(self, event: OsdpEvent) -> None:
        self.q.put(event)

    def wait(self, predicate: Callable[[OsdpEvent], bool], deadline_s: float = 15.0) -> OsdpEvent:
        end = time.monotonic() + deadline_s
        while (left := end - time.monotonic()) > 0:
            try:
                event = self.q.get(timeout=left)
            except queue.Empty:
                break
            if predicate(event):
                return event
        pytest.fail("the event did not come")


def _bus(pair: SerialPair, events: Events, key: bytes = KEY) -> OsdpBus:
    bus = OsdpBus("bus-1", SerialChannel(str(pair.link), 115200), [ReaderSpec("lobby", ADDRESS, key)], events,
                  recover_min_s=0.5, recover_max_s=5)
    bus.start()
    return bus


def _online(event: OsdpEvent) -> bool:
    return isinstance(event, ReaderStatus) and event.online


def test_card_keypad_and_status_arrive_and_feedback_reaches_the_reader(osdp_reader: Callable[..., Any]) -> None:
    reader, pair = osdp_reader()
    events = Events()
    bus = _bus(pair, events)
    try:
        events.wait(_online)
        assert bus.cp.is_sc_active(ADDRESS)
        bits = encode("H10301", 12, 345)
        reader.pd.submit_event({"event": Event.CardRead, "reader_no": 0, "direction": 0,
                                "format": CardFormat.Wiegand, "length": bits.count, "data": bits.to_bytes()})
        card = events.wait(lambda e: isinstance(e, CardPresented))
        assert card == CardPresented("lobby", bits=bits)
        # ASCII card data is not tested here: libosdp 3.2.9's PeripheralDevice drops it ("deprecated, ignoring").
        reader.pd.submit_event({"event": Event.KeyPress, "reader_no": 0, "data": b"1234#"})
        assert events.wait(lambda e: isinstance(e, KeysPressed)) == KeysPressed("lobby", 5)
        reader.pd.submit_event({"event": Event.Status, "type": 2, "nr_entries": 2, "report": bytes([1, 0])})
        assert events.wait(lambda e: isinstance(e, LocalStatus)) == LocalStatus("lobby", True, False)
        reader.pd.submit_event(input_report(0, 3))
        inputs = events.wait(lambda e: isinstance(e, InputsReported))
        assert inputs == InputsReported("lobby", (True, False, False, True))
        # libosdp's ControlPanel also queues every event per reader: the bus takes them from there, or that
        # queue would grow for as long as the service runs.
        assert all(q.empty() for q in bus.cp.event_queue)
        assert bus.feedback(ADDRESS, True, unlock_output=0, unlock_ms=3000, led_ms=2000)
        got = [reader.commands.get(timeout=5) for _ in range(3)]
        assert sorted(c["command"] for c in got) == sorted([Command.LED, Command.Buzzer, Command.Output])
        output = next(c for c in got if c["command"] == Command.Output)
        assert (output["output_no"], output["control_code"], output["timer_count"]) == (0, 5, 30)
    finally:
        bus.stop()


def test_reader_is_back_online_within_seconds_after_a_corrupted_frame(osdp_reader: Callable[..., Any]) -> None:
    """libosdp 3.2.9 alone keeps a reader offline 300 s after one bad frame; the bus resets it instead."""
    reader, pair = osdp_reader()
    events = Events()
    bus = _bus(pair, events)
    try:
        events.wait(_online)
        reader.channel.corrupt_next = 1
        offline = events.wait(lambda e: isinstance(e, ReaderStatus) and not e.online)
        assert "no reply" in offline.reason or "refused" in offline.reason  # type: ignore[union-attr]
        events.wait(_online)
        assert reader.channel.last_corrupted is not None
        back_after = time.monotonic() - reader.channel.last_corrupted
        assert bus.cp.is_sc_active(ADDRESS)
        print(f"back online with Secure Channel {back_after:.2f} s after the bad frame")
    finally:
        bus.stop()


def test_wrong_key_is_refused_and_reported(osdp_reader: Callable[..., Any]) -> None:
    reader, pair = osdp_reader(WRONG_KEY)
    events = Events()
    bus = _bus(pair, events)
    try:
        offline = events.wait(lambda e: isinstance(e, ReaderStatus))
        assert not offline.online  # type: ignore[union-attr]
        assert "key does not match" in offline.reason  # type: ignore[union-attr]
        assert not bus.cp.is_online(ADDRESS)
    finally:
        bus.stop()


def test_key_is_provisioned_on_a_reader_in_install_mode(osdp_reader: Callable[..., Any]) -> None:
    reader, pair = osdp_reader(None)
    message = provision_key(str(pair.link), 115200, ADDRESS, KEY, timeout_s=15,
                            channel=SerialChannel(str(pair.link), 115200))
    assert "Secure Channel verified" in message
    events = Events()
    bus = _bus(pair, events)
    try:
        events.wait(_online)
        assert bus.cp.is_sc_active(ADDRESS)
    finally:
        bus.stop()


def config_error(tmp_path: Path, badge_yaml: str) -> str:
    """The ConfigError text for a config whose `badge:` section is `badge_yaml`, where `{key}` names a real
    key file (lobby.key)."""
    key = tmp_path / "lobby.key"
    key.write_text(KEY.hex())
    config = tmp_path / "c.yaml"
    config.write_text("site: {id: s}\nbadge:\n" + badge_yaml.replace("{key}", str(key)))
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    return str(err.value)


def test_config_refuses_a_reader_without_enforced_secure_channel(tmp_path: Path) -> None:
    text = config_error(tmp_path, f"""  osdp:
    bus-1:
      port: /dev/ttyUSB0
      readers:
        lobby: {{address: 1, door: front, key_file: {{key}}, enforce_secure: false}}
        side: {{address: 1, door: side, key_file: {tmp_path / 'missing.key'}}}
""")
    assert "badge.osdp.bus-1.readers.lobby.enforce_secure" in text and "plaintext" in text
    assert "badge.osdp.bus-1.readers.side.key_file" in text


def test_config_refuses_a_door_driven_by_a_controller_and_an_osdp_reader(tmp_path: Path) -> None:
    text = config_error(tmp_path, """  controllers:
    ctl-1: {port: /dev/ttyACM0, doors: {front: {reader: 0}}}
  osdp:
    bus-1:
      port: /dev/ttyUSB0
      readers:
        lobby: {address: 1, door: front, key_file: {key}}
""")
    assert "door 'front' is on both controllers.ctl-1 and osdp.bus-1.readers.lobby" in text and "badge" in text


@pytest.mark.parametrize(("inputs", "key", "says"), [
    ("contact_input: 1, rex_input: 1", "rex_input", "already the door contact"),
    ("contact_input: -1", "contact_input", "greater than or equal to 0"),
    ("rex_input: front", "rex_input", "valid integer"),
])
def test_config_names_the_reader_input_that_is_wrong(tmp_path: Path, inputs: str, key: str, says: str) -> None:
    text = config_error(tmp_path, f"""  osdp:
    bus-1:
      port: /dev/ttyUSB0
      readers:
        lobby: {{address: 1, door: front, key_file: {{key}}, {inputs}}}
""")
    assert f"badge.osdp.bus-1.readers.lobby.{key}" in text and says in text


def test_wrong_key_raises_a_reader_offline_alert(tmp_path: Path, osdp_reader: Callable[..., Any],
                                                 mqtt_broker: MosquittoBroker, service_factory: Callable[..., Any],
                                                 client_factory: Callable[..., Any]) -> None:
    """Badge and edge services as processes: the refused reader shows up as an alert on the broker."""
    from conftest import SITE, wait_until, write_config

    _, pair = osdp_reader(WRONG_KEY)
    key = tmp_path / "lobby.key"
    key.write_text(KEY.hex() + "\n")
    badge = {"osdp": {"bus-1": {"port": str(pair.link), "baudrate": 115200, "readers": {
        "lobby": {"address": ADDRESS, "door": "front", "key_file": str(key)}}}}}
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", mqtt_broker.port, None, badge=badge)
    watcher = client_factory(mqtt_broker.port)
    watcher.subscribe(topics.alerts_filter(SITE))
    service_factory(config, "edge")
    service_factory(config, "badge")
    alert = wait_until(lambda: next((p for p in watcher.payloads() if p["alert"]["kind"] == "device_offline"), None),
                       30, "a device_offline alert")
    assert alert["alert"]["device"] == "badge/bus-1.lobby"
    assert "key does not match" in alert["alert"]["title"]
