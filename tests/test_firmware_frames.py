"""The MicroPython firmware run on the host: its frame code against the bridge's parser (and back), and its
Controller against the bridge's LinkSession."""

from __future__ import annotations

import importlib.util
import io
import random
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

import firmware_bridge
from firmware_bridge.link import LinkSession
from firmware_bridge.protocol import (
    Ack,
    Buzzer,
    Frame,
    FrameError,
    FrameParser,
    Heartbeat,
    Hello,
    HostAck,
    HostHello,
    InputChanged,
    Led,
    StatusRequest,
    Unlock,
    WiegandRead,
    cobs_encode,
    encode_frame,
)
from firmware_bridge.wiegand import FORMATS, WiegandBits, encode

FIRMWARE = Path(firmware_bridge.__file__).parent / "firmware"


def _firmware_frames() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sitewarden_fw_frames", FIRMWARE / "frames.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fw = _firmware_frames()


def test_firmware_frames_parse_on_the_host() -> None:
    bits = encode("C1000", 3000, 999_999)
    wire = (fw.hello(1, 0xCAFEF00D, 5, (1, 2)) + fw.heartbeat(2, 2**32 + 5, 300)
            + fw.wiegand(3, 1, [int(c) for c in str(bits)]) + fw.input_changed(4, fw.INPUT_TAMPER, 0, True)
            + fw.ack(5, 200, fw.ACK_BAD_COMMAND))
    assert FrameParser().feed(wire) == [
        Hello(1, 0xCAFEF00D, 1, 2, 5),
        Heartbeat(2, 5, 255),
        WiegandRead(3, 1, 35, bits.to_bytes()),
        InputChanged(4, 3, 0, 1),
        Ack(5, 200, 1),
    ]


def test_firmware_wiegand_bits_decode_to_the_same_card() -> None:
    rng = random.Random(3)
    for fmt in FORMATS.values():
        for _ in range(50):
            bits = encode(fmt, rng.randint(0, fmt.max_facility), rng.randint(0, fmt.max_card))
            (frame,) = FrameParser().feed(fw.wiegand(1, 0, [int(c) for c in str(bits)]))
            assert isinstance(frame, WiegandRead)
            assert WiegandBits.from_bytes(frame.bit_count, frame.data) == bits


def test_firmware_cobs_matches_the_host() -> None:
    rng = random.Random(4)
    for size in [0, 1, 253, 254, 255, 508, *[rng.randint(0, 600) for _ in range(200)]]:
        data = bytes(rng.choice([0, 0, rng.randrange(256)]) for _ in range(size))
        assert fw.cobs_encode(data) == cobs_encode(data)
        assert fw.cobs_decode(cobs_encode(data)) == data


def test_firmware_decodes_host_commands_and_skips_garbage() -> None:
    decoder = fw.Decoder()
    wire = (encode_frame(Unlock(7, 1, 5000)) + b"\x03\xff\xff\x00" + encode_frame(Led(8, 0, 2, 1000))
            + b"\x09" * 200 + b"\x00" + encode_frame(Buzzer(9, 0, 100, 2)) + encode_frame(HostAck(10, 4))
            + encode_frame(StatusRequest(11)))
    assert decoder.feed(wire) == [
        (0x81, 7, bytes([1, 0x13, 0x88])),
        (0x82, 8, bytes([0, 2, 0x03, 0xE8])),
        (0x83, 9, bytes([0, 0, 100, 2])),
        (0x84, 10, bytes([4])),
        (0x85, 11, b""),
    ]
    assert decoder.errors == 2


def test_firmware_main_imports_only_what_micropython_has() -> None:
    """main.py runs on the board only; check it names no CPython-only module it would fail to import."""
    text = (FIRMWARE / "main.py").read_text()
    imports = {line.split()[1] for line in text.splitlines() if line.startswith("import ")}
    assert imports == {"os", "sys", "machine", "select", "utime", "frames"}
    compile(text, "main.py", "exec")


class _Pin:
    IN, OUT, PULL_UP, IRQ_FALLING = 0, 1, 2, 3

    def __init__(self, pin: int, mode: int = 0, pull: int = 0, value: int = 1) -> None:
        self.level = value  # inputs idle high (pull-up, active low): no door open, no button pressed

    def irq(self, trigger: int, handler: Callable[[Any], None]) -> None:
        pass

    def value(self, level: int | None = None) -> int:
        if level is not None:
            self.level = level
        return self.level


class Board:
    """firmware/main.py loaded on the host, with a clock the test moves (`ms`)."""

    def __init__(self, main: ModuleType) -> None:
        self.main = main
        self.ms = 0

    def controller(self) -> Any:
        """A freshly booted Controller whose serial output is collected in memory."""
        controller = self.main.Controller()
        controller.out = io.BytesIO()
        return controller

    def send(self, controller: Any, wire: bytes) -> None:
        for ftype, seq, payload in controller.decoder.feed(wire):
            controller.on_command(ftype, seq, payload, self.ms)

    @staticmethod
    def answers(controller: Any) -> list[Frame | FrameError]:
        data = controller.out.getvalue()
        controller.out.seek(0)
        controller.out.truncate()
        return FrameParser().feed(data)

    def exchange(self, host: LinkSession, controller: Any, wire: bytes, now: float,
                 lose: Callable[[Frame | FrameError], bool] = lambda frame: False) -> list[object]:
        """Carry `wire` to the controller, what it sent back to the host (but for what `lose` drops), the host's
        answers to the controller, and so on until both are quiet; what the host delivered."""
        delivered: list[object] = []
        for _ in range(100):
            self.send(controller, wire)
            frames = [f for f in self.answers(controller) if not isinstance(f, FrameError) and not lose(f)]
            if not frames:
                return delivered
            wire = b""
            for frame in frames:
                item, reply = host.receive(frame, now)
                wire += reply
                if item is not None:
                    delivered.append(item)
        raise AssertionError("host and controller still talking after 100 exchanges")


@pytest.fixture
def board(monkeypatch: pytest.MonkeyPatch) -> Board:
    """The firmware's own main.py with small stand-ins for `machine`, `utime`, `select` and the serial port:
    these hardware modules are stood in because MicroPython hardware cannot run here. Everything else (framing,
    sessions, command numbers, relays driven through Pin.value) is the firmware's code as it runs on the board."""
    clock: dict[str, Board] = {}
    utime = ModuleType("utime")
    utime.ticks_ms = lambda: clock["board"].ms  # type: ignore[attr-defined]
    utime.ticks_us = lambda: clock["board"].ms * 1000  # type: ignore[attr-defined]
    utime.ticks_diff = lambda a, b: a - b  # type: ignore[attr-defined]
    utime.ticks_add = lambda a, b: a + b  # type: ignore[attr-defined]
    utime.sleep_ms = lambda ms: None  # type: ignore[attr-defined]
    machine = ModuleType("machine")
    machine.Pin = _Pin  # type: ignore[attr-defined]
    machine.unique_id = lambda: bytes.fromhex("e6614104033f4a2b")  # type: ignore[attr-defined]
    machine.disable_irq = lambda: 0  # type: ignore[attr-defined]
    machine.enable_irq = lambda state: None  # type: ignore[attr-defined]
    for name, module in (("utime", utime), ("machine", machine), ("frames", fw)):
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("sitewarden_fw_main", FIRMWARE / "main.py")
    assert spec and spec.loader
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    main.select = SimpleNamespace(POLLIN=1, poll=lambda: SimpleNamespace(register=lambda *a: None))  # type: ignore[attr-defined]
    main.sys = SimpleNamespace(stdin=None, stdout=SimpleNamespace(buffer=io.BytesIO()))  # type: ignore[attr-defined]
    clock["board"] = Board(main)
    return clock["board"]


def test_firmware_answers_host_hello_with_its_hello_then_the_ack(board: Board) -> None:
    controller = board.controller()
    board.send(controller, encode_frame(HostHello(7, 0xA1B2C3D4)))
    assert board.answers(controller) == [Hello(1, controller.boot_id, 1, 0, 5), Ack(2, 7, 0)]
    assert controller.host_session == 0xA1B2C3D4


def test_firmware_answers_a_host_hello_of_the_wrong_length_bad_command(board: Board) -> None:
    """No HELLO, just "bad command": to the host this looks like firmware older than HOST_HELLO."""
    controller = board.controller()
    board.send(controller, fw.encode(fw.HOST_HELLO, 7, b"\x01\x02\x03"))
    assert board.answers(controller) == [Ack(1, 7, fw.ACK_BAD_COMMAND)]
    assert controller.host_session is None


def test_firmware_forgets_the_old_hosts_command_numbers_on_a_new_session(board: Board) -> None:
    controller = board.controller()
    relay = controller.relays[0]
    board.send(controller, encode_frame(HostHello(1, 111)) + encode_frame(Unlock(2, 0, 100)))
    assert relay.value() == 1
    board.ms += 200
    controller.timers(board.ms)
    assert relay.value() == 0
    board.send(controller, encode_frame(HostHello(1, 111)) + encode_frame(Unlock(2, 0, 100)))
    assert relay.value() == 0, "a copy of the same session's hello must not make a retry run twice"
    board.answers(controller)
    board.send(controller, encode_frame(HostHello(1, 222)) + encode_frame(Unlock(2, 0, 100)))
    assert relay.value() == 1, "the new session's unlock, numbered as the old one's, was taken for a retry"
    assert [(f.acked, f.status) for f in board.answers(controller) if isinstance(f, Ack)] == [(1, 0), (2, 0)]


def test_firmware_boot_id_differs_between_boots_at_the_same_instant(board: Board) -> None:
    """After a watchdog or hard reset the chip id and the clock read the same each boot; the boot id must not."""
    assert len({board.controller().boot_id for _ in range(8)}) == 8
    board.main.os = SimpleNamespace()  # a port without os.urandom: its seeded PRNG instead
    assert len({board.controller().boot_id for _ in range(8)}) == 8


def test_restarted_host_whose_hellos_are_lost_still_has_its_unlock_carried_out(board: Board) -> None:
    """The badge service restarts while the controller runs on, and noise swallows everything the host sends for
    2 s. The new run's numbers repeat the old run's: sent without an answered HOST_HELLO, its unlock would be
    acked as a retry and never drive the relay."""
    controller = board.controller()
    old = LinkSession()
    for wire in (old.hello(111, 0.0), old.command(StatusRequest(0), 0.0), old.command(Unlock(0, 0, 100), 0.0)):
        board.exchange(old, controller, wire, 0.0)
    board.ms += 200
    controller.timers(board.ms)
    assert controller.relays[0].value() == 0

    new = LinkSession()
    new.hello(222, now=1.0)  # lost, as everything the host sends until 2.8 s
    now = 1.0
    while now < 2.8:
        now = new.next_deadline() or 2.8
        new.due(now)
    board.exchange(new, controller, new.command(Unlock(0, 0, 3000), now), now)  # a grant: the line clears
    now = new.next_deadline() or now
    resend, _ = new.due(now)
    board.exchange(new, controller, b"".join(resend), now)
    assert controller.relays[0].value() == 1


def test_rebooted_controller_whose_hello_answer_is_lost_has_its_first_swipe_delivered(board: Board) -> None:
    """The controller rebooted while unplugged and numbers its events from 1 again; the HELLO it answers the
    host's HOST_HELLO with fails its CRC, the ACK arrives. The new boot's first swipe must not be dropped as a
    repeat of the old boot's first."""
    host = LinkSession()
    before = board.controller()
    board.exchange(host, before, host.hello(1, 0.0), 0.0)
    before.event(lambda seq: fw.wiegand(seq, 0, [1, 0, 1]))
    board.ms += board.main.RETRY_MS
    before.pump_queue(board.ms)
    assert [type(item) for item in board.exchange(host, before, b"", 0.0)] == [WiegandRead]
    host.abandon("unplugged")

    board.ms += 5000
    after = board.controller()
    after.event(lambda seq: fw.wiegand(seq, 0, [1, 1, 1]))
    lost = {"hello": 1}

    def crc_error(frame: object) -> bool:
        if isinstance(frame, Hello) and lost["hello"]:
            lost["hello"] -= 1
            return True
        return False

    board.exchange(host, after, host.hello(2, 5.0), 5.0, lose=crc_error)
    now = host.next_deadline() or 5.0
    board.exchange(host, after, b"".join(host.due(now)[0]), now)
    board.ms += board.main.RETRY_MS
    after.pump_queue(board.ms)
    swipes = [item for item in board.exchange(host, after, b"", 5.1) if isinstance(item, WiegandRead)]
    assert swipes == [WiegandRead(1, 0, 3, b"\xe0")]
