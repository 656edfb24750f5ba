"""A simulated door controller on the far side of a serial line (a pty): the demo's and the tests' hardware."""

from __future__ import annotations

import logging
import os
import pty
import select
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from firmware_bridge.protocol import (
    Ack,
    AckStatus,
    Buzzer,
    Frame,
    FrameError,
    FrameParser,
    Heartbeat,
    Hello,
    HostAck,
    HostHello,
    InputChanged,
    InputKind,
    Led,
    StatusRequest,
    Unlock,
    WiegandRead,
    encode_frame,
)
from firmware_bridge.wiegand import WiegandBits

logger = logging.getLogger(__name__)

RETRY_INTERVAL_S = 0.1


@dataclass(frozen=True)
class ReceivedCommand:
    """A command the controller carried out, and when (monotonic clock)."""

    frame: Frame
    at: float


class SimulatedController:
    """Speaks the controller side of PROTOCOL.md on a file descriptor (a pty master).

    Events (reads, inputs) are queued and sent one after another, each again every 100 ms until the host
    acks it, as the firmware does. Commands are acked and recorded once per sequence number.
    """

    def __init__(self, fd: int, *, inputs: int = 4, heartbeat_s: float = 1.0, boot_id: int | None = None,
                 knows_host_hello: bool = True) -> None:
        self.fd = fd
        self.knows_host_hello = knows_host_hello  # False: firmware older than HOST_HELLO, which it calls a bad command
        self.inputs = inputs
        self.heartbeat_s = heartbeat_s
        self.boot_id = boot_id if boot_id is not None else int.from_bytes(os.urandom(4), "big")
        self.states: dict[tuple[int, int], int] = {}
        self.commands: deque[ReceivedCommand] = deque(maxlen=10_000)
        self.command_seen = threading.Condition()
        self.host_seen = threading.Event()  # set by the host's first HOST_HELLO: its side of the link is open
        self.heartbeats_on = True
        self.ack_commands = True
        self.errors = 0
        self._seq = 0
        self._event_seq = 0
        self._queue: deque[Frame] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seen_host: deque[int] = deque(maxlen=64)
        self._host_session: int | None = None
        self._thread = threading.Thread(target=self._run, name="sim-controller", daemon=True)
        self._wake_r, self._wake_w = os.pipe()

    def start(self) -> None:
        self._send_now(Hello(self._next_seq(), self.boot_id, 1, 0, self.inputs))
        self._thread.start()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def swipe(self, reader: int, bits: WiegandBits) -> None:
        self._enqueue(WiegandRead(0, reader, bits.count, bits.to_bytes()))

    def set_input(self, kind: InputKind, index: int, state: bool) -> None:
        with self._lock:
            self.states[(kind, index)] = int(state)
        self._enqueue(InputChanged(0, int(kind), index, int(state)))

    def write_raw(self, data: bytes) -> None:
        """Put bytes on the wire as they are (noise, garbage, broken frames)."""
        with self._lock:
            os.write(self.fd, data)

    def wait_for_command(self, kind: type[Frame], after: int = 0, timeout_s: float = 5.0) -> ReceivedCommand | None:
        """The first command of `kind` beyond the first `after` received, waiting up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self.command_seen:
            while True:
                found = [c for c in self.commands if isinstance(c.frame, kind)]
                if len(found) > after:
                    return found[after]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.command_seen.wait(left)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _enqueue(self, frame: Frame) -> None:
        with self._lock:
            # Events count on their own: a repeat is recognised by its number, so two different events must
            # never share one, however many heartbeats and acks went out between them.
            self._event_seq = (self._event_seq + 1) & 0xFF
            self._queue.append(frame.__class__(self._event_seq, *frame._fields()))
        os.write(self._wake_w, b"x")

    def _send_now(self, frame: Frame) -> None:
        with self._lock:
            os.write(self.fd, encode_frame(frame))

    def _run(self) -> None:
        parser = FrameParser()
        next_beat = time.monotonic()
        started = time.monotonic()
        sent_head: tuple[int, float] | None = None  # (seq of queue head, when it was last sent)
        while not self._stop.is_set():
            now = time.monotonic()
            if self.heartbeats_on and now >= next_beat:
                try:
                    self._send_now(Heartbeat(self._next_seq(), int((now - started) * 1000) & 0xFFFFFFFF,
                                             min(self.pending(), 255)))
                except OSError:
                    return
                next_beat = now + self.heartbeat_s
            with self._lock:
                head = self._queue[0] if self._queue else None
            if head is not None and (sent_head is None or sent_head[0] != head.seq
                                     or now - sent_head[1] >= RETRY_INTERVAL_S):
                try:
                    self._send_now(head)
                except OSError:
                    return
                sent_head = (head.seq, now)
            timeout = max(0.0, min(next_beat - now, RETRY_INTERVAL_S))
            try:
                readable, _, _ = select.select([self.fd, self._wake_r], [], [], timeout)
            except (OSError, ValueError):
                return
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)
            if self.fd in readable:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    return  # the other end closed
                for item in parser.feed(data):
                    if isinstance(item, FrameError):
                        self.errors += 1
                    else:
                        self._on_host_frame(item)

    def _on_host_frame(self, frame: Frame) -> None:
        if isinstance(frame, HostAck):
            with self._lock:
                if self._queue and self._queue[0].seq == frame.acked:
                    self._queue.popleft()
            os.write(self._wake_w, b"x")
            return
        if not isinstance(frame, (Unlock, Led, Buzzer, StatusRequest, HostHello)):
            return
        if not self.ack_commands:
            return
        if isinstance(frame, HostHello):
            self.host_seen.set()
        if isinstance(frame, HostHello) and not self.knows_host_hello:
            self._send_now(Ack(self._next_seq(), frame.seq, AckStatus.BAD_COMMAND))
            return
        if isinstance(frame, HostHello):  # carried out every time: the same session again changes nothing
            if frame.session != self._host_session:
                self._host_session = frame.session
                self._seen_host.clear()
            self._send_now(Hello(self._next_seq(), self.boot_id, 1, 0, self.inputs))
            self._send_now(Ack(self._next_seq(), frame.seq, AckStatus.OK))
            return
        self._send_now(Ack(self._next_seq(), frame.seq, AckStatus.OK))
        if frame.seq in self._seen_host:
            return  # a retry of a command already carried out
        self._seen_host.append(frame.seq)
        if isinstance(frame, StatusRequest):
            with self._lock:
                states = dict(self.states)
            for (kind, index), state in sorted(states.items()):
                self._enqueue(InputChanged(0, kind, index, state))
            return
        with self.command_seen:
            self.commands.append(ReceivedCommand(frame, time.monotonic()))
            self.command_seen.notify_all()


class SerialPair:
    """A pty pair standing in for a USB serial adapter, reachable under a stable symlink like /dev/serial/by-id."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.slave_path = os.ttyname(self.slave)
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(link.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.slave_path)
        tmp.replace(link)

    def close(self) -> None:
        """Unplug: both ends closed, the symlink removed."""
        self.link.unlink(missing_ok=True)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
