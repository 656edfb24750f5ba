"""OSDP readers through libosdp: one ControlPanel per RS-485 bus, Secure Channel enforced, glitch recovery."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from osdp import (
    CardFormat,
    Channel,
    Command,
    CommandLEDColor,
    ControlPanel,
    Event,
    LibFlag,
    LogLevel,
    PDInfo,
    StatusReportType,
)

from firmware_bridge.osdp_channel import SerialChannel
from firmware_bridge.wiegand import WiegandBits

logger = logging.getLogger(__name__)

SUPERVISE_INTERVAL_S = 0.1


def load_key(path: Path) -> bytes:
    """The 16-byte Secure Channel key from its file (32 hex digits)."""
    key = bytes.fromhex(path.read_text(encoding="utf-8").strip())
    if len(key) != 16:
        raise ValueError(f"{path}: want 16 bytes, got {len(key)}")
    return key


@dataclass(frozen=True)
class ReaderStatus:
    reader: str
    online: bool
    reason: str = ""


@dataclass(frozen=True)
class CardPresented:
    """Card data: Wiegand bits (decoded by the same decoder as controller reads) or ASCII text."""

    reader: str
    bits: WiegandBits | None = None
    text: str | None = None


@dataclass(frozen=True)
class KeysPressed:
    reader: str
    count: int


@dataclass(frozen=True)
class LocalStatus:
    """The reader's own tamper switch and power state."""

    reader: str
    tamper: bool
    power_failed: bool


@dataclass(frozen=True)
class InputsReported:
    """An input status report (osdp_ISTATR): the state of each of the reader's inputs, by index; True is active."""

    reader: str
    states: tuple[bool, ...]


OsdpEvent = ReaderStatus | CardPresented | KeysPressed | LocalStatus | InputsReported


@dataclass
class ReaderSpec:
    name: str
    address: int
    key: bytes
    install_mode: bool = False


@dataclass
class _Health:
    online: bool = False
    announced: bool | None = None
    offline_since: float = field(default_factory=time.monotonic)
    next_kick: float = 0.0
    backoff_s: float = 0.0
    answers_at_kick: int = 0
    kicks: int = 0


class OsdpBus:
    """A ControlPanel on one bus; events reach `handler` from the supervisor thread, in order.

    libosdp 3.2.9 puts a reader offline for 300 s after one bad frame (or a NAK). The supervisor resets a
    reader that is offline (`disable_pd` then `enable_pd`, which restarts its handshake at once) after
    `recover_min_s`, then after twice that, and so on up to `recover_max_s`, so a glitch costs about a
    second and a reader that is really gone is not hammered.
    """

    def __init__(self, name: str, channel: Channel, readers: list[ReaderSpec], handler: Callable[[OsdpEvent], None],
                 *, recover_min_s: float = 1.0, recover_max_s: float = 30.0) -> None:
        self.name = name
        self.channel = channel
        self.readers = {r.address: r for r in readers}
        self.handler = handler
        self.recover_min_s = recover_min_s
        self.recover_max_s = recover_max_s
        self._health = {r.address: _Health() for r in readers}
        infos = []
        for r in readers:
            flags = [LibFlag.InstallMode] if r.install_mode else [LibFlag.EnforceSecure]
            infos.append(PDInfo(r.address, channel, scbk=r.key, name=r.name, flags=flags))
        # No event handler: the ControlPanel queues every event per reader whether or not one is set, so the
        # supervisor takes them from there (with a handler as well, that queue would only grow).
        self.cp = ControlPanel(infos, log_level=LogLevel.Error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name=f"osdp-{name}", daemon=True)
        self.recoveries = 0

    def start(self) -> None:
        self.cp.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.cp.stop()

    def is_online(self, address: int) -> bool:
        return self._health[address].online

    def feedback(self, address: int, granted: bool, unlock_output: int | None, unlock_ms: int,
                 led_ms: int) -> bool:
        """LED (green/red), buzzer, and on a grant the lock output; False when the reader is not online."""
        if not self.cp.is_online(address):
            return False
        tenths = max(1, led_ms // 100)
        color = CommandLEDColor.Green if granted else CommandLEDColor.Red
        ok = self.cp.submit_command(address, {
            "command": Command.LED, "reader": 0, "led_number": 0, "control_code": 1, "on_count": tenths,
            "off_count": 0, "on_color": color, "off_color": CommandLEDColor.Black, "timer_count": tenths,
            "temporary": True})
        ok &= self.cp.submit_command(address, {
            "command": Command.Buzzer, "reader": 0, "control_code": 2, "on_count": 1 if granted else 2,
            "off_count": 1, "rep_count": 1 if granted else 2})
        if granted and unlock_output is not None:
            ok &= self.cp.submit_command(address, {
                "command": Command.Output, "output_no": unlock_output, "control_code": 5,
                "timer_count": max(1, unlock_ms // 100)})
        return bool(ok)

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_INTERVAL_S):
            for address in self.readers:
                while (event := self.cp.get_event(address, timeout=-1)) is not None:  # -1: do not wait
                    self._dispatch(address, event)
            now = time.monotonic()
            for address, health in self._health.items():
                self._check(address, health, now)

    def _check(self, address: int, health: _Health, now: float) -> None:
        spec = self.readers[address]
        online = bool(self.cp.is_online(address)) and bool(self.cp.is_sc_active(address) or spec.install_mode)
        if online and not health.online:
            health.online = True
            health.backoff_s = 0.0
            health.kicks = 0
            if health.announced is not True:
                health.announced = True
                logger.info("OSDP %s: reader %s (address %d) online with Secure Channel", self.name, spec.name,
                            address)
                self.handler(ReaderStatus(spec.name, True))
            return
        if online:
            return
        if health.online:
            health.online = False
            health.offline_since = now
            health.next_kick = now + self.recover_min_s
            health.backoff_s = self.recover_min_s
        elif health.next_kick == 0.0:
            health.next_kick = now + self.recover_min_s * 3  # first handshake: give it time
            health.backoff_s = self.recover_min_s
        if now < health.next_kick:
            return
        answered = self._answers(address) > health.answers_at_kick
        reason = self._reason(answered)
        if health.announced is not False:
            health.announced = False
            logger.warning("OSDP %s: reader %s (address %d) offline: %s", self.name, spec.name, address, reason)
            self.handler(ReaderStatus(spec.name, False, reason))
        # Reset the reader's state machine: libosdp would otherwise wait 300 s before trying again.
        self.cp.disable_pd(address)
        self.cp.enable_pd(address)
        self.recoveries += 1
        health.kicks += 1
        health.answers_at_kick = self._answers(address)
        health.next_kick = now + health.backoff_s
        health.backoff_s = min(health.backoff_s * 2, self.recover_max_s)

    def _answers(self, address: int) -> int:
        """How much the reader at `address` has sent: its replies where the channel counts them, else all bytes."""
        replies_from = getattr(self.channel, "replies_from", None)
        if replies_from is not None:
            return int(replies_from(address))
        return int(getattr(self.channel, "bytes_in", 0))

    def _reason(self, answered: bool) -> str:
        error = getattr(self.channel, "error", None)
        if error:
            return f"bus port: {error}"
        if answered:
            return "secure channel refused: the reader answers but its key does not match (or it is in install mode)"
        return "no reply from the reader"

    def _dispatch(self, address: int, event: dict) -> None:
        spec = self.readers.get(address)
        if spec is None:
            return
        kind = event.get("event")
        if kind == Event.CardRead:
            data = bytes(event.get("data", b""))
            if event.get("format") == CardFormat.ASCII:
                self.handler(CardPresented(spec.name, text=data.decode("ascii", "replace")))
                return
            count = int(event.get("length", len(data) * 8))
            try:
                bits = WiegandBits.from_bytes(count, data)
            except ValueError:
                bits = WiegandBits(len(data) * 8, int.from_bytes(data, "big")) if data else WiegandBits(0, 0)
            self.handler(CardPresented(spec.name, bits=bits))
        elif kind == Event.KeyPress:
            self.handler(KeysPressed(spec.name, len(event.get("data", b""))))
        elif kind == Event.Status and event.get("type") == StatusReportType.Local:
            report = bytes(event.get("report", b""))
            self.handler(LocalStatus(spec.name, bool(report[:1] and report[0]), bool(report[1:2] and report[1])))
        elif kind == Event.Status and event.get("type") == StatusReportType.Input:
            self.handler(InputsReported(spec.name, tuple(bool(b) for b in bytes(event.get("report", b"")))))


def provision_key(port: str, baudrate: int, address: int, key: bytes, timeout_s: float = 15.0,
                  channel: Channel | None = None) -> str:
    """Set `key` on a reader in install mode, then prove it with Secure Channel enforced; returns what happened.

    libosdp's CP in install mode opens the Secure Channel with the default key (SCBK-D); the new key goes over
    it as osdp_KEYSET. Raises TimeoutError when a step does not finish in `timeout_s`.
    """
    channel = channel or SerialChannel(port, baudrate)

    def wait(cp: ControlPanel, what: str) -> None:
        # A handshake that fails once (the reader still settling on its new key) would sit out libosdp's
        # 300 s offline wait: restart it every 2 s instead, as the bus supervisor does.
        deadline = time.monotonic() + timeout_s
        next_kick = time.monotonic() + 2.0
        while (now := time.monotonic()) < deadline:
            if cp.is_online(address) and cp.is_sc_active(address):
                return
            if now >= next_kick:
                cp.disable_pd(address)
                cp.enable_pd(address)
                next_kick = now + 2.0
            time.sleep(0.05)
        raise TimeoutError(f"reader at address {address} on {port}: {what} did not finish in {timeout_s:g} s")

    install = ControlPanel([PDInfo(address, channel, scbk=key, flags=[LibFlag.InstallMode])], log_level=LogLevel.Error)
    install.start()
    try:
        wait(install, "install-mode Secure Channel")
        if not install.submit_command(address, {"command": Command.Keyset, "type": 1, "data": key}):
            raise TimeoutError(f"reader at address {address} on {port}: the key could not be queued")
        time.sleep(1.0)  # the reader takes the key and both sides restart Secure Channel with it
        wait(install, "Secure Channel restart with the new key")
    finally:
        install.stop()
    verify = ControlPanel([PDInfo(address, channel, scbk=key, flags=[LibFlag.EnforceSecure])], log_level=LogLevel.Error)
    verify.start()
    try:
        wait(verify, "Secure Channel with the new key")
    finally:
        verify.stop()
        close = getattr(channel, "close", None)
        if close is not None:
            close()  # the badge service opens the port next
    return f"reader at address {address} on {port} now uses the key; Secure Channel verified"
