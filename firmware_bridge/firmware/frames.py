"""Frame encoding and decoding for the controller firmware (MicroPython; also imports on CPython for tests).

Written apart from the bridge's `protocol.py` on purpose: the host tests parse what this module encodes,
so the two implementations check each other against PROTOCOL.md.
"""

VERSION = 1
MAX_PAYLOAD = 64

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

INPUT_DOOR = 1
INPUT_REX = 2
INPUT_TAMPER = 3
INPUT_POWER = 4

ACK_OK = 0
ACK_BAD_COMMAND = 1


def crc16(data):
    """CRC-16/CCITT-FALSE, bitwise (no table: RAM is scarce)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc


def cobs_encode(data):
    out = bytearray()
    code_at = 0
    out.append(0)
    code = 1
    for byte in data:
        if byte == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
            continue
        out.append(byte)
        code += 1
        if code == 0xFF:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
    out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """None when the bytes are not valid COBS."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0 or i + code > n:
            return None
        out.extend(data[i + 1:i + code])
        i += code
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode(ftype, seq, payload=b""):
    """Wire bytes of one frame, trailing zero delimiter included."""
    raw = bytearray((VERSION, ftype, seq & 0xFF))
    raw.extend(payload)
    crc = crc16(raw)
    raw.append(crc >> 8)
    raw.append(crc & 0xFF)
    return cobs_encode(raw) + b"\x00"


def pack_bits(bits):
    """A list of 0/1 (first bit received first) -> bytes, MSB first, zero padded."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 0x80 >> (i % 8)
    return bytes(out)


def hello(seq, boot_id, inputs, fw=(1, 0)):
    return encode(HELLO, seq, bytes((boot_id >> 24 & 0xFF, boot_id >> 16 & 0xFF, boot_id >> 8 & 0xFF,
                                     boot_id & 0xFF, fw[0], fw[1], inputs)))


def heartbeat(seq, uptime_ms, queued):
    u = uptime_ms & 0xFFFFFFFF
    return encode(HEARTBEAT, seq, bytes((u >> 24 & 0xFF, u >> 16 & 0xFF, u >> 8 & 0xFF, u & 0xFF, min(queued, 255))))


def wiegand(seq, reader, bits):
    return encode(WIEGAND, seq, bytes((reader, len(bits))) + pack_bits(bits))


def input_changed(seq, kind, index, state):
    return encode(INPUT, seq, bytes((kind, index, 1 if state else 0)))


def ack(seq, acked, status=ACK_OK):
    return encode(ACK, seq, bytes((acked, status)))


class Decoder:
    """Collects bytes from the host and returns (type, seq, payload) for each good frame; bad ones are counted."""

    MAX_ENCODED = 3 + MAX_PAYLOAD + 2 + 2

    def __init__(self):
        self.buf = bytearray()
        self.errors = 0
        self.overflow = False

    def feed(self, data):
        frames = []
        for byte in data:
            if byte != 0:
                if len(self.buf) < self.MAX_ENCODED:
                    self.buf.append(byte)
                else:
                    self.overflow = True
                continue
            if self.overflow or not self.buf:
                if self.overflow:
                    self.errors += 1
                self.buf = bytearray()
                self.overflow = False
                continue
            frame = self._decode(bytes(self.buf))
            self.buf = bytearray()
            if frame is None:
                self.errors += 1
            else:
                frames.append(frame)
        return frames

    @staticmethod
    def _decode(encoded):
        raw = cobs_decode(encoded)
        if raw is None or len(raw) < 5:
            return None
        body = raw[:-2]
        if crc16(body) != (raw[-2] << 8 | raw[-1]) or body[0] != VERSION:
            return None
        return body[1], body[2], body[3:]
