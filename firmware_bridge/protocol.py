"""Bytes <-> frames of the microcontroller link (see PROTOCOL.md): COBS framing, CRC-16, typed frames."""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar

VERSION = 1
DELIMITER = 0
MAX_PAYLOAD = 64
HEADER_LEN = 3  # version, type, seq
CRC_LEN = 2
MAX_RAW_LEN = HEADER_LEN + MAX_PAYLOAD + CRC_LEN
MAX_ENCODED_LEN = MAX_RAW_LEN + MAX_RAW_LEN // 254 + 1


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection): `crc16(b"123456789") == 0x29B1`."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


def _crc_table() -> tuple[int, ...]:
    return tuple(crc16(bytes([i]), 0) for i in range(256))


_CRC_TABLE = _crc_table()


def crc16_fast(data: bytes) -> int:
    """The same CRC, table-driven (what the host uses; the firmware uses the bitwise form)."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: the result has no zero byte."""
    out = bytearray()
    for block in data.split(b"\x00"):
        while len(block) >= 254:
            out.append(255)
            out += block[:254]
            block = block[254:]
        out.append(len(block) + 1)
        out += block
    return bytes(out)


class CobsError(ValueError):
    """Bytes between delimiters that are not valid COBS."""


def cobs_decode(data: bytes) -> bytes:
    """Inverse of `cobs_encode`; raises CobsError on a zero byte or a code that runs past the end."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise CobsError("zero byte inside a frame")
        end = i + code
        if end > n:
            raise CobsError("block runs past the end of the frame")
        block = data[i + 1:end]
        if 0 in block:
            raise CobsError("zero byte inside a frame")
        out += block
        i = end
        if code != 255 and i < n:
            out.append(0)
    return bytes(out)


class FrameType(IntEnum):
    """Frame types; bit 7 set means host -> controller."""

    HELLO = 0x01
    HEARTBEAT = 0x02
    WIEGAND = 0x03
    INPUT = 0x04
    ACK = 0x05
    UNLOCK = 0x81
    LED = 0x82
    BUZZER = 0x83
    HOST_ACK = 0x84
    STATUS_REQUEST = 0x85
    HOST_HELLO = 0x86


class InputKind(IntEnum):
    """What an INPUT frame reports."""

    DOOR_CONTACT = 1
    REQUEST_TO_EXIT = 2
    TAMPER = 3
    POWER = 4


class AckStatus(IntEnum):
    """How the controller answered a command."""

    OK = 0
    BAD_COMMAND = 1
    BUSY = 2


class LedColor(IntEnum):
    OFF = 0
    RED = 1
    GREEN = 2
    AMBER = 3
    BLUE = 4


@dataclass(frozen=True)
class Frame:
    """Base of every frame: `seq` is the sender's sequence number (0-255, wraps)."""

    seq: int
    TYPE: ClassVar[FrameType]
    FORMAT: ClassVar[str] = ""
    NEEDS_ACK: ClassVar[bool] = False

    def payload(self) -> bytes:
        return struct.pack(self.FORMAT, *self._fields())

    def _fields(self) -> tuple[int, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "seq")

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Frame:
        return cls(seq, *struct.unpack(cls.FORMAT, payload))


@dataclass(frozen=True)
class Hello(Frame):
    """Controller booted (or the link was opened): a new `boot_id` resets sequence tracking."""

    boot_id: int
    fw_major: int
    fw_minor: int
    inputs: int
    TYPE: ClassVar[FrameType] = FrameType.HELLO
    FORMAT: ClassVar[str] = ">IBBB"


@dataclass(frozen=True)
class Heartbeat(Frame):
    uptime_ms: int
    queued: int
    TYPE: ClassVar[FrameType] = FrameType.HEARTBEAT
    FORMAT: ClassVar[str] = ">IB"


@dataclass(frozen=True)
class WiegandRead(Frame):
    """A read on reader port `reader`: `bit_count` bits packed MSB first (first bit sent = top bit)."""

    reader: int
    bit_count: int
    data: bytes
    TYPE: ClassVar[FrameType] = FrameType.WIEGAND
    NEEDS_ACK: ClassVar[bool] = True

    def payload(self) -> bytes:
        return bytes([self.reader, self.bit_count]) + self.data

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Frame:
        if len(payload) < 2:
            raise struct.error("wiegand payload shorter than 2 bytes")
        reader, count = payload[0], payload[1]
        if count == 0 or len(payload) - 2 != (count + 7) // 8:
            raise struct.error(f"{count} bits need {(count + 7) // 8} bytes, got {len(payload) - 2}")
        return cls(seq, reader, count, bytes(payload[2:]))


@dataclass(frozen=True)
class InputChanged(Frame):
    """An input changed (debounced): `state` 1 = door open / button pressed / tamper on / power lost."""

    kind: int
    index: int
    state: int
    TYPE: ClassVar[FrameType] = FrameType.INPUT
    FORMAT: ClassVar[str] = ">BBB"
    NEEDS_ACK: ClassVar[bool] = True


@dataclass(frozen=True)
class Ack(Frame):
    """Controller acknowledges host command `acked`."""

    acked: int
    status: int
    TYPE: ClassVar[FrameType] = FrameType.ACK
    FORMAT: ClassVar[str] = ">BB"


@dataclass(frozen=True)
class Unlock(Frame):
    output: int
    duration_ms: int
    TYPE: ClassVar[FrameType] = FrameType.UNLOCK
    FORMAT: ClassVar[str] = ">BH"
    NEEDS_ACK: ClassVar[bool] = True


@dataclass(frozen=True)
class Led(Frame):
    reader: int
    color: int
    duration_ms: int
    TYPE: ClassVar[FrameType] = FrameType.LED
    FORMAT: ClassVar[str] = ">BBH"
    NEEDS_ACK: ClassVar[bool] = True


@dataclass(frozen=True)
class Buzzer(Frame):
    reader: int
    on_ms: int
    count: int
    TYPE: ClassVar[FrameType] = FrameType.BUZZER
    FORMAT: ClassVar[str] = ">BHB"
    NEEDS_ACK: ClassVar[bool] = True


@dataclass(frozen=True)
class HostAck(Frame):
    """Host acknowledges controller frame `acked`."""

    acked: int
    TYPE: ClassVar[FrameType] = FrameType.HOST_ACK
    FORMAT: ClassVar[str] = ">B"


@dataclass(frozen=True)
class StatusRequest(Frame):
    """Host asks for every input's current state (sent after HELLO); answered with INPUT frames."""

    TYPE: ClassVar[FrameType] = FrameType.STATUS_REQUEST
    FORMAT: ClassVar[str] = ""
    NEEDS_ACK: ClassVar[bool] = True


@dataclass(frozen=True)
class HostHello(Frame):
    """Host opened the link: a new `session` makes the controller forget the host sequence numbers it has seen."""

    session: int
    TYPE: ClassVar[FrameType] = FrameType.HOST_HELLO
    FORMAT: ClassVar[str] = ">I"
    NEEDS_ACK: ClassVar[bool] = True


FRAME_CLASSES: dict[int, type[Frame]] = {
    cls.TYPE: cls for cls in (Hello, Heartbeat, WiegandRead, InputChanged, Ack, Unlock, Led, Buzzer, HostAck,
                              StatusRequest, HostHello)
}


def encode_frame(frame: Frame) -> bytes:
    """Wire bytes of one frame, delimiter included."""
    payload = frame.payload()
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes, limit {MAX_PAYLOAD}")
    raw = bytes([VERSION, frame.TYPE, frame.seq & 0xFF]) + payload
    raw += crc16_fast(raw).to_bytes(2, "big")
    return cobs_encode(raw) + b"\x00"


@dataclass(frozen=True)
class FrameError:
    """Bytes that were skipped, and why (`reason` is a short label for counters)."""

    reason: str
    detail: str
    raw: bytes


def decode_frame(encoded: bytes) -> Frame | FrameError:
    """One frame from the bytes between two delimiters; never raises."""
    try:
        raw = cobs_decode(encoded)
    except CobsError as err:
        return FrameError("bad_cobs", str(err), encoded)
    if len(raw) < HEADER_LEN + CRC_LEN:
        return FrameError("truncated", f"{len(raw)} bytes, shorter than a header and CRC", encoded)
    body, crc = raw[:-CRC_LEN], int.from_bytes(raw[-CRC_LEN:], "big")
    if crc16_fast(body) != crc:
        return FrameError("crc", f"CRC {crc:#06x}, computed {crc16_fast(body):#06x}", encoded)
    version, ftype, seq = body[0], body[1], body[2]
    if version != VERSION:
        return FrameError("bad_version", f"version {version}, this bridge speaks {VERSION}", encoded)
    cls = FRAME_CLASSES.get(ftype)
    if cls is None:
        return FrameError("unknown_type", f"type {ftype:#04x}", encoded)
    try:
        return cls.from_payload(seq, body[HEADER_LEN:])
    except (struct.error, ValueError) as err:
        return FrameError("bad_payload", f"{cls.__name__}: {err}", encoded)


class FrameParser:
    """Feeds raw serial bytes in, yields frames and errors; resyncs on the next delimiter after anything bad."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        out: list[Frame | FrameError] = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                self._append(data[start:])
                return out
            self._append(data[start:end])
            start = end + 1
            if self._overflow:
                out.append(FrameError("oversized", f"more than {MAX_ENCODED_LEN} bytes without a delimiter",
                                      bytes(self._buf[:32])))
            elif self._buf:
                out.append(decode_frame(bytes(self._buf)))
            self._buf.clear()
            self._overflow = False

    def _append(self, chunk: bytes) -> None:
        if self._overflow:
            return
        self._buf += chunk
        if len(self._buf) > MAX_ENCODED_LEN:
            self._overflow = True
            del self._buf[32:]
