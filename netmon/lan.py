"""LAN detectors (in the style of arpwatch): new stations with their vendor, ARP spoofing, rogue DHCP servers.
Pure logic over records; the inventory it consults is passed in."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from edge.config_netmon import LanSettings
from netmon.findings import Capped, Finding
from netmon.packets import Arp, Dhcp, ip_text, mac_text

ZERO_IP = b"\0\0\0\0"


class Stations(Protocol):
    """What the LAN detector needs of the inventory."""

    def knows(self, mac: str) -> bool:
        """True for a MAC already in the inventory."""

    def learning(self, ts: float) -> bool:
        """True while new stations are learned rather than reported."""

    def record_station(self, mac: str, vendor: str | None, ip: str | None, ts: float, approved: bool) -> None:
        """Add a station seen for the first time."""


def vendor_of(mac: str) -> str | None:
    """The registered vendor of a MAC's OUI (scapy's copy of the IEEE/Wireshark list), None when unknown or the
    address is locally administered (randomised)."""
    from scapy.config import conf

    if int(mac[:2], 16) & 0x02:
        return None
    name = conf.manufdb._get_manuf(mac) if conf.manufdb is not None else mac
    return None if not name or name == mac else str(name)


@dataclass
class _Binding:
    mac: bytes
    changes: deque[float] = field(default_factory=lambda: deque(maxlen=16))
    history: list[bytes] = field(default_factory=list)


class LanDetector:
    """Watches ARP and DHCP on the mirror port."""

    def __init__(self, settings: LanSettings, stations: Stations, max_keys: int) -> None:
        self.settings = settings
        self.stations = stations
        self.dhcp_servers = {s.packed for s in settings.dhcp_servers}
        self.protected = {s.packed for s in settings.protected_ips}
        self.seen: Capped[bytes, float] = Capped(max_keys)  # MAC -> last seen
        self.bindings: Capped[bytes, _Binding] = Capped(max_keys)
        self.gratuitous: Capped[bytes, deque[float]] = Capped(max_keys)

    def station(self, mac: bytes, ip: bytes | None, ts: float, raw: bytes) -> list[Finding]:
        """A MAC seen as the sender of ARP or a DHCP client: reported once, when the inventory lacks it."""
        if mac in self.seen:
            self.seen.touch(mac)
            self.seen[mac] = ts
            return []
        self.seen.put(mac, ts)
        if mac[0] & 1 or mac == b"\0" * 6:  # multicast or empty: not a station
            return []
        text = mac_text(mac)
        if self.stations.knows(text):
            return []
        learning = self.stations.learning(ts)
        vendor = vendor_of(text)
        ip_str = ip_text(ip) if ip and ip != ZERO_IP else None
        self.stations.record_station(text, vendor, ip_str, ts, approved=learning)
        return [Finding("station_seen", ts, f"station:{text}", "NEWSTATION",
                        {"mac": text, "vendor": vendor, "ip": ip_str, "learning": learning}, ((ts, raw),))]

    def arp(self, rec: Arp, raw: bytes) -> list[Finding]:
        """An ARP request or reply."""
        found = self.station(rec.sha, rec.spa, rec.ts, raw)
        if rec.spa == ZERO_IP:  # an ARP probe claims nothing
            return found
        s = self.settings
        if rec.spa == rec.tpa:  # gratuitous: a host announcing its own binding
            times = self.gratuitous.get(rec.sha)
            if times is None:
                times = deque(maxlen=s.gratuitous_max + 1)
                self.gratuitous.put(rec.sha, times)
            times.append(rec.ts)
            if len(times) > s.gratuitous_max and rec.ts - times[0] <= s.gratuitous_window_s:
                times.clear()
                found.append(Finding("arp_spoofing_seen", rec.ts, f"arp:storm:{mac_text(rec.sha)}", "ARPSTORM",
                                     {"ip": None, "macs": [mac_text(rec.sha)], "reason": "gratuitous storm"},
                                     ((rec.ts, raw),)))
        binding = self.bindings.get(rec.spa)
        if binding is None:
            self.bindings.put(rec.spa, _Binding(rec.sha, history=[rec.sha]))
            return found
        self.bindings.touch(rec.spa)
        if binding.mac == rec.sha:
            return found
        binding.mac = rec.sha
        binding.changes.append(rec.ts)
        binding.history = (binding.history + [rec.sha])[-4:]
        recent = sum(1 for t in binding.changes if rec.ts - t <= s.arp_window_s)
        reason = None
        if rec.spa in self.protected:
            reason = "protected address"
        elif recent >= s.arp_flips:
            reason = "flip-flop"
        if reason is not None:
            found.append(Finding("arp_spoofing_seen", rec.ts, f"arp:{ip_text(rec.spa)}", "ARPSPOOF",
                                 {"ip": ip_text(rec.spa), "macs": [mac_text(m) for m in binding.history],
                                  "reason": reason}, ((rec.ts, raw),)))
        return found

    def dhcp(self, rec: Dhcp, raw: bytes) -> list[Finding]:
        """A DHCP message: clients are stations; offers and acks must come from a listed server."""
        if rec.op == 1:
            return self.station(rec.chaddr, None, rec.ts, raw)
        if rec.op != 2 or rec.msg_type not in (2, 5):
            return []
        server = rec.server_id or rec.ip_src
        if server in self.dhcp_servers:
            return []
        return [Finding("rogue_dhcp_server_seen", rec.ts, f"dhcp:{ip_text(server)}:{mac_text(rec.eth_src)}",
                        "DHCPROGUE", {"server_ip": ip_text(server), "server_mac": mac_text(rec.eth_src),
                                      "offered_ip": ip_text(rec.yiaddr)}, ((rec.ts, raw),))]
