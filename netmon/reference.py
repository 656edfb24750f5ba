"""The reference path: the same records as `netmon/packets.py`, read off scapy's full dissection.

Slow (scapy builds every layer: ~2,500 wired packets/s), so it only runs in the parity test, in
`sitewarden netmon replay --reference` and in the benchmark. Where the fast path walks bytes, this asks
scapy's layers and fields; only the mapping from an access point's AKM suites to a label is shared.
"""

from __future__ import annotations

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dot11 import Dot11, Dot11Beacon, Dot11Deauth, Dot11Disas, Dot11Elt, Dot11ProbeResp, RadioTap
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.ipsec import ESP
from scapy.layers.isakmp import ISAKMP
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

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
    freq_to_channel,
    security_label,
)


def parse(linktype: int, ts: float, data: bytes) -> Record | None:
    """The record scapy's dissection gives for one frame (raises Malformed where the fast path would)."""
    if linktype == DLT_EN10MB:
        return _ethernet(ts, data)
    if linktype == DLT_IEEE802_11_RADIO:
        return _radiotap(ts, data)
    raise ValueError(f"link type {linktype} is not Ethernet or radiotap")


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip4(text: str) -> bytes:
    return bytes(int(p) for p in text.split("."))


def _ethernet(ts: float, data: bytes) -> Record | None:
    if len(data) < 14:
        raise Malformed("ethernet_short")
    pkt = Ether(data)
    src = _mac(pkt.src)
    inner: Packet = pkt
    while isinstance(inner.payload, Dot1Q | Dot1AD):
        inner = inner.payload
    layer = inner.payload
    ethertype = inner.type
    if ethertype == 0x0806:
        if not isinstance(layer, ARP) or len(bytes(layer)) < 8:
            raise Malformed("arp_short")
        if layer.hwtype is None or layer.hwlen != 6 or layer.plen != 4 or layer.ptype != 0x0800:
            return None
        if len(bytes(layer)) < 28:
            raise Malformed("arp_short")
        return Arp(ts, src, layer.op, _mac(layer.hwsrc), _ip4(layer.psrc), _mac(layer.hwdst), _ip4(layer.pdst))
    if ethertype != 0x0800:
        if ethertype in (0x8100, 0x88A8):
            raise Malformed("vlan_short")
        return None
    raw_ip = bytes(layer)
    if len(raw_ip) < 20:
        raise Malformed("ipv4_short")
    if not isinstance(layer, IP) or layer.version != 4 or layer.ihl < 5:
        raise Malformed("ipv4_bad_header")
    if layer.len < layer.ihl * 4 or len(raw_ip) < layer.ihl * 4:
        raise Malformed("ipv4_bad_length")
    return _ipv4(ts, src, layer)


def _ipv4(ts: float, eth_src: bytes, ip: IP) -> Record:
    src, dst, total = _ip4(ip.src), _ip4(ip.dst), ip.len
    if ip.proto == 50:
        return Ip(ts, eth_src, src, dst, 50, 0, 0, total, "esp", 0)
    # scapy dissects the transport layer from the IP payload cut at the IP length
    l4 = bytes(ip)[ip.ihl * 4:total]
    if ip.frag or ip.proto not in (6, 17) or len(l4) < 8:
        return Ip(ts, eth_src, src, dst, ip.proto, 0, 0, total, None, 0)
    if ip.proto == 17:
        udp = UDP(l4)
        sport, dport = udp.sport, udp.dport
        payload = l4[8:]
        if {sport, dport} & {67, 68}:
            dhcp = _dhcp(ts, eth_src, src, payload)
            if dhcp is not None:
                return dhcp
        vpn, detail = _udp_vpn(payload, sport, dport)
    else:
        if len(l4) < 13:
            return Ip(ts, eth_src, src, dst, 6, _u16(l4, 0), _u16(l4, 2), total, None, 0)
        tcp = TCP(l4)
        sport, dport = tcp.sport, tcp.dport
        payload = l4[tcp.dataofs * 4:]
        vpn, detail = _tcp_vpn(payload)
    return Ip(ts, eth_src, src, dst, ip.proto, sport, dport, total, vpn, detail)


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 2], "big")


def _udp_vpn(payload: bytes, sport: int, dport: int) -> tuple[str | None, int]:
    if not payload:
        return None, 0
    if 4500 in (sport, dport):
        if len(payload) >= 4 and payload[:4] == bytes(4):
            ike = ISAKMP(payload[4:]) if len(payload) >= 32 else None
            return ("ike", 0) if ike is not None and ike.version in (0x10, 0x20) else (None, 0)
        return ("esp", 0) if len(payload) >= 8 and ESP(payload).spi is not None else (None, 0)
    if 500 in (sport, dport) and len(payload) >= 28 and ISAKMP(payload).version in (0x10, 0x20):
        return "ike", 0
    kind = payload[0]
    if 1 <= kind <= 4 and payload[1:4] == bytes(3):
        size = len(payload)
        if {1: size == 148, 2: size == 92, 3: size == 64, 4: size >= 32 and size % 16 == 0}[kind]:
            return "wireguard", kind
    if payload[0] >> 3 in (7, 8, 10) and len(payload) >= 14:
        return "openvpn", payload[0]
    return None, 0


def _tcp_vpn(payload: bytes) -> tuple[str | None, int]:
    if len(payload) >= 16 and _u16(payload, 0) == len(payload) - 2 and payload[2] >> 3 in (7, 8, 10):
        return "openvpn", payload[2]
    return None, 0


def _dhcp(ts: float, eth_src: bytes, ip_src: bytes, payload: bytes) -> Dhcp | None:
    if len(payload) < 240 or payload[236:240] != b"\x63\x82\x53\x63":
        return None
    bootp = BOOTP(payload)
    dhcp = bootp.getlayer(DHCP)
    msg_type, server_id = 0, None
    options = dhcp.options if dhcp is not None else []
    if _options_overrun(payload):
        raise Malformed("dhcp_option_short")
    for option in options:
        if option == "end":
            break
        if not isinstance(option, tuple):
            continue
        name, *values = option
        if name == "message-type" and values:
            msg_type = int(values[0])
        elif name == "server_id" and values and isinstance(values[0], str):
            server_id = _ip4(values[0])
    return Dhcp(ts, eth_src, ip_src, bootp.op, msg_type, server_id, _ip4(bootp.yiaddr), bytes(bootp.chaddr)[:6])


def _options_overrun(payload: bytes) -> bool:
    """True when an option before the end marker runs past the packet (scapy keeps such bytes as padding)."""
    i = 240
    while i < len(payload):
        code = payload[i]
        if code == 255:
            return False
        if code == 0:
            i += 1
            continue
        if i + 2 > len(payload) or i + 2 + payload[i + 1] > len(payload):
            return True
        i += 2 + payload[i + 1]
    return False


def _radiotap(ts: float, data: bytes) -> Record | None:
    if len(data) < 8:
        raise Malformed("radiotap_short")
    if data[0] != 0:
        raise Malformed("radiotap_version")
    hlen = int.from_bytes(data[2:4], "little")
    if hlen < 8 or hlen > len(data):
        raise Malformed("radiotap_bad_length")
    pkt = RadioTap(data)
    rt = pkt[RadioTap]
    fcs = bool(rt.present.Flags and rt.Flags.FCS) if rt.present is not None else False
    frame = data[hlen:len(data) - 4 if fcs else len(data)]
    if len(frame) < 24:
        if len(frame) >= 10:
            return None
        raise Malformed("dot11_short")
    dot11 = Dot11(frame)
    if dot11.type != 0:
        return None
    addr1, addr2, addr3 = _mac(dot11.addr1), _mac(dot11.addr2), _mac(dot11.addr3)
    if dot11.subtype in (10, 12):
        if len(frame) < 26:
            raise Malformed("deauth_short")
        body = dot11.getlayer(Dot11Deauth if dot11.subtype == 12 else Dot11Disas)
        return Deauth(ts, addr2, addr1, addr3, body.reason, dot11.subtype == 10)
    if dot11.subtype not in (5, 8):
        return None
    if len(frame) < 36:
        raise Malformed("beacon_short")
    body = dot11.getlayer(Dot11Beacon if dot11.subtype == 8 else Dot11ProbeResp)
    privacy = "privacy" in str(body.cap)
    ssid, channel, ht_channel, akms, wpa_ie = b"", 0, 0, None, False
    element = body.payload
    while isinstance(element, Dot11Elt):
        raw = bytes(element)
        if len(raw) < 2 or len(raw) < 2 + raw[1]:
            raise Malformed("ie_overrun")
        info = raw[2:2 + raw[1]]
        if element.ID == 0:
            ssid = info
        elif element.ID == 3 and info:
            channel = info[0]
        elif element.ID == 61 and info:
            ht_channel = info[0]
        elif element.ID == 48:
            akms = [suite.suite if suite.oui == 0x000FAC else 0 for suite in getattr(element, "akm_suites", [])]
        elif element.ID == 221 and info[:4] == b"\x00\x50\xf2\x01":
            wpa_ie = True
        element = element.payload
    if isinstance(element, Raw) and len(element.load) >= 1:
        raise Malformed("ie_overrun")
    freq = rt.ChannelFrequency if rt.present is not None and rt.present.Channel else 0
    signal = rt.dBm_AntSignal if rt.present is not None and rt.present.dBm_AntSignal else None
    return Beacon(ts, addr3, addr2, ssid, channel or ht_channel or freq_to_channel(freq or 0),
                  security_label(akms, wpa_ie, privacy), signal, dot11.subtype == 5)
