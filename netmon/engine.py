"""The detector engine: frames in (from live capture or a pcap), findings out, with counters.

Every frame goes through the fast parser, then to the detector that wants its record. A malformed frame is
counted by reason and logged once per reason; nothing a frame contains can stop the engine. A finding with
the same key is passed on at most once per `report_every_s` (packet time), so a flood is one finding.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from edge.config_netmon import NetmonSettings
from netmon.findings import Capped, Finding
from netmon.lan import LanDetector, Stations
from netmon.packets import (
    DLT_EN10MB,
    DLT_IEEE802_11_RADIO,
    Arp,
    Beacon,
    Deauth,
    Dhcp,
    Ip,
    Malformed,
    Record,
    parse_ethernet,
    parse_radiotap,
)
from netmon.vpn import VpnDetector
from netmon.wifi import AccessPoints, WifiDetector

logger = logging.getLogger(__name__)

PARSERS: dict[int, Callable[[float, bytes], Record | None]] = {DLT_EN10MB: parse_ethernet,
                                                                DLT_IEEE802_11_RADIO: parse_radiotap}
TICK_EVERY_S = 1.0


@dataclass
class Counters:
    """Frames received, parsed into a record, skipped as malformed (by reason), and findings made."""

    received: int = 0
    parsed: int = 0
    malformed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    findings: int = 0
    suppressed: int = 0
    detector_errors: int = 0


class Known(Stations, AccessPoints, Protocol):
    """The inventory as the detectors see it (netmon.inventory.Inventory is one)."""


class Engine:
    """All enabled detectors behind one `feed(linktype, ts, frame)`."""

    def __init__(self, settings: NetmonSettings, inventory: Known,
                 parse: Callable[[int, float, bytes], Record | None] | None = None) -> None:
        self.settings = settings
        self.counters = Counters()
        self.wifi = WifiDetector(settings.wifi, settings.max_keys, inventory)
        self.lan = LanDetector(settings.lan, inventory, settings.max_keys)
        self.vpn = VpnDetector(settings.vpn, settings.max_keys)
        self._reported: Capped[str, float] = Capped(settings.max_keys)
        self._parse = parse  # the scapy reference path, for parity checks; None: the fast path
        self._next_tick: float | None = None
        self._logged: set[str] = set()
        handlers: dict[type, Callable[[Record, bytes], list[Finding]]] = {}
        if settings.lan.enabled:
            handlers |= {Arp: self.lan.arp, Dhcp: self.lan.dhcp}  # type: ignore[dict-item]
        if settings.vpn.enabled:
            handlers[Ip] = self.vpn.ip  # type: ignore[assignment]
        if settings.wifi.enabled:
            handlers |= {Beacon: self.wifi.beacon, Deauth: self.wifi.deauth}  # type: ignore[dict-item]
        self._handlers = handlers

    def feed(self, linktype: int, ts: float, frame: bytes) -> list[Finding]:
        """One captured frame at `ts` (epoch seconds): the findings it completes."""
        c = self.counters
        c.received += 1
        found: list[Finding] = []
        if self._next_tick is None:
            self._next_tick = ts + TICK_EVERY_S
        elif ts >= self._next_tick:
            found = self.tick(ts)
        try:
            record = self._parse(linktype, ts, frame) if self._parse else PARSERS[linktype](ts, frame)
        except Malformed as err:
            self._malformed(err.reason, linktype, frame)
            return found
        except Exception as err:  # a parser bug must cost one frame, not the service
            self._malformed(f"parser_error:{type(err).__name__}", linktype, frame)
            return found
        if record is None:
            return found
        handler = self._handlers.get(type(record))
        if handler is None:  # its detector is switched off
            return found
        c.parsed += 1
        try:
            made = handler(record, frame)
        except Exception as err:  # a detector bug must cost one frame, not the service
            c.detector_errors += 1
            name = f"{type(record).__name__}:{type(err).__name__}"
            if name not in self._logged:
                self._logged.add(name)
                logger.exception("a detector failed on a %s frame (%d bytes, first bytes %s); further failures "
                                 "like it are only counted", type(record).__name__, len(frame), frame[:16].hex())
            return found
        if made:
            found.extend(self._fresh(made))
        return found

    def tick(self, now: float) -> list[Finding]:
        """Time-driven checks (tunnels gone silent) at packet time `now`."""
        self._next_tick = now + TICK_EVERY_S
        return self._fresh(self.vpn.tick(now)) if self.settings.vpn.enabled else []

    def idle(self, now: float) -> list[Finding]:
        """For a live capture with no frames arriving: run the time-driven checks when one is due at `now`."""
        if self._next_tick is not None and now >= self._next_tick:
            return self.tick(now)
        return []

    def state_dropped(self) -> int:
        """Keys evicted from the detectors' capped state so far (a flood of new MACs, IPs or BSSIDs)."""
        capped = [v for d in (self.wifi, self.lan, self.vpn) for v in vars(d).values() if isinstance(v, Capped)]
        return sum(c.dropped for c in capped) + self._reported.dropped

    def _fresh(self, made: list[Finding]) -> list[Finding]:
        out = []
        every = self.settings.report_every_s
        for finding in made:
            last = self._reported.get(finding.key)
            if last is not None and finding.ts - last < every:
                self.counters.suppressed += 1
                continue
            self._reported.put(finding.key, finding.ts)
            out.append(finding)
        self.counters.findings += len(out)
        return out

    def _malformed(self, reason: str, linktype: int, frame: bytes) -> None:
        self.counters.malformed += 1
        self.counters.reasons[reason] += 1
        if reason not in self._logged:  # once per reason: a flood of bad frames must not flood the log
            self._logged.add(reason)
            logger.warning("skipping malformed frame (%s, link type %d, %d bytes, first bytes %s); further frames "
                           "with this fault are only counted", reason, linktype, len(frame), frame[:16].hex())


PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1e6), b"\xa1\xb2\xc3\xd4": (">", 1e6),
               b"\x4d\x3c\xb2\xa1": ("<", 1e9), b"\xa1\xb2\x3c\x4d": (">", 1e9)}
MAX_RECORD = 262_144  # larger than any snap length tcpdump or dumpcap writes: a bigger one is corruption


def read_capture(path: Path) -> Iterator[tuple[int, float, bytes]]:
    """(link type, epoch seconds, frame) for every frame of a pcap or pcapng file. Classic pcap is read
    directly (about 3x faster than scapy's reader); pcapng through scapy's RawPcapReader."""
    try:
        with path.open("rb") as fh:
            head = fh.read(24)
    except OSError as err:
        raise ValueError(f"{path}: cannot read it ({err})") from err
    if len(head) == 24 and head[:4] in PCAP_MAGICS:
        return _read_pcap(path, head)
    return _read_with_scapy(path)


def _read_pcap(path: Path, head: bytes) -> Iterator[tuple[int, float, bytes]]:
    import struct

    order, scale = PCAP_MAGICS[head[:4]]
    field = struct.unpack(order + "I", head[20:24])[0]
    linktype = field & 0xFFFF  # libpcap's LT_LINKTYPE; the upper bits may say every frame ends in an FCS
    fcs = 2 * ((field >> 28) & 0xF) if field & 0x04000000 else 0
    record = struct.Struct(order + "IIII")
    with path.open("rb", buffering=1 << 20) as fh:
        fh.seek(24)
        read, unpack = fh.read, record.unpack
        off = 24
        while True:
            header = read(16)
            if len(header) < 16:
                if header:
                    logger.warning("%s: the last record is cut short at byte %d (a capture stopped mid-write); "
                                   "read up to it", path, off)
                return
            sec, frac, incl, _ = unpack(header)
            if incl > MAX_RECORD:
                raise ValueError(f"{path}: corrupt record at byte {off} (length {incl})")
            frame = read(incl)
            if len(frame) < incl:
                logger.warning("%s: the last record is cut short at byte %d (a capture stopped mid-write); read "
                               "up to it", path, off)
                return
            off += 16 + incl
            yield linktype, sec + frac / scale, frame[:-fcs] if fcs and len(frame) > fcs else frame


def _read_with_scapy(path: Path) -> Iterator[tuple[int, float, bytes]]:
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader

    try:
        reader = RawPcapReader(str(path))
    except (Scapy_Exception, OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable pcap/pcapng file ({err})") from err
    with reader:
        default = getattr(reader, "linktype", None)
        for data, meta in reader:
            linktype = getattr(meta, "linktype", None) or default
            if hasattr(meta, "sec"):
                ts = meta.sec + meta.usec / 1e6
            else:
                ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
            yield int(linktype), ts, data
