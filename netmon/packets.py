"""The fast path: raw frame bytes -> the few header fields a detector needs, without building scapy packets.

Two link types come in: Ethernet (a mirror port, DLT 1) and radiotap + 802.11 (a monitor-mode radio,
DLT 127). Each frame becomes at most one small record (`Arp`, `Dhcp`, `Ip`, `Beacon`, `Deauth`) or None
when no detector looks at it. A frame too short or inconsistent for the header it claims raises `Malformed`
with a short stable reason, which the caller counts. `netmon/reference.py` reads the same records off
scapy's dissection; the parity test holds the two to the same answers on every test capture.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

DLT_EN10MB = 1
DLT_IEEE802_11_RADIO = 127

BROADCAST_MAC = b"\xff" * 6

_U16 = struct.Struct("!H")
_PORTS = struct.Struct("!HH")
_LE16 = struct.Struct("<H")
_LE32 = struct.Struct("<I")


class Malformed(ValueError):
    """A frame that is not what its headers say; `reason` is a short stable label for the counters."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Arp(NamedTuple):
    """An Ethernet/IPv4 ARP request (op 1) or reply (op 2)."""

    ts: float
    eth_src: bytes
    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes


class Dhcp(NamedTuple):
    """A DHCP message: `op` 1 from a client, 2 from a server; `msg_type` from option 53 (2 offer, 5 ack)."""

    ts: float
    eth_src: bytes
    ip_src: bytes
    op: int
    msg_type: int
    server_id: bytes | None
    yiaddr: bytes
    chaddr: bytes


class Ip(NamedTuple):
    """Any other IPv4 packet: addresses, protocol, ports (0 for fragments and port-less protocols), and the
    VPN it looks like by its bytes (`vpn` one of wireguard, openvpn, ike, esp or None; `vpn_detail` the
    WireGuard message type or the OpenVPN opcode)."""

    ts: float
    eth_src: bytes
    src: bytes
    dst: bytes
    proto: int
    sport: int
    dport: int
    length: int
    vpn: str | None
    vpn_detail: int


class Beacon(NamedTuple):
    """An access point announcing itself: a beacon or a probe response."""

    ts: float
    bssid: bytes
    src: bytes
    ssid: bytes
    channel: int
    security: str
    signal: int | None
    probe_response: bool


class Deauth(NamedTuple):
    """A deauthentication or disassociation frame."""

    ts: float
    src: bytes
    dst: bytes
    bssid: bytes
    reason: int
    disassoc: bool


Record = Arp | Dhcp | Ip | Beacon | Deauth

# --- Ethernet ------------------------------------------------------------------------------------------------


def parse_ethernet(ts: float, data: bytes) -> Record | None:
    """One Ethernet frame (VLAN tags allowed) -> its record, or None when no detector needs it."""
    n = len(data)
    if n < 14:
        raise Malformed("ethernet_short")
    ethertype = data[12] << 8 | data[13]
    off = 14
    while ethertype == 0x8100 or ethertype == 0x88A8:
        if n < off + 4:
            raise Malformed("vlan_short")
        ethertype = data[off + 2] << 8 | data[off + 3]
        off += 4
    if ethertype == 0x0800:
        return _ipv4(ts, data, off, n)
    if ethertype == 0x0806:
        return _arp(ts, data, off, n)
    return None


def _arp(ts: float, data: bytes, off: int, n: int) -> Arp | None:
    if n < off + 8:
        raise Malformed("arp_short")
    if data[off + 4] != 6 or data[off + 5] != 4 or data[off + 2] != 0x08 or data[off + 3] != 0:
        return None  # not Ethernet/IPv4 ARP
    if n < off + 28:
        raise Malformed("arp_short")
    return Arp(ts, data[6:12], data[off + 6] << 8 | data[off + 7], data[off + 8:off + 14], data[off + 14:off + 18],
               data[off + 18:off + 24], data[off + 24:off + 28])


def _ipv4(ts: float, data: bytes, off: int, n: int) -> Record | None:
    if n < off + 20:
        raise Malformed("ipv4_short")
    b0 = data[off]
    ihl = (b0 & 15) * 4
    if b0 >> 4 != 4 or ihl < 20:
        raise Malformed("ipv4_bad_header")
    total = data[off + 2] << 8 | data[off + 3]
    if total < ihl or n < off + ihl:
        raise Malformed("ipv4_bad_length")
    end = min(n, off + total)
    proto = data[off + 9]
    src = data[off + 12:off + 16]
    dst = data[off + 16:off + 20]
    l4 = off + ihl
    fragment = (data[off + 6] << 8 | data[off + 7]) & 0x1FFF
    if proto == 50:
        return Ip(ts, data[6:12], src, dst, 50, 0, 0, total, "esp", 0)
    if fragment or (proto != 17 and proto != 6) or end < l4 + 8:
        return Ip(ts, data[6:12], src, dst, proto, 0, 0, total, None, 0)
    sport, dport = _PORTS.unpack_from(data, l4)
    if proto == 17:
        p = l4 + 8
        if sport == 67 or sport == 68 or dport == 67 or dport == 68:
            found = _dhcp(ts, data, src, p, end)
            if found is not None:
                return found
        vpn, detail = _udp_vpn(data, p, end, sport, dport)
    else:
        if end < l4 + 13:
            return Ip(ts, data[6:12], src, dst, proto, sport, dport, total, None, 0)
        p = l4 + (data[l4 + 12] >> 4) * 4
        vpn, detail = _tcp_openvpn(data, p, end)
    return Ip(ts, data[6:12], src, dst, proto, sport, dport, total, vpn, detail)


def _udp_vpn(data: bytes, p: int, end: int, sport: int, dport: int) -> tuple[str | None, int]:
    size = end - p
    if size <= 0:
        return None, 0
    if sport == 4500 or dport == 4500:
        if size >= 4 and data[p:p + 4] == b"\0\0\0\0":
            return ("ike", 0) if size >= 32 and data[p + 21] in (0x10, 0x20) else (None, 0)
        return ("esp", 0) if size >= 8 else (None, 0)  # one 0xff byte is a NAT keepalive
    if (sport == 500 or dport == 500) and size >= 28 and data[p + 17] in (0x10, 0x20):
        return "ike", 0
    first = data[p]
    if 1 <= first <= 4 and size >= 4 and data[p + 1] == 0 and data[p + 2] == 0 and data[p + 3] == 0:
        if (first == 1 and size == 148) or (first == 2 and size == 92) or (first == 3 and size == 64) or (
                first == 4 and size >= 32 and size % 16 == 0):
            return "wireguard", first
    opcode = first >> 3
    if (opcode == 7 or opcode == 8 or opcode == 10) and size >= 14:
        return "openvpn", first  # a control-channel hard reset: client v2 0x38, server v2 0x40, client v3 0x50
    return None, 0


def _tcp_openvpn(data: bytes, p: int, end: int) -> tuple[str | None, int]:
    """OpenVPN over TCP: each packet after its 2-byte length; a hard reset opens the session."""
    if end - p >= 16 and (data[p] << 8 | data[p + 1]) == end - p - 2 and data[p + 2] >> 3 in (7, 8, 10):
        return "openvpn", data[p + 2]
    return None, 0


def _dhcp(ts: float, data: bytes, ip_src: bytes, p: int, end: int) -> Dhcp | None:
    if end - p < 240 or data[p + 236:p + 240] != b"\x63\x82\x53\x63":  # BOOTP without the DHCP cookie
        return None
    op = data[p]
    msg_type = 0
    server_id = None
    i = p + 240
    while i < end:
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 2 > end:
            raise Malformed("dhcp_option_short")
        size = data[i + 1]
        if i + 2 + size > end:
            raise Malformed("dhcp_option_short")
        if code == 53 and size >= 1:
            msg_type = data[i + 2]
        elif code == 54 and size == 4:
            server_id = data[i + 2:i + 6]
        i += 2 + size
    return Dhcp(ts, data[6:12], ip_src, op, msg_type, server_id, data[p + 16:p + 20], data[p + 28:p + 34])


# --- radiotap + 802.11 ---------------------------------------------------------------------------------------

# AKM suite types under OUI 00-0F-AC (IEEE 802.11-2020 table 9-151)
AKM_EAP = frozenset({1, 3, 5, 11, 12, 13})
AKM_PSK = frozenset({2, 4, 6})
AKM_SAE = frozenset({8, 9, 24, 25})
AKM_OWE = 18
SECURITY_RANK = {"open": 0, "wep": 1, "wpa": 2, "owe": 2, "wpa2": 3, "wpa2-eap": 3, "wpa2/wpa3": 3, "wpa3": 4,
                 "wpa3-eap": 4}


def security_label(akms: list[int] | None, wpa_ie: bool, privacy: bool) -> str:
    """What an access point offers, weakest way in first: a WPA2/WPA3 transition network counts as WPA2."""
    if akms is not None:
        if AKM_OWE in akms:
            return "owe"
        eap = any(a in AKM_EAP for a in akms)
        if eap:
            return "wpa3-eap" if all(a in (12, 13) for a in akms if a in AKM_EAP) else "wpa2-eap"
        psk = any(a in AKM_PSK for a in akms)
        sae = any(a in AKM_SAE for a in akms)
        if sae and psk:
            return "wpa2/wpa3"
        if sae:
            return "wpa3"
        return "wpa2"
    if wpa_ie:
        return "wpa"
    return "wep" if privacy else "open"


def rsn_akms(body: bytes) -> list[int]:
    """AKM suite types of an RSN element body (00-0F-AC suites only; others count as 0)."""
    if len(body) < 8:
        return []
    count = _LE16.unpack_from(body, 6)[0]
    i = 8 + 4 * count
    if len(body) < i + 2:
        return []
    akm_count = _LE16.unpack_from(body, i)[0]
    i += 2
    out = []
    for k in range(akm_count):
        j = i + 4 * k
        if j + 4 > len(body):
            break
        out.append(body[j + 3] if body[j:j + 3] == b"\x00\x0f\xac" else 0)
    return out


def freq_to_channel(freq: int) -> int:
    """The Wi-Fi channel of a centre frequency in MHz (0 when unknown)."""
    if freq == 2484:
        return 14
    if 2412 <= freq <= 2472:
        return (freq - 2407) // 5
    if 5955 <= freq <= 7115:
        return (freq - 5950) // 5
    if 5000 <= freq <= 5900:
        return (freq - 5000) // 5
    return 0


def parse_radiotap(ts: float, data: bytes) -> Record | None:
    """One radiotap + 802.11 frame -> a `Beacon` or `Deauth` record, or None for any other frame."""
    n = len(data)
    if n < 8:
        raise Malformed("radiotap_short")
    if data[0] != 0:
        raise Malformed("radiotap_version")
    hlen = _LE16.unpack_from(data, 2)[0]
    if hlen < 8 or hlen > n:
        raise Malformed("radiotap_bad_length")
    present = _LE32.unpack_from(data, 4)[0]
    pos = 8
    word = present
    while word & 0x80000000:  # extended presence bitmaps; the fields of the first follow all of them
        if pos + 4 > hlen:
            raise Malformed("radiotap_bad_length")
        word = _LE32.unpack_from(data, pos)[0]
        pos += 4
    flags = 0
    freq = 0
    signal = None
    if present & 1:  # TSFT, 8 bytes, aligned to 8
        pos = (pos + 7) & ~7
        pos += 8
    if present & 2:
        if pos + 1 > hlen:
            raise Malformed("radiotap_bad_length")
        flags = data[pos]
        pos += 1
    if present & 4:  # rate
        pos += 1
    if present & 8:  # channel: frequency and flags, aligned to 2
        pos = (pos + 1) & ~1
        if pos + 4 > hlen:
            raise Malformed("radiotap_bad_length")
        freq = _LE16.unpack_from(data, pos)[0]
        pos += 4
    if present & 16:  # FHSS
        pos += 2
    if present & 32:  # antenna signal, dBm, signed
        if pos + 1 > hlen:
            raise Malformed("radiotap_bad_length")
        signal = data[pos] - 256 if data[pos] > 127 else data[pos]
    end = n - 4 if flags & 0x10 else n  # the frame carries its FCS
    h = hlen
    if end - h < 24:
        if end - h >= 10:
            return None  # control frames are shorter than management headers
        raise Malformed("dot11_short")
    fc0 = data[h]
    if (fc0 >> 2) & 3 != 0:  # not a management frame
        return None
    subtype = fc0 >> 4
    addr1, addr2, addr3 = data[h + 4:h + 10], data[h + 10:h + 16], data[h + 16:h + 22]
    if subtype == 12 or subtype == 10:
        if end - h < 26:
            raise Malformed("deauth_short")
        return Deauth(ts, addr2, addr1, addr3, _LE16.unpack_from(data, h + 24)[0], subtype == 10)
    if subtype != 8 and subtype != 5:
        return None
    if end - h < 36:
        raise Malformed("beacon_short")
    privacy = bool(data[h + 34] & 0x10)
    ssid = b""
    channel = 0
    ht_channel = 0
    akms = None
    wpa_ie = False
    i = h + 36
    while i + 2 <= end:
        eid, size = data[i], data[i + 1]
        body_end = i + 2 + size
        if body_end > end:
            raise Malformed("ie_overrun")
        if eid == 0:
            ssid = data[i + 2:body_end]
        elif eid == 3 and size >= 1:
            channel = data[i + 2]
        elif eid == 61 and size >= 1:
            ht_channel = data[i + 2]
        elif eid == 48:
            akms = rsn_akms(data[i + 2:body_end])
        elif eid == 221 and size >= 4 and data[i + 2:i + 6] == b"\x00\x50\xf2\x01":
            wpa_ie = True
        i = body_end
    return Beacon(ts, addr3, addr2, ssid, channel or ht_channel or freq_to_channel(freq),
                  security_label(akms, wpa_ie, privacy), signal, subtype == 5)


def mac_text(mac: bytes) -> str:
    """aa:bb:cc:dd:ee:ff."""
    return mac.hex(":")


def ip_text(ip: bytes) -> str:
    """Dotted IPv4."""
    return ".".join(str(b) for b in ip)
