"""The serial port under an OSDP ControlPanel: reopened when it fails, replies counted per reader address."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter

import serial
from osdp import Channel

logger = logging.getLogger(__name__)

OSDP_SOM = 0x53
OSDP_REPLY_BIT = 0x80
# Smallest and largest OSDP packet (SOM to check bytes) the reply counter believes; others are noise.
OSDP_MIN_PACKET_BYTES = 7
OSDP_MAX_PACKET_BYTES = 1440


class ReplyCounter:
    """Counts the replies each reader address sent, from the bytes read off a bus.

    Packets are found by their start byte and length field, without checking their CRC or MAC: a garbled
    packet may be miscounted, which only colours the reason given for an offline reader. The count tells
    "this reader answers" from "some reader on the bus answers".
    """

    def __init__(self) -> None:
        self.replies: Counter[int] = Counter()
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while True:
            start = buf.find(OSDP_SOM)
            if start < 0:
                buf.clear()
                return
            del buf[:start]
            if len(buf) < 4:
                return
            length = buf[2] | buf[3] << 8
            if not OSDP_MIN_PACKET_BYTES <= length <= OSDP_MAX_PACKET_BYTES:
                del buf[:1]  # not a packet start after all
                continue
            if len(buf) < length:
                return
            if buf[1] & OSDP_REPLY_BIT:
                self.replies[buf[1] & ~OSDP_REPLY_BIT] += 1
            del buf[:length]


class SerialChannel(Channel):
    """libosdp's byte stream over a serial port; reopens the port when it fails and never raises into C."""

    def __init__(self, port: str, baudrate: int) -> None:
        super().__init__()
        self.port = port
        self.baudrate = baudrate
        self._serial: serial.Serial | None = None
        self._next_open = 0.0
        self._failed_logged = False
        self.bytes_in = 0
        self.counter = ReplyCounter()
        self.error: str | None = None

    def replies_from(self, address: int) -> int:
        """Replies read so far from the reader at `address`."""
        return self.counter.replies[address]

    def _ensure(self) -> serial.Serial | None:
        if self._serial is not None:
            return self._serial
        now = time.monotonic()
        if now < self._next_open:
            return None
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=0, write_timeout=0.5, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as err:
            self._next_open = now + 1.0
            self.error = f"cannot open {self.port}: {err}"
            if not self._failed_logged:
                logger.warning("OSDP bus %s: %s; retrying every second", self.port, err)
                self._failed_logged = True
            return None
        if self._failed_logged:
            logger.info("OSDP bus %s: port open again", self.port)
        self._failed_logged = False
        self.error = None
        return self._serial

    def _drop(self, err: Exception) -> None:
        self.error = f"{self.port}: {err}"
        logger.warning("OSDP bus %s failed: %s; reopening", self.port, err)
        self._failed_logged = True
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass
        self._serial = None
        self._next_open = time.monotonic() + 1.0

    def read(self, max_bytes: int) -> bytes:
        port = self._ensure()
        if port is None:
            return b""
        try:
            data = os.read(port.fileno(), max_bytes)
        except BlockingIOError:
            return b""
        except OSError as err:
            self._drop(err)
            return b""
        self.bytes_in += len(data)
        self.counter.feed(data)
        return data

    def write(self, buf: bytes) -> int:
        port = self._ensure()
        if port is None:
            return 0
        try:
            return port.write(bytes(buf)) or 0
        except (serial.SerialException, OSError) as err:
            self._drop(err)
            return 0

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None
