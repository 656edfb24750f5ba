"""Evidence for an alert: the triggering frames as a small pcap with payloads cut to the headers, and a
one-line summary of each (scapy's, the deep look at the few frames a detector flagged). Old snippets go with
`edge.retention.prune_files`."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

from netmon.packets import DLT_EN10MB, DLT_IEEE802_11_RADIO, Malformed, parse_ethernet

PCAP_MAGIC = 0xA1B2C3D4
VPN_HEADER_BYTES = 16  # a recognised tunnel's own header (WireGuard type/index, OpenVPN opcode/session)


def header_length(linktype: int, frame: bytes) -> int:
    """How many leading bytes of a frame are headers: everything through the transport header on Ethernet
    (plus the tunnel's header when it is a recognised VPN packet, the whole message for DHCP and ARP:
    network metadata), the
    radiotap and 802.11 headers and the management body on Wi-Fi (no data frame body)."""
    n = len(frame)
    if linktype == DLT_IEEE802_11_RADIO:
        if n < 4:
            return n
        rt = int.from_bytes(frame[2:4], "little")
        if rt + 1 > n:
            return n
        ftype = (frame[rt] >> 2) & 3
        return n if ftype == 0 else min(n, rt + 24)  # management frames are metadata; data frames lose the body
    if linktype != DLT_EN10MB or n < 14:
        return n
    off, ethertype = 14, int.from_bytes(frame[12:14], "big")
    while ethertype in (0x8100, 0x88A8) and n >= off + 4:
        ethertype, off = int.from_bytes(frame[off + 2:off + 4], "big"), off + 4
    if ethertype != 0x0800 or n < off + 20:
        return n if ethertype == 0x0806 else min(n, off)
    ihl = (frame[off] & 15) * 4
    proto, l4 = frame[off + 9], off + ihl
    try:
        vpn = getattr(parse_ethernet(0.0, frame), "vpn", None)
    except Malformed:
        vpn = None
    if proto == 17 and n >= l4 + 8:
        ports = {int.from_bytes(frame[l4:l4 + 2], "big"), int.from_bytes(frame[l4 + 2:l4 + 4], "big")}
        if ports & {67, 68}:
            return n
        return min(n, l4 + 8 + (VPN_HEADER_BYTES if vpn else 0))
    if proto == 6 and n >= l4 + 13:
        return min(n, l4 + (frame[l4 + 12] >> 4) * 4 + (2 + VPN_HEADER_BYTES if vpn else 0))
    return min(n, l4 + 8)  # ESP: SPI and sequence number; ICMP and others: their fixed header


def write_snippet(path: Path, linktype: int, frames: list[tuple[float, bytes]]) -> Path:
    """A classic pcap of the frames, each cut to its headers (the record keeps the original length)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, linktype)]
    for ts, frame in frames:
        cut = frame[:header_length(linktype, frame)]
        sec = int(ts)
        out.append(struct.pack("<IIII", sec, int(round((ts - sec) * 1e6)) % 1_000_000, len(cut), len(frame)))
        out.append(cut)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(out))
    tmp.replace(path)
    return path


def summaries(linktype: int, frames: list[tuple[float, bytes]]) -> list[str]:
    """One line per frame, from scapy's dissection of its headers."""
    from scapy.layers.dot11 import RadioTap
    from scapy.layers.l2 import Ether

    cls = RadioTap if linktype == DLT_IEEE802_11_RADIO else Ether
    lines = []
    for ts, frame in frames:
        stamp = datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3]
        try:
            text = cls(frame[:header_length(linktype, frame)]).summary()
        except Exception as err:  # scapy on a hostile frame: the evidence line says so instead
            text = f"undissectable frame ({type(err).__name__})"
        lines.append(f"{stamp} {text}"[:300])
    return lines
