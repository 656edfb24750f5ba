"""Host side of the controller protocol, without I/O: sequence numbers, acks, retries, duplicate suppression."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from firmware_bridge.protocol import Ack, AckStatus, Frame, Hello, HostAck, HostHello, encode_frame

RETRY_INTERVAL_S = 0.1
MAX_TRIES = 5
DEDUPE_WINDOW = 64


@dataclass(frozen=True)
class CommandResult:
    """How a command ended: acknowledged by the controller (`status`), or given up after `tries`."""

    command: Frame
    ok: bool
    status: AckStatus | None
    tries: int
    detail: str = ""


@dataclass
class _Pending:
    frame: Frame
    wire: bytes
    tries: int
    next_at: float


class LinkSession:
    """One controller's protocol state.

    Commands get the next sequence number and are sent again every `retry_interval_s` until the controller
    acks them or `max_tries` is reached. Controller frames that need an ack are acked every time they
    arrive (an ack can be lost too) but delivered once: repeats are recognised by sequence number until
    the controller says HELLO with a new boot id.

    `hello()` opens a host session (PROTOCOL.md): commands given before the controller answered it wait,
    and go out when it is answered or given up on, so none can reach the controller ahead of it. Until
    then controller events are neither acked nor delivered: the controller sends them again after its
    answer, which starts with a HELLO, so they are judged against its current boot id.
    """

    def __init__(self, retry_interval_s: float = RETRY_INTERVAL_S, max_tries: int = MAX_TRIES) -> None:
        self.retry_interval_s = retry_interval_s
        self.max_tries = max_tries
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._seen: deque[int] = deque(maxlen=DEDUPE_WINDOW)
        self._hello_seq: int | None = None
        self._held: list[Frame] = []
        self.boot_id: int | None = None
        self.duplicates = 0

    def hello(self, session: int, now: float) -> bytes:
        """A HOST_HELLO for a new session; commands wait until the controller answered it. Its wire bytes."""
        self._hello_seq = None  # a newer hello supersedes an unanswered one; what waited now waits for this one
        wire = self.command(HostHello(0, session & 0xFFFFFFFF), now)
        self._hello_seq = self._seq
        return wire

    def command(self, frame: Frame, now: float) -> bytes:
        """Assign a sequence number to `frame`, remember it for retries, and return its wire bytes (nothing
        while a hello is unanswered: the command waits for it)."""
        if self._hello_seq is not None:
            self._held.append(frame)
            return b""
        self._seq = (self._seq + 1) & 0xFF
        if self._seq in self._pending:  # 255 commands unanswered: the oldest is long dead
            self._pending.pop(self._seq)
        frame = replace(frame, seq=self._seq)
        wire = encode_frame(frame)
        if frame.NEEDS_ACK:
            self._pending[self._seq] = _Pending(frame, wire, 1, now + self.retry_interval_s)
        return wire

    def receive(self, frame: Frame, now: float = 0.0) -> tuple[Frame | CommandResult | None, bytes]:
        """Handle a frame from the controller: what to deliver (None for a repeat) and what to write back."""
        if isinstance(frame, Ack):
            pending = self._pending.pop(frame.acked, None)
            if pending is None:
                return None, b""  # an ack for a command already settled (its retry crossed the ack)
            status = AckStatus(frame.status) if frame.status in AckStatus._value2member_map_ else None
            ok = status is AckStatus.OK
            detail = "" if ok else f"controller answered status {frame.status}"
            # Firmware without HOST_HELLO answers "bad command": the commands go out all the same.
            released = self._release(now) if frame.acked == self._hello_seq else b""
            return CommandResult(pending.frame, ok, status, pending.tries, detail), released
        if isinstance(frame, Hello):
            if frame.boot_id != self.boot_id:
                self._seen.clear()
            self.boot_id = frame.boot_id
            return frame, b""
        if not frame.NEEDS_ACK:
            return frame, b""
        if self._hello_seq is not None:
            return None, b""  # not yet: it comes again after the controller answered our hello
        ack = encode_frame(HostAck(0, frame.seq))
        if frame.seq in self._seen:
            self.duplicates += 1
            return None, ack
        self._seen.append(frame.seq)
        return frame, ack

    def due(self, now: float) -> tuple[list[bytes], list[CommandResult]]:
        """Commands to send again now, and commands given up on."""
        resend: list[bytes] = []
        failed: list[CommandResult] = []
        for seq, pending in list(self._pending.items()):
            if pending.next_at > now:
                continue
            if pending.tries >= self.max_tries:
                del self._pending[seq]
                failed.append(CommandResult(pending.frame, False, None, pending.tries,
                                            f"no ack after {pending.tries} tries"))
                if seq == self._hello_seq:
                    resend.append(self._release(now))
                continue
            pending.tries += 1
            pending.next_at = now + self.retry_interval_s
            resend.append(pending.wire)
        return resend, failed

    def next_deadline(self) -> float | None:
        """When `due` next has something to do."""
        return min((p.next_at for p in self._pending.values()), default=None)

    def abandon(self, detail: str) -> list[CommandResult]:
        """The link went down: every pending command fails now (an unlock must not fire minutes late)."""
        failed = [CommandResult(p.frame, False, None, p.tries, detail) for p in self._pending.values()]
        failed += [CommandResult(frame, False, None, 0, detail) for frame in self._held]
        self._pending.clear()
        self._held.clear()
        self._hello_seq = None
        return failed

    def _release(self, now: float) -> bytes:
        """The hello is settled: the commands that waited for it, numbered now, as wire bytes."""
        self._hello_seq = None
        held, self._held = self._held, []
        return b"".join(self.command(frame, now) for frame in held)
