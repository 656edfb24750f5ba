"""The MicroPython firmware's frame code, run on the host, against the bridge's parser (and back)."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType

import firmware_bridge
from firmware_bridge.protocol import (
    Ack,
    Buzzer,
    FrameParser,
    Heartbeat,
    Hello,
    HostAck,
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
    assert imports == {"sys", "machine", "select", "utime", "frames"}
    compile(text, "main.py", "exec")
