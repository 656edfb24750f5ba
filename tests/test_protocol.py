"""The controller link's framing: round trips, every kind of bad input counted and skipped, resync, fuzzing."""

from __future__ import annotations

import queue
import random
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.link import CommandResult, LinkSession
from firmware_bridge.protocol import (
    MAX_ENCODED_LEN,
    Ack,
    AckStatus,
    Frame,
    FrameError,
    FrameParser,
    Heartbeat,
    Hello,
    HostAck,
    HostHello,
    InputChanged,
    Unlock,
    WiegandRead,
    cobs_decode,
    cobs_encode,
    crc16,
    crc16_fast,
    decode_frame,
    encode_frame,
)
from firmware_bridge.serial_link import SerialLink
from firmware_bridge.sim_controller import SerialPair, SimulatedController
from firmware_bridge.wiegand import WiegandBits, encode

SAMPLES: list[Frame] = [
    Hello(1, 0xDEADBEEF, 1, 0, 5),
    Heartbeat(2, 123456, 0),
    WiegandRead(3, 0, 26, bytes.fromhex("8643 83c0")),
    InputChanged(4, 1, 0, 1),
    Ack(5, 9, 0),
    Unlock(6, 1, 3000),
]


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == crc16_fast(b"123456789") == 0x29B1


@given(st.binary(max_size=600))
def test_cobs_round_trip_has_no_zero(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert cobs_decode(encoded) == data


def test_frames_round_trip_when_split_anywhere() -> None:
    wire = b"".join(encode_frame(f) for f in SAMPLES)
    for cut in range(len(wire) + 1):
        parser = FrameParser()
        assert parser.feed(wire[:cut]) + parser.feed(wire[cut:]) == SAMPLES


def _reasons(items: list[Frame | FrameError]) -> list[str]:
    return [i.reason if isinstance(i, FrameError) else type(i).__name__ for i in items]


def test_bad_frames_are_reported_and_the_next_good_frame_gets_through() -> None:
    good = encode_frame(Unlock(7, 0, 500))
    body = bytearray(cobs_decode(good[:-1]))
    body[-1] ^= 0xFF  # break the CRC
    wire = (
        cobs_encode(bytes(body)) + b"\x00"         # crc
        + b"\x05ab\x00"                             # COBS code runs past the end
        + cobs_encode(b"\x01\x81") + b"\x00"        # truncated
        + b"\x07" * (MAX_ENCODED_LEN + 10) + b"\x00"  # oversized
        + encode_frame(Unlock(8, 0, 500))[: 4]      # cut off mid-frame: joins the next bytes ...
        + good                                      # ... so this one is lost with it, then:
        + good
    )
    assert _reasons(FrameParser().feed(wire)) == ["crc", "bad_cobs", "truncated", "oversized", "crc", "Unlock"]


def test_unknown_type_version_and_payload_length_are_named() -> None:
    def frame(raw: bytes) -> bytes:
        return cobs_encode(raw + crc16(raw).to_bytes(2, "big"))

    assert decode_frame(frame(b"\x01\x7f\x01")).reason == "unknown_type"  # type: ignore[union-attr]
    assert decode_frame(frame(b"\x02\x81\x01\x00\x00\x00")).reason == "bad_version"  # type: ignore[union-attr]
    assert decode_frame(frame(b"\x01\x81\x01\x00")).reason == "bad_payload"  # type: ignore[union-attr]
    assert decode_frame(frame(b"\x01\x03\x01\x00\x1a\x00")).reason == "bad_payload"  # type: ignore[union-attr]


def test_fuzz_100k_random_and_mutated_frames_never_raise() -> None:
    """100,000 inputs: random bytes, and good frames with flipped, dropped, inserted and repeated bytes."""
    rng = random.Random(20261121)
    good = [encode_frame(f) for f in SAMPLES]
    parser = FrameParser()
    counts = {"frames": 0, "errors": 0}
    for i in range(100_000):
        if i % 4 == 0:
            data = rng.randbytes(rng.randint(0, 120))
        else:
            data = bytearray(rng.choice(good))
            for _ in range(rng.randint(1, 4)):
                op = rng.randrange(4)
                pos = rng.randrange(len(data))
                if op == 0:
                    data[pos] ^= 1 << rng.randrange(8)
                elif op == 1 and len(data) > 1:
                    del data[pos]
                elif op == 2:
                    data.insert(pos, rng.randrange(256))
                else:
                    data[pos:pos] = data[pos:pos + rng.randint(1, 8)]
            data = bytes(data)
        for item in parser.feed(data):
            counts["errors" if isinstance(item, FrameError) else "frames"] += 1
    assert counts["errors"] > 50_000
    # Whatever came before, a clean frame after a delimiter always parses.
    assert parser.feed(b"\x00" + good[5]) == [SAMPLES[5]]


def test_session_delivers_a_repeated_event_once_and_acks_every_copy() -> None:
    session = LinkSession()
    read = WiegandRead(9, 0, 4, b"\xa0")
    first = session.receive(read)
    second = session.receive(read)
    assert first == (read, encode_frame(HostAck(0, 9)))
    assert second == (None, encode_frame(HostAck(0, 9)))
    assert session.duplicates == 1
    session.receive(Hello(1, 42, 1, 0, 4))  # the controller rebooted: sequence numbers start over
    assert session.receive(read)[0] == read


def test_session_retries_commands_then_gives_up() -> None:
    session = LinkSession(retry_interval_s=0.1, max_tries=3)
    wire = session.command(Unlock(0, 1, 1000), now=0.0)
    assert decode_frame(wire[:-1]) == Unlock(1, 1, 1000)
    assert session.due(0.05) == ([], [])
    assert session.due(0.1) == ([wire], [])
    assert session.due(0.25) == ([wire], [])
    resend, failed = session.due(0.35)
    assert resend == [] and len(failed) == 1 and failed[0].tries == 3 and not failed[0].ok


def test_session_ack_completes_a_command_once() -> None:
    session = LinkSession()
    session.command(Unlock(0, 1, 1000), now=0.0)
    result, _ = session.receive(Ack(3, 1, 0))
    assert result is not None and result.ok and result.tries == 1  # type: ignore[union-attr]
    assert session.receive(Ack(4, 1, 0)) == (None, b"")  # a late copy of the ack
    assert session.due(10.0) == ([], [])


def _opened_session() -> tuple[LinkSession, HostHello]:
    """A session that has just sent its HOST_HELLO at time 0 (retries every 0.1 s, 5 tries for a command)."""
    session = LinkSession(retry_interval_s=0.1, max_tries=5)
    (hello,) = FrameParser().feed(session.hello(0xC0FFEE, now=0.0))
    assert isinstance(hello, HostHello)
    return session, hello


def test_session_resends_a_lost_hello_with_backoff_and_sends_no_command_without_it() -> None:
    """Every copy of the HOST_HELLO is lost while the controller, still in the previous run's session, keeps
    talking. A command sent without the hello could carry a number the controller remembers from that run and be
    acked without being carried out (an unlock that never happens). The hello goes on: as often as a command's
    retries while the command waits; when the command, having waited as long as it would for its own ack, has
    failed unsent, slower and slower."""
    session, hello = _opened_session()
    assert session.command(Unlock(0, 0, 3000), now=0.0) == b""
    sent: list[tuple[float, object]] = []
    failed: list[CommandResult] = []
    while (now := session.next_deadline()) is not None and now < 10.0:
        resend, gone = session.due(now)
        sent += [(now, frame) for wire in resend for frame in FrameParser().feed(wire)]
        failed += gone
        assert session.receive(WiegandRead(1, 0, 4, b"\xa0"), now) == (None, b"")  # events wait too
    assert {frame for _, frame in sent} == {hello}
    gaps = [round(b - a, 3) for (a, _), (b, _) in zip([(0.0, None), *sent], sent, strict=False)]
    assert gaps[:9] == [0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.8, 1.0] and set(gaps[9:]) == {1.0}
    assert [(type(r.command), r.ok, r.tries) for r in failed] == [(Unlock, False, 0)]
    assert "host hello" in failed[0].detail


def test_session_releases_waiting_commands_when_a_retried_hello_is_answered() -> None:
    session, hello = _opened_session()
    for _ in range(5):  # copies lost until a command would have been given up on, and then one more
        assert session.due(session.next_deadline() or 0.0)[0] == [encode_frame(hello)]
    assert session.command(Unlock(0, 0, 3000), now=0.65) == b""
    assert session.receive(Hello(7, 42, 1, 0, 4), 0.7)[0] == Hello(7, 42, 1, 0, 4)
    result, released = session.receive(Ack(8, hello.seq, 0), 0.7)
    assert isinstance(result, CommandResult) and result.ok and result.tries == 6
    assert FrameParser().feed(released) == [Unlock(hello.seq + 1, 0, 3000)]
    swipe = WiegandRead(1, 0, 4, b"\xa0")
    assert session.receive(swipe, 0.7) == (swipe, encode_frame(HostAck(0, 1)))


def test_session_trusts_the_ack_of_its_hello_only_after_a_hello() -> None:
    """The controller rebooted while unplugged and numbers its events from 1 again. After the host reopens the
    port, the controller's HELLO answer is lost (CRC error) but its ACK is not: trusting the ACK alone, the host
    would judge the new boot's first swipe by the old boot id and drop it as a repeat. It asks again instead."""
    session, hello = _opened_session()
    session.receive(Hello(1, 0x1111, 1, 0, 4), 0.0)
    session.receive(Ack(2, hello.seq, 0), 0.0)
    swipe = WiegandRead(1, 0, 4, b"\xa0")
    assert session.receive(swipe, 0.0)[0] == swipe  # the old boot's first swipe
    session.abandon("unplugged")

    again = session.hello(0xBEEF, now=5.0)
    assert session.command(Unlock(0, 0, 3000), now=5.0) == b""
    (second,) = FrameParser().feed(again)
    assert session.receive(Ack(2, second.seq, 0), 5.01) == (None, b"")  # no HELLO came: ask again
    assert session.due(session.next_deadline() or 0.0) == ([again], [])
    assert session.receive(swipe, 5.02) == (None, b"")  # the new boot's first swipe waits
    session.receive(Hello(3, 0x2222, 1, 0, 4), 5.03)
    result, released = session.receive(Ack(4, second.seq, 0), 5.03)
    assert isinstance(result, CommandResult) and result.ok
    assert FrameParser().feed(released) == [Unlock(second.seq + 1, 0, 3000)]
    assert session.receive(swipe, 5.1) == (swipe, encode_frame(HostAck(0, 1)))


def test_session_goes_on_without_a_session_when_old_firmware_answers_bad_command() -> None:
    """Firmware older than HOST_HELLO answers it "bad command" (and no HELLO); "busy" is not that answer."""
    session, hello = _opened_session()
    assert session.command(Unlock(0, 0, 3000), now=0.0) == b""
    assert session.receive(Ack(1, hello.seq, AckStatus.BUSY), 0.05) == (None, b"")
    result, released = session.receive(Ack(2, hello.seq, AckStatus.BAD_COMMAND), 0.1)
    assert isinstance(result, CommandResult) and not result.ok and result.status is AckStatus.BAD_COMMAND
    assert FrameParser().feed(released) == [Unlock(hello.seq + 1, 0, 3000)]
    swipe = WiegandRead(1, 0, 4, b"\xa0")
    assert session.receive(swipe, 0.1) == (swipe, encode_frame(HostAck(0, 1)))


def test_hundreds_of_events_between_heartbeats_all_arrive_once(tmp_path: Path) -> None:
    """Sequence numbers wrap at 256; 600 reads with heartbeats, acks and commands in between all come through.

    Found by bench/badge.py: with one counter for every frame, the 62nd swipe reused a number still in the
    host's repeat window and was dropped.
    """
    pair = SerialPair(tmp_path / "ctl")
    controller = SimulatedController(pair.master, heartbeat_s=0.01)
    controller.start()
    got: queue.SimpleQueue[object] = queue.SimpleQueue()
    link = SerialLink(str(pair.link), got.put)
    link.start()
    try:
        reads = 0
        deadline = time.monotonic() + 60
        for card in range(600):
            controller.swipe(0, encode("H10301", 1, card))
            for _ in range(3):  # as after a grant: unlock, LED, buzzer, each acked by the controller
                link.send(Unlock(0, 0, 100))
            while reads <= card and time.monotonic() < deadline:
                try:
                    item = got.get(timeout=1)
                except queue.Empty:
                    continue
                if isinstance(item, WiegandRead):
                    assert WiegandBits.from_bytes(item.bit_count, item.data) == encode("H10301", 1, reads)
                    reads += 1
        assert reads == 600
    finally:
        link.stop()
        controller.stop()
        pair.close()
