"""The demo's network: a generated minute of the site's mirror port and radio, replayed in a loop.

Within the first 20 s of each minute: an evil twin of the corporate SSID (open, unknown BSSID, wrong
channel), an agent's browser going straight to the internet past the VPN, a broadcast deauthentication flood
against the site's access point, and a laptop nobody registered. Around them: the site's own beacons, an
approved WireGuard tunnel and ordinary ARP, which must stay quiet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scapy.layers.inet import TCP, UDP
from scapy.packet import Packet, Raw

from netmon import scenarios as sc
from netmon.packets import DLT_EN10MB, DLT_IEEE802_11_RADIO

LOOP_S = 60.0
EVIL_TWIN_AT, BYPASS_AT, FLOOD_AT, LAPTOP_AT = 3.0, 6.0, 10.0, 14.0
AGENT, BYPASSER = "10.20.0.5", "10.20.0.9"


def wifi_minute() -> list[tuple[float, Packet]]:
    """One minute of radio: beacons, a deauth trickle, the evil twin and the flood."""
    t0 = sc.T0
    out: list[tuple[float, Packet]] = []
    for k in range(int(LOOP_S / 0.5)):
        out.append((t0 + k * 0.5, sc.beacon(sc.AP1, sc.CORP_SSID, 1, "wpa3")))
        out.append((t0 + k * 0.5 + 0.01, sc.beacon(sc.AP2, sc.CORP_SSID, 6, "wpa3")))
    for k in range(10):
        out.append((t0 + EVIL_TWIN_AT + k * 0.1, sc.beacon(sc.EVIL, sc.CORP_SSID, 11, "open")))
    for k in range(int(LOOP_S / 6)):  # clients leaving now and then
        out.append((t0 + 1 + k * 6.0, sc.deauth(sc.AP1, "02:00:00:00:09:01", reason=3)))
    for k in range(120):  # 120 broadcast deauths in 1.2 s
        out.append((t0 + FLOOD_AT + k * 0.01, sc.deauth(sc.AP1, "ff:ff:ff:ff:ff:ff")))
    return sorted(out, key=lambda item: item[0])


def wired_minute() -> list[tuple[float, Packet]]:
    """One minute of the mirror port: ARP, an approved tunnel, the bypass and the new laptop."""
    t0 = sc.T0
    out: list[tuple[float, Packet]] = []
    for k in range(int(LOOP_S)):
        out.append((t0 + k, sc.arp("02:00:00:00:00:14", "10.0.0.20", sc.GATEWAY_IP)))
        out.append((t0 + k + 0.5, sc.routed(AGENT, sc.CONCENTRATOR) / UDP(sport=40000, dport=51820)
                    / Raw(sc.wireguard(4, 96))))
    out.append((t0 + BYPASS_AT, sc.routed(BYPASSER, "93.184.216.34") / TCP(sport=51000, dport=443, flags="S")))
    out.append((t0 + LAPTOP_AT, sc.discover(sc.NEW_LAPTOP)))
    out.append((t0 + LAPTOP_AT + 0.1, sc.dhcp_reply(sc.GATEWAY_MAC, sc.GATEWAY_IP, "10.0.0.50", sc.NEW_LAPTOP)))
    out.append((t0 + LOOP_S - 0.2, sc.arp("02:00:00:00:00:14", "10.0.0.20", sc.GATEWAY_IP)))  # the minute's end
    return sorted(out, key=lambda item: item[0])


def demo_captures(data_dir: Path) -> tuple[Path, Path]:
    """Write (once) the demo's two captures under the data directory."""
    folder = data_dir / "netmon"
    wired, wifi = folder / "demo-wired.pcap", folder / "demo-wifi.pcap"
    if not wired.is_file():
        sc.write_pcap(wired, DLT_EN10MB, wired_minute())
    if not wifi.is_file():
        sc.write_pcap(wifi, DLT_IEEE802_11_RADIO, wifi_minute())
    return wired, wifi


def demo_settings(data_dir: Path) -> dict[str, Any]:
    """The `netmon` section the demo runs with: both captures looping, the scenario's allow-lists."""
    wired, wifi = demo_captures(data_dir)
    return {
        **sc.SETTINGS,
        "lan": {**sc.SETTINGS["lan"], "known_stations": sc.KNOWN},
        "replay": [{"path": str(wired), "loop": True}, {"path": str(wifi), "loop": True}],
        "stats_interval_s": 5,
    }
