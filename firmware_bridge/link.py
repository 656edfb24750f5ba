"""Host side of the controller protocol, without I/O: sequence numbers, acks, retries, duplicate suppression."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from firmware_bridge.protocol import Ack, AckStatus, Frame, Hello, HostAck, HostHello, encode_frame

RETRY_INTERVAL_S = 0.1
MAX_TRIES = 5
DEDUPE_WINDOW = 64
HELLO_RETRY_MAX_S = 1.0  # an unanswered HOST_HELLO is never given up on; after MAX_TRIES its retries back off to this


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


@dataclass(frozen=True)
class _Held:
    frame: Frame
    fail_at: float  # a command waits for the hello no longer than it would wait for its own ack


class LinkSession:
    """One controller's protocol state.

    Commands get the next sequence number and are sent again every `retry_interval_s` until the controller
    acks them or `max_tries` is reached. Controller frames that need an ack are acked every time they
    arrive (an ack can be lost too) but delivered once: repeats are recognised by sequence number until
    the controller says HELLO with a new boot id.

    `hello()` opens a host session (PROTOCOL.md): commands given before the controller answered it wait,
    and go out when it is answered, so none can reach the controller ahead of it. The hello is sent again
    until it is answered, never given up on (after `max_tries` with backoff up to HELLO_RETRY_MAX_S): a
    command sent without it could carry a number the controller remembers from an earlier run and be acked
    without being carried out. A command that waited as long as a sent one may wait for its ack fails
    unsent (an unlock must not fire late). The ACK of the hello counts only if a HELLO came since it was sent
    (its boot id is what events are judged by); only a "bad command" answer (firmware without HOST_HELLO) lets
    commands go without a session. Until the hello is settled controller events are neither acked nor
    delivered: the controller sends them again after its answer, which starts with a HELLO, so they are
    judged against its current boot id.
    """

    def __init__(self, retry_interval_s: float = RETRY_INTERVAL_S, max_tries: int = MAX_TRIES) -> None:
        self.retry_interval_s = retry_interval_s
        self.max_tries = max_tries
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._seen: deque[int] = deque(maxlen=DEDUPE_WINDOW)
        self._hello: _Pending | None = None  # the unanswered HOST_HELLO, apart from `_pending`: it never fails
        self._hello_heard = False  # a HELLO (the controller's boot id) arrived since the HOST_HELLO was sent
        self._hello_gap_s = retry_interval_s  # until its next copy; doubles while no command waits for it
        self._held: list[_Held] = []
        self.boot_id: int | None = None
        self.duplicates = 0

    def hello(self, session: int, now: float) -> bytes:
        """A HOST_HELLO for a new session; commands wait until the controller answered it. Its wire bytes."""
        frame = HostHello(self._next_seq(), session & 0xFFFFFFFF)
        # A newer hello supersedes an unanswered one: what waited now waits for this one.
        self._hello = _Pending(frame, encode_frame(frame), 1, now + self.retry_interval_s)
        self._hello_heard = False
        self._hello_gap_s = self.retry_interval_s
        return self._hello.wire

    def command(self, frame: Frame, now: float) -> bytes:
        """Assign a sequence number to `frame`, remember it for retries, and return its wire bytes (nothing
        while a hello is unanswered: the command waits for it)."""
        if self._hello is not None:
            self._held.append(_Held(frame, now + self.max_tries * self.retry_interval_s))
            # A command waits: the hello goes as often as the command's own retries would, not at its backoff.
            self._hello.next_at = min(self._hello.next_at, now + self.retry_interval_s)
            return b""
        self._next_seq()
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
            if self._hello is not None and frame.acked == self._hello.frame.seq:
                return self._hello_answered(frame, now)
            pending = self._pending.pop(frame.acked, None)
            if pending is None:
                return None, b""  # an ack for a command already settled (its retry crossed the ack)
            return _result(pending, frame.status), b""
        if isinstance(frame, Hello):
            if frame.boot_id != self.boot_id:
                self._seen.clear()
            self.boot_id = frame.boot_id
            self._hello_heard = self._hello is not None
            return frame, b""
        if not frame.NEEDS_ACK:
            return frame, b""
        if self._hello is not None:
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
        waited = [held for held in self._held if held.fail_at <= now]
        if waited:
            self._held = [held for held in self._held if held.fail_at > now]
            failed += [CommandResult(held.frame, False, None, 0, "controller has not answered the host hello")
                       for held in waited]
        if self._hello is not None and self._hello.next_at <= now:
            resend.append(self._resend_hello(now))
        for seq, pending in list(self._pending.items()):
            if pending.next_at > now:
                continue
            if pending.tries >= self.max_tries:
                del self._pending[seq]
                failed.append(CommandResult(pending.frame, False, None, pending.tries,
                                            f"no ack after {pending.tries} tries"))
                continue
            pending.tries += 1
            pending.next_at = now + self.retry_interval_s
            resend.append(pending.wire)
        return resend, failed

    def next_deadline(self) -> float | None:
        """When `due` next has something to do."""
        times = [p.next_at for p in self._pending.values()] + [held.fail_at for held in self._held]
        if self._hello is not None:
            times.append(self._hello.next_at)
        return min(times, default=None)

    def abandon(self, detail: str) -> list[CommandResult]:
        """The link went down: every pending command fails now (an unlock must not fire minutes late)."""
        failed = [CommandResult(p.frame, False, None, p.tries, detail) for p in self._pending.values()]
        failed += [CommandResult(held.frame, False, None, 0, detail) for held in self._held]
        self._pending.clear()
        self._held.clear()
        self._hello = None
        return failed

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _hello_answered(self, ack: Ack, now: float) -> tuple[CommandResult | None, bytes]:
        """The controller acked our HOST_HELLO: settle the session, or ask again."""
        assert self._hello is not None
        if ack.status not in (AckStatus.OK, AckStatus.BAD_COMMAND):
            return None, b""  # busy: the retry comes in its time
        if ack.status == AckStatus.OK and not self._hello_heard:
            # Its HELLO was lost (a CRC error, say): without the boot id it carries, a rebooted controller's
            # new events would be judged against the old boot and dropped as repeats. Ask again, at the pace of
            # a retry (not at once: a controller that never says HELLO would ping-pong with us at line speed).
            self._hello.next_at = min(self._hello.next_at, now + self.retry_interval_s)
            return None, b""
        # "Bad command" is firmware without HOST_HELLO: the commands go out without a session.
        return _result(self._hello, ack.status), self._release(now)

    def _resend_hello(self, now: float) -> bytes:
        assert self._hello is not None
        hello = self._hello
        hello.tries += 1
        # The first max_tries copies, and any while a command waits, as fast as a command's retries; else slower
        # and slower: the controller may be busy or the line noisy, and nothing needs the session yet.
        if self._held or hello.tries < self.max_tries:
            self._hello_gap_s = self.retry_interval_s
        else:
            self._hello_gap_s = min(self._hello_gap_s * 2, max(HELLO_RETRY_MAX_S, self.retry_interval_s))
        hello.next_at = now + self._hello_gap_s
        return hello.wire

    def _release(self, now: float) -> bytes:
        """The hello is settled: the commands that waited for it, numbered now, as wire bytes."""
        self._hello = None
        held, self._held = self._held, []
        return b"".join(self.command(h.frame, now) for h in held)


def _result(pending: _Pending, status_code: int) -> CommandResult:
    status = AckStatus(status_code) if status_code in AckStatus._value2member_map_ else None
    ok = status is AckStatus.OK
    detail = "" if ok else f"controller answered status {status_code}"
    return CommandResult(pending.frame, ok, status, pending.tries, detail)
