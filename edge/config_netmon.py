"""Settings of the netmon service: what it listens on, the site's allow-lists, and detector thresholds."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator

from edge.config_base import Section

MacAddress = Annotated[str, Field(pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$",
                                  description="MAC address, lower case, colon separated.")]


def _lower_macs(cls: object, value: object) -> object:
    """MAC lists are matched in lower case; accept them as people write them."""
    return [v.lower() if isinstance(v, str) else v for v in value] if isinstance(value, list) else value


Security = Literal["open", "wep", "wpa", "owe", "wpa2", "wpa2-eap", "wpa2/wpa3", "wpa3", "wpa3-eap"]


class WifiNetwork(Section):
    """One corporate SSID and the access points allowed to send it."""

    ssid: str = Field(min_length=1, max_length=32, description="The network name, exactly as broadcast.")
    bssids: list[MacAddress] = Field(min_length=1, description="BSSIDs (radio MACs) of the site's own access "
                                     "points for this SSID.")
    channels: list[int] = Field(default=[], description="Channels they use; empty allows any.")
    security: Security = Field(default="wpa2", description="The weakest security they offer; anything weaker "
                               "under this SSID is a rogue.")

    _lower = field_validator("bssids", mode="before")(_lower_macs)


class WifiSettings(Section):
    """Wi-Fi detectors (monitor-mode radio)."""

    enabled: bool = Field(default=True, description="Run the Wi-Fi detectors (and capture 802.11 management "
                          "frames on the monitor interface).")
    networks: list[WifiNetwork] = Field(default=[], description="Corporate SSIDs and their access points.")
    known_ssids: list[str] = Field(default=[], description="Neighbours' SSIDs that resemble a corporate name on "
                                   "purpose or by chance; never reported as look-alikes.")
    deauth_window_s: float = Field(default=10.0, gt=0, le=600, description="Window over which deauthentication "
                                   "and disassociation frames are counted per BSSID.")
    deauth_min_frames: int = Field(default=30, ge=1, description="Fewest frames in one window that can be a flood.")
    deauth_factor: float = Field(default=5.0, ge=1, description="A flood is this many times the BSSID's usual "
                                 "rate (its baseline, a moving average of past windows).")


class LanSettings(Section):
    """LAN detectors (mirror port)."""

    enabled: bool = Field(default=True, description="Run the LAN detectors (and capture ARP and DHCP).")
    known_stations: list[MacAddress] = Field(default=[], description="MACs approved in the config, added to the "
                                             "inventory's approved stations at start.")

    _lower = field_validator("known_stations", mode="before")(_lower_macs)
    dhcp_servers: list[IPv4Address] = Field(default=[], description="IPv4 addresses of the site's DHCP servers; an "
                                    "offer from any other is a rogue DHCP server. Empty: every server is reported.")
    protected_ips: list[IPv4Address] = Field(default=[], description="Addresses whose MAC must never change (gateway, "
                                     "DNS): one change is ARP spoofing.")
    arp_window_s: float = Field(default=300.0, gt=0, description="Window for MAC changes of one IP (flip-flop).")
    arp_flips: int = Field(default=2, ge=1, description="MAC changes of one IP inside the window that are spoofing.")
    gratuitous_max: int = Field(default=20, ge=1, description="Gratuitous ARPs from one MAC per window that are a "
                                "storm.")
    gratuitous_window_s: float = Field(default=10.0, gt=0, description="Window for gratuitous ARP storms.")


class VpnSettings(Section):
    """VPN detectors: agent subnets and the concentrators their tunnels must go to."""

    enabled: bool = Field(default=True, description="Run the VPN detectors (and capture the agent subnets' IPv4 "
                          "traffic); they need `agent_subnets`.")
    agent_subnets: list[IPv4Network] = Field(default=[], description="Subnets of the agents' machines (CIDR).")
    concentrators: list[IPv4Network] = Field(default=[], description="Approved VPN concentrators (addresses or "
                                             "CIDR).")
    allowed_destinations: list[IPv4Network] = Field(default=[], description="Internet destinations agents may "
                                                    "reach outside the tunnel (e.g. the VPN client's own portal).")
    tunnel_idle_s: float = Field(default=300.0, gt=0, description="An approved tunnel silent this long is down.")


class EvidenceSettings(Section):
    """Pcap snippets kept with alerts."""

    max_frames: int = Field(default=16, ge=1, le=1000, description="Most frames in one snippet.")
    max_age_days: float = Field(default=30.0, gt=0, description="Snippets older than this are deleted.")
    max_bytes: int = Field(default=100 * 1024 * 1024, ge=1024, description="Total size kept; oldest deleted first.")


class ReplaySettings(Section):
    """A capture file played as if it were live traffic (drills, demonstrations)."""

    path: Path = Field(description="pcap or pcapng file (Ethernet or radiotap).")
    speed: float = Field(default=1.0, gt=0, le=1000, description="Playback speed; 1 is the capture's own pace.")
    loop: bool = Field(default=False, description="Start again from the beginning at the end.")


class NetmonSettings(Section):
    """The netmon service: passive capture on a mirror port and a monitor-mode radio."""

    interface: str | None = Field(default=None, description="Wired interface on the mirror/SPAN port; none: no "
                                  "wired capture.")
    monitor_interface: str | None = Field(default=None, description="Wi-Fi interface already in monitor mode "
                                          "(radiotap); none: no Wi-Fi capture.")
    receive_buffer_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024, le=1024 ** 3,
                                      description="Kernel receive buffer per capture socket (1 MiB to 1 GiB); "
                                      "scapy's 64 KiB default dropped 98 % of frames.")
    replay: list[ReplaySettings] = Field(default=[], description="Capture files played as live sources.")
    stats_interval_s: float = Field(default=10.0, gt=0, description="How often the capture counters are published "
                                    "(retained) on sitewarden/<site>/status/netmon/stats.")
    wifi: WifiSettings = Field(default_factory=WifiSettings, description="Wi-Fi detectors.")
    lan: LanSettings = Field(default_factory=LanSettings, description="LAN detectors.")
    vpn: VpnSettings = Field(default_factory=VpnSettings, description="VPN detectors.")
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings, description="Pcap snippets.")
    evidence_dir: Path | None = Field(default=None, description="Where pcap snippets go; default "
                                      "<data_dir>/netmon/evidence.")
    learn_until: AwareDatetime | None = Field(default=None, description="ISO date/time with zone until which new "
                                              "stations are learned into the inventory instead of reported; none: "
                                              "enforcing.")
    mac_retention_days: float = Field(default=90.0, gt=0, description="Stations not seen for this long are "
                                      "removed from the inventory unless approved.")
    report_every_s: float = Field(default=300.0, gt=0, description="A finding with the same key is reported at "
                                  "most once per this many seconds.")
    max_keys: int = Field(default=50_000, ge=100, description="Cap on per-key state (stations, IPs, BSSIDs, "
                          "tunnels) of each detector; the least recently seen are dropped first.")
