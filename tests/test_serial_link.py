"""SerialLink against a pty whose far end is the test itself: what goes on the wire when a port opens and fails."""

from __future__ import annotations

import os
import queue
import select
import time
from collections.abc import Callable

from firmware_bridge.link import CommandResult
from firmware_bridge.protocol import FrameError, FrameParser, HostHello, Unlock, encode_frame
from firmware_bridge.serial_link import LinkDown, LinkEvent, SerialLink
from firmware_bridge.sim_controller import SerialPair

DEADLINE_S = 10.0


def _next_hello(pair: SerialPair, parser: FrameParser, other_than: int | None = None) -> tuple[HostHello, list[object]]:
    """Read the controller's end until a HOST_HELLO (of a session other than `other_than`) arrives; it, and every
    frame or error read before it."""
    seen: list[object] = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        readable, _, _ = select.select([pair.master], [], [], 0.1)
        if not readable:
            continue
        for item in parser.feed(os.read(pair.master, 4096)):
            seen.append(item)
            if isinstance(item, HostHello) and item.session != other_than:
                return item, seen
    raise AssertionError(f"no HOST_HELLO within {DEADLINE_S} s; read {seen}")


def _wait_for(got: queue.SimpleQueue[LinkEvent], wanted: Callable[[LinkEvent], bool]) -> LinkEvent:
    deadline = time.monotonic() + DEADLINE_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = got.get(timeout=left)
        except queue.Empty:
            break
        if wanted(event):
            return event
    raise AssertionError(f"nothing wanted from the link within {DEADLINE_S} s")


def test_the_first_hello_after_opening_survives_a_half_frame_left_on_the_line(
        serial_pty: Callable[[str], SerialPair]) -> None:
    """A run that died mid-write left half a frame in the controller's decoder: the new run's first bytes must end
    it, or the first HOST_HELLO joins it and fails its CRC."""
    pair = serial_pty("ctl")
    parser = FrameParser()
    half = encode_frame(Unlock(9, 0, 100))[:5]
    assert parser.feed(half) == []
    link = SerialLink(str(pair.link), lambda event: None)
    link.start()
    try:
        _, before = _next_hello(pair, parser)
        # The half frame is dropped on its own; with the hello joined to it the error would carry the hello too.
        assert [item.raw for item in before if isinstance(item, FrameError)] == [half], before
    finally:
        link.stop()


def test_a_command_waiting_for_the_hello_fails_with_its_port_when_the_link_was_already_down(
        serial_pty: Callable[[str], SerialPair]) -> None:
    """The controller never answers. After the first silent open the link is reported down (once); a command given
    during a later silent open must fail when that port closes, not be carried into the next open."""
    pair = serial_pty("ctl")
    parser = FrameParser()
    got: queue.SimpleQueue[LinkEvent] = queue.SimpleQueue()
    link = SerialLink(str(pair.link), got.put, silence_timeout_s=0.3)
    link.start()
    try:
        first, _ = _next_hello(pair, parser)
        _wait_for(got, lambda event: isinstance(event, LinkDown))
        _next_hello(pair, parser, other_than=first.session)  # the second open: down already reported
        link.send(Unlock(0, 0, 100))
        result = _wait_for(got, lambda event: isinstance(event, CommandResult))
        assert isinstance(result, CommandResult) and isinstance(result.command, Unlock) and not result.ok
        assert result.detail.startswith("link down: silent"), result.detail
    finally:
        link.stop()
