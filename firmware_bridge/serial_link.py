"""The controller's serial port: open, read, write, notice it vanish, reopen with backoff (one thread per port)."""

from __future__ import annotations

import logging
import os
import queue
import secrets
import select
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import serial

from firmware_bridge.link import CommandResult, LinkSession
from firmware_bridge.protocol import Frame, FrameError, FrameParser, HostHello, StatusRequest

logger = logging.getLogger(__name__)

RECONNECT_MIN_DELAY_S = 0.2
READ_CHUNK = 4096


class ReaderDisconnected(Exception):
    """The serial device went away or failed (USB adapter pulled, pty closed, I/O error)."""


@dataclass(frozen=True)
class LinkUp:
    """The controller answers on the port."""

    port: str


@dataclass(frozen=True)
class LinkDown:
    """The controller stopped answering, or the port went away; `reason` says which."""

    port: str
    reason: str


LinkEvent = Frame | CommandResult | LinkUp | LinkDown
Handler = Callable[[LinkEvent], None]


class SerialLink:
    """Runs one controller link in its own thread and hands every event to `handler` (on that thread).

    The link is up from the first valid frame after the port opens, and down when the port fails or
    nothing valid arrived for `silence_timeout_s` (the controller sends a heartbeat every second).
    """

    def __init__(self, port: str, handler: Handler, *, baudrate: int = 115200, silence_timeout_s: float = 3.0,
                 reconnect_max_delay_s: float = 10.0, name: str | None = None) -> None:
        self.port = port
        self.baudrate = baudrate
        self.handler = handler
        self.silence_timeout_s = silence_timeout_s
        self.reconnect_max_delay_s = reconnect_max_delay_s
        self.name = name or port
        self.session = LinkSession()
        self.errors: Counter[str] = Counter()
        self.frames = 0
        self._outbox: queue.SimpleQueue[Frame] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.name}", daemon=True)
        self._up = False
        self._logged_errors: set[str] = set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    @property
    def up(self) -> bool:
        return self._up

    def send(self, command: Frame) -> None:
        """Queue a command (any thread); its CommandResult comes back through the handler."""
        self._outbox.put(command)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed (stopping)

    def _run(self) -> None:
        delay = RECONNECT_MIN_DELAY_S
        down_reported = False
        while not self._stop.is_set():
            try:
                port = self._open()
            except ReaderDisconnected as err:
                if not down_reported:
                    logger.warning("controller %s: cannot open %s: %s; retrying with backoff", self.name,
                                   self.port, err)
                    self._down(str(err))
                    down_reported = True
                self._drop_commands("serial port not open")
                self._stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max_delay_s)
                continue
            try:
                self._serve(port)
                reason = "stopping"
            except ReaderDisconnected as err:
                reason = str(err)
            finally:
                port.close()
            if self._stop.is_set():
                break
            # Each open starts clean, the link already reported down or not: nothing unanswered (the hello, the
            # commands waiting for it) is carried into the next open.
            for result in self.session.abandon(f"link down: {reason}"):
                self.handler(result)
            was_up = self._up
            if was_up or not down_reported:
                logger.warning("controller %s on %s lost: %s", self.name, self.port, reason)
                self._down(reason)
                down_reported = True
            if was_up:
                delay = RECONNECT_MIN_DELAY_S
            self._stop.wait(delay)
            delay = min(delay * 2, self.reconnect_max_delay_s)
        for result in self.session.abandon("bridge stopping"):
            self.handler(result)

    def _open(self) -> serial.Serial:
        try:
            return serial.Serial(self.port, self.baudrate, timeout=0, write_timeout=1, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as err:
            raise ReaderDisconnected(str(err)) from err

    def _serve(self, port: serial.Serial) -> None:
        parser = FrameParser()
        fd = port.fileno()
        opened = time.monotonic()
        last_valid = opened
        # A new host session first: the controller may remember sequence numbers of an earlier run of the service
        # and would ack our commands with those numbers as retries without carrying them out.
        # A delimiter first: it ends any half frame a run that died mid-write left in the controller's decoder,
        # which the hello would otherwise join and be lost with (PROTOCOL.md, framing).
        self._write(port, b"\x00" + self.session.hello(secrets.randbits(32), opened))
        while not self._stop.is_set():
            now = time.monotonic()
            deadline = last_valid + self.silence_timeout_s
            if now >= deadline:
                raise ReaderDisconnected(f"silent for {self.silence_timeout_s:g} s")
            retry_at = self.session.next_deadline()
            wait = min(deadline, retry_at if retry_at is not None else deadline) - now
            readable, _, _ = select.select([fd, self._wake_r], [], [], max(wait, 0))
            if self._wake_r in readable:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            now = time.monotonic()
            if fd in readable:
                data = self._read(port)
                for item in parser.feed(data):
                    if isinstance(item, FrameError):
                        self._count_error(item)
                        continue
                    last_valid = now
                    self.frames += 1
                    if not self._up:
                        self._up = True
                        logger.info("controller %s on %s is up", self.name, self.port)
                        self.handler(LinkUp(self.port))
                    deliver, reply = self.session.receive(item, now)
                    if reply:
                        self._write(port, reply)
                    if isinstance(deliver, CommandResult) and isinstance(deliver.command, HostHello):
                        self._session_settled(port, deliver, now)  # the link's own business, not the handler's
                    elif deliver is not None:
                        self.handler(deliver)
            while True:
                try:
                    command = self._outbox.get_nowait()
                except queue.Empty:
                    break
                self._write(port, self.session.command(command, now))
            resend, failed = self.session.due(now)
            for wire in resend:
                self._write(port, wire)
            for result in failed:
                self.handler(result)

    def _session_settled(self, port: serial.Serial, result: CommandResult, now: float) -> None:
        if not result.ok:  # answered "bad command": firmware older than HOST_HELLO
            logger.info("controller %s: its firmware predates HOST_HELLO (%s); going on without a host session",
                        self.name, result.detail)
        # The door states now (a status request waiting for the hello all along could time out).
        self._write(port, self.session.command(StatusRequest(0), now))

    def _read(self, port: serial.Serial) -> bytes:
        try:
            data = os.read(port.fileno(), READ_CHUNK)
        except OSError as err:
            raise ReaderDisconnected(f"read failed: {err}") from err
        if not data:
            raise ReaderDisconnected("port closed (readable but no data)")
        return data

    def _write(self, port: serial.Serial, data: bytes) -> None:
        try:
            port.write(data)
        except (serial.SerialException, OSError) as err:
            raise ReaderDisconnected(f"write failed: {err}") from err

    def _count_error(self, error: FrameError) -> None:
        self.errors[error.reason] += 1
        if error.reason not in self._logged_errors:
            self._logged_errors.add(error.reason)
            logger.warning("controller %s: skipped a bad frame (%s: %s), raw %s; further %s errors are only "
                           "counted", self.name, error.reason, error.detail, error.raw[:32].hex(), error.reason)

    def _down(self, reason: str) -> None:
        self._up = False
        for result in self.session.abandon(f"link down: {reason}"):
            self.handler(result)
        self.handler(LinkDown(self.port, reason))

    def _drop_commands(self, reason: str) -> None:
        while True:
            try:
                command = self._outbox.get_nowait()
            except queue.Empty:
                return
            self.handler(CommandResult(command, False, None, 0, reason))
