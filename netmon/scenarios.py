"""A generated site, packet by packet with scapy: a wired capture (ARP, DHCP, WireGuard/OpenVPN/IKE/ESP and
ordinary web traffic) and a radiotap capture (beacons, deauths), with the netmon settings they are judged by
and exactly the findings they must give. Used by the tests, `make demo` and the benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dot11 import (
    AKMSuite,
    Dot11,
    Dot11Beacon,
    Dot11Deauth,
    Dot11Elt,
    Dot11EltRSN,
    RadioTap,
)
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapWriter

from netmon.packets import DLT_EN10MB, DLT_IEEE802_11_RADIO

T0 = 1_800_000_000.0
CORP_SSID = "CorpNet"
AP1, AP2 = "02:00:00:00:01:01", "02:00:00:00:01:02"
EVIL = "02:66:66:66:66:66"
GATEWAY_MAC, GATEWAY_IP = "02:00:00:00:00:01", "10.0.0.1"
ROUTER_MAC = "02:00:00:00:00:fe"  # the agents' traffic leaves through it
KNOWN = ["02:00:00:00:00:01", "02:00:00:00:00:14", "02:00:00:00:00:1e", "02:00:00:00:00:1f", ROUTER_MAC]
NEW_LAPTOP = "00:1b:63:12:34:56"  # Apple's OUI: the vendor is looked up
ATTACKER = "02:00:00:00:00:99"
CONCENTRATOR = "198.51.100.10"

SETTINGS: dict[str, Any] = {
    "wifi": {"networks": [{"ssid": CORP_SSID, "bssids": [AP1, AP2], "channels": [1, 6], "security": "wpa3"}],
             "known_ssids": ["Cafe Guest"], "deauth_window_s": 10, "deauth_min_frames": 30},
    "lan": {"dhcp_servers": [GATEWAY_IP], "protected_ips": [GATEWAY_IP]},
    "vpn": {"agent_subnets": ["10.20.0.0/16"], "concentrators": [f"{CONCENTRATOR}/32"], "tunnel_idle_s": 60},
    "report_every_s": 300,
}

# (kind, key) of every finding the two captures must give, and nothing else
EXPECTED_WIFI = [
    ("rogue_access_point_seen", f"rogue_ap:{EVIL}:{CORP_SSID}"),
    ("rogue_access_point_seen", f"rogue_ap:{AP2}:{CORP_SSID}"),
    ("lookalike_ssid_seen", "lookalike:02:00:00:00:07:01:C0rpNet"),
    ("lookalike_ssid_seen", "lookalike:02:00:00:00:07:02:CorpNet Free WiFi"),
    ("deauth_flood_seen", f"deauth:{AP1}"),
    ("attack_tool_seen", "tool:pwnagotchi:de:ad:be:ef:de:ad"),
]
EXPECTED_WIRED = [
    ("station_seen", f"station:{NEW_LAPTOP}"),
    ("station_seen", f"station:{ATTACKER}"),
    ("station_seen", "station:02:00:00:00:00:42"),
    ("station_seen", "station:02:00:00:00:00:77"),
    ("arp_spoofing_seen", f"arp:{GATEWAY_IP}"),
    ("arp_spoofing_seen", "arp:10.0.0.31"),
    ("arp_spoofing_seen", "arp:storm:02:00:00:00:00:77"),
    ("rogue_dhcp_server_seen", "dhcp:10.0.0.66:02:00:00:00:00:66"),
    ("personal_vpn_seen", "personal_vpn:10.20.0.6:203.0.113.50:1194/udp"),
    ("personal_vpn_seen", "personal_vpn:10.20.0.7:203.0.113.60:500/udp"),
    ("personal_vpn_seen", "personal_vpn:10.20.0.8:203.0.113.70/esp"),
    ("personal_vpn_seen", "personal_vpn:10.20.0.10:203.0.113.80:443/tcp"),
    ("personal_vpn_seen", "personal_vpn:10.20.0.11:203.0.113.90:51820/udp"),
    ("vpn_bypass_seen", "bypass:10.20.0.9"),
    ("vpn_tunnel_went_down", f"tunnel:10.20.0.5:{CONCENTRATOR}:1"),
    ("vpn_tunnel_came_up", f"tunnel_up:10.20.0.5:{CONCENTRATOR}:1"),
]


def _radiotap(channel_mhz: int, signal: int = -50) -> RadioTap:
    return RadioTap(present="Flags+Channel+dBm_AntSignal", Flags=0, ChannelFrequency=channel_mhz,
                    ChannelFlags=0x00A0, dBm_AntSignal=signal)


def beacon(bssid: str, ssid: str, channel: int, security: str) -> Packet:
    """A beacon from `bssid` with DS parameter set `channel` and `security` one of open, wpa2, wpa3."""
    cap = "ESS" if security == "open" else "ESS+privacy"
    frame = (_radiotap(2407 + 5 * channel) / Dot11(type=0, subtype=8, addr1="ff:ff:ff:ff:ff:ff", addr2=bssid,
                                                   addr3=bssid)
             / Dot11Beacon(cap=cap) / Dot11Elt(ID="SSID", info=ssid.encode()) / Dot11Elt(ID="DSset",
                                                                                     info=bytes([channel])))
    if security != "open":
        frame = frame / Dot11EltRSN(akm_suites=[AKMSuite(suite=8 if security == "wpa3" else 2)])
    return frame


def deauth(bssid: str, client: str, reason: int = 7) -> Packet:
    """A deauthentication frame from the AP's address to `client` (or broadcast)."""
    return _radiotap(2412) / Dot11(type=0, subtype=12, addr1=client, addr2=bssid, addr3=bssid) / Dot11Deauth(
        reason=reason)


def wifi_frames() -> list[tuple[float, Packet]]:
    """Ninety seconds of a corporate Wi-Fi: beacons, an evil twin, look-alikes, a deauth flood, a pwnagotchi."""
    out: list[tuple[float, Packet]] = []
    for k in range(300):  # the site's own access points, every 0.3 s: never a finding
        t = T0 + k * 0.3
        out.append((t, beacon(AP1, CORP_SSID, 1, "wpa3")))
        out.append((t + 0.01, beacon(AP2, CORP_SSID, 6, "wpa3")))
        if k % 10 == 0:
            out.append((t + 0.02, beacon("02:00:00:00:05:01", "Cafe Guest", 11, "open")))
    for k in range(20):  # an evil twin: open, channel 11, unknown BSSID
        out.append((T0 + 5 + k * 0.1, beacon(EVIL, CORP_SSID, 11, "open")))
    out.append((T0 + 7, beacon(AP2, CORP_SSID, 6, "wpa2")))  # the site's own AP, downgraded to WPA2
    out.append((T0 + 8, beacon("02:00:00:00:07:01", "C0rpNet", 3, "open")))
    out.append((T0 + 9, beacon("02:00:00:00:07:02", "CorpNet Free WiFi", 3, "open")))
    for k in range(12):  # the usual trickle: clients leaving, 2 per 10 s
        out.append((T0 + k * 5.0, deauth(AP1, "02:00:00:00:09:01", reason=3)))
    for k in range(200):  # the flood: 200 broadcast deauths in 2 s, reason 7 (aireplay-ng's)
        out.append((T0 + 70 + k * 0.01, deauth(AP1, "ff:ff:ff:ff:ff:ff")))
    pwn = '{"name":"pwny","face":"(o_o)","pwnd_run":3,"pwnd_tot":42,"version":"1.5.5"}'
    out.append((T0 + 80, beacon("de:ad:be:ef:de:ad", pwn, 1, "open")))
    return sorted(out, key=lambda item: item[0])


def arp(src_mac: str, src_ip: str, dst_ip: str, op: int = 1, dst_mac: str = "00:00:00:00:00:00") -> Packet:
    """An ARP request (op 1, broadcast) or reply (op 2) from `src_mac` claiming `src_ip`."""
    return Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff" if op == 1 else dst_mac) / ARP(
        op=op, hwsrc=src_mac, psrc=src_ip, hwdst=dst_mac, pdst=dst_ip)


def dhcp_reply(server_mac: str, server_ip: str, offered: str, client: str, msg: str = "offer") -> Packet:
    """A DHCP offer (or `msg`) from a server to `client`, offering `offered`."""
    return (Ether(src=server_mac, dst="ff:ff:ff:ff:ff:ff") / IP(src=server_ip, dst="255.255.255.255")
            / UDP(sport=67, dport=68) / BOOTP(op=2, yiaddr=offered, siaddr=server_ip,
                                              chaddr=bytes.fromhex(client.replace(":", "")) + bytes(10))
            / DHCP(options=[("message-type", msg), ("server_id", server_ip), ("lease_time", 3600), "end"]))


def discover(client: str) -> Packet:
    """A DHCP discover broadcast by `client`."""
    return (Ether(src=client, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67) / BOOTP(op=1, chaddr=bytes.fromhex(client.replace(":", "")) + bytes(10))
            / DHCP(options=[("message-type", "discover"), "end"]))


def routed(src: str, dst: str, mac: str = ROUTER_MAC) -> Packet:
    """An IPv4 header from `src` to `dst` as the mirror port sees it on its way to the gateway."""
    return Ether(src=mac, dst=GATEWAY_MAC) / IP(src=src, dst=dst)


def wireguard(kind: int, size: int) -> bytes:
    """A WireGuard message of `kind` (1 initiation, 2 response, 3 cookie, 4 data) of `size` bytes."""
    return bytes([kind, 0, 0, 0]) + bytes((7 * i) & 0xFF for i in range(size - 4))


def openvpn_reset(opcode_byte: int = 0x38) -> bytes:
    """An OpenVPN hard-reset control packet: opcode/key id, 8-byte session id, ack array, packet id."""
    return bytes([opcode_byte]) + bytes.fromhex("1122334455667788") + b"\x00" + b"\x00\x00\x00\x00" + bytes(8)


def ike_sa_init() -> bytes:
    """An IKEv2 IKE_SA_INIT header (28 bytes) with an empty body."""
    return bytes.fromhex("0102030405060708") + bytes(8) + bytes([0x21, 0x20, 0x22, 0x08]) + bytes(4) + \
        (28).to_bytes(4, "big")


def wired_frames() -> list[tuple[float, Packet]]:
    """Four minutes of a call-centre LAN seen on a mirror port."""
    out: list[tuple[float, Packet]] = []
    for k in range(40):  # ordinary ARP between known hosts
        t = T0 + k * 0.5
        out.append((t, arp("02:00:00:00:00:14", "10.0.0.20", GATEWAY_IP)))
        out.append((t + 0.01, arp(GATEWAY_MAC, GATEWAY_IP, "10.0.0.20", op=2, dst_mac="02:00:00:00:00:14")))
    out.append((T0 + 1, discover(NEW_LAPTOP)))  # a new laptop asks for an address
    out.append((T0 + 1.1, dhcp_reply(GATEWAY_MAC, GATEWAY_IP, "10.0.0.50", NEW_LAPTOP)))  # the real server answers
    out.append((T0 + 1.2, dhcp_reply("02:00:00:00:00:66", "10.0.0.66", "10.0.0.51", NEW_LAPTOP)))  # and a rogue one
    out.append((T0 + 2, arp(ATTACKER, GATEWAY_IP, "10.0.0.20", op=2, dst_mac="02:00:00:00:00:14")))  # poisoning
    # 10.0.0.31 flip-flops between two MACs: the second change inside the window is spoofing
    out.append((T0 + 3, arp("02:00:00:00:00:1e", "10.0.0.31", GATEWAY_IP)))
    out.append((T0 + 4, arp("02:00:00:00:00:42", "10.0.0.31", GATEWAY_IP)))
    out.append((T0 + 5, arp("02:00:00:00:00:1e", "10.0.0.31", GATEWAY_IP)))
    out.append((T0 + 5.5, arp("02:00:00:00:00:1f", "10.0.0.32", GATEWAY_IP)))  # one change of IP: no alert
    for k in range(30):  # a gratuitous ARP storm
        out.append((T0 + 6 + k * 0.05, arp("02:00:00:00:00:77", "10.0.0.77", "10.0.0.77")))
    # an approved WireGuard tunnel: handshake, then data until T0+30, then silence, then back at T0+200
    out.append((T0 + 10, routed("10.20.0.5", CONCENTRATOR) / UDP(sport=40000, dport=51820) / Raw(wireguard(1, 148))))
    out.append((T0 + 10.05, routed(CONCENTRATOR, "10.20.0.5") / UDP(sport=51820, dport=40000) / Raw(wireguard(2, 92))))
    for k in range(50):
        out.append((T0 + 10.2 + k * 0.4, routed("10.20.0.5", CONCENTRATOR) / UDP(sport=40000, dport=51820)
                    / Raw(wireguard(4, 96))))
    out.append((T0 + 200, routed("10.20.0.5", CONCENTRATOR) / UDP(sport=40000, dport=51820) / Raw(wireguard(4, 64))))
    # agents' DNS to the site resolver and the site's own web traffic: never findings
    out.append((T0 + 11, routed("10.20.0.5", GATEWAY_IP) / UDP(sport=5353, dport=53) / Raw(b"\x12\x34" + bytes(10))))
    for k in range(20):
        out.append((T0 + 12 + k * 0.1, routed("10.0.0.20", "93.184.216.34", mac="02:00:00:00:00:14")
                    / TCP(sport=50000 + k, dport=443, flags="S")))
    # personal VPNs from agent machines, recognised by their packets
    out.append((T0 + 20, routed("10.20.0.6", "203.0.113.50") / UDP(sport=50001, dport=1194) / Raw(openvpn_reset())))
    out.append((T0 + 21, routed("10.20.0.7", "203.0.113.60") / UDP(sport=500, dport=500) / Raw(ike_sa_init())))
    out.append((T0 + 22, Ether(src=ROUTER_MAC, dst=GATEWAY_MAC) / IP(src="10.20.0.8", dst="203.0.113.70", proto=50)
                / Raw(bytes(40))))
    reset = openvpn_reset()
    out.append((T0 + 23, routed("10.20.0.10", "203.0.113.80") / TCP(sport=50123, dport=443, flags="PA")
                / Raw(len(reset).to_bytes(2, "big") + reset)))
    out.append((T0 + 24, routed("10.20.0.11", "203.0.113.90") / UDP(sport=41000, dport=51820) / Raw(wireguard(1, 148))))
    # an agent's browser going straight out: VPN bypass (twice: reported once)
    out.append((T0 + 25, routed("10.20.0.9", "93.184.216.34") / TCP(sport=51000, dport=443, flags="S")))
    out.append((T0 + 25.5, routed("10.20.0.9", "93.184.216.34") / TCP(sport=51001, dport=443, flags="S")))
    # keep time moving past the tunnel's idle limit (60 s) with ordinary ARP
    for k in range(12):
        out.append((T0 + 40 + k * 10, arp("02:00:00:00:00:14", "10.0.0.20", GATEWAY_IP)))
    return sorted(out, key=lambda item: item[0])


def write_pcap(path: Path, linktype: int, frames: list[tuple[float, Packet]]) -> Path:
    """Frames to a classic pcap with their timestamps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with PcapWriter(str(path), linktype=linktype, sync=False) as writer:
        for ts, frame in frames:
            frame.time = ts
            writer.write(frame)
    return path


def write_captures(folder: Path) -> tuple[Path, Path]:
    """wired.pcap (Ethernet) and wifi.pcap (radiotap) in `folder`."""
    return (write_pcap(folder / "wired.pcap", DLT_EN10MB, wired_frames()),
            write_pcap(folder / "wifi.pcap", DLT_IEEE802_11_RADIO, wifi_frames()))
