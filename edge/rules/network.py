"""Network rules: netmon's findings (rogue AP, deauth flood, ARP spoofing, rogue DHCP, VPN bypass, ...) as alerts.

netmon already decided that something is wrong and keeps its own per-key suppression; these rules give each
finding its alert kind, severity, title and evidence, fold repeats by a stable key, and let a tunnel coming
back up resolve its tunnel-down alert.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.alerts import Evidence, Severity
from edge.config import RulesSettings
from edge.events import (
    ArpSpoofingSeen,
    AttackToolSeen,
    DeauthFloodSeen,
    Event,
    LookalikeSsidSeen,
    NetworkFinding,
    PersonalVpnSeen,
    RogueAccessPointSeen,
    RogueDhcpServerSeen,
    StationSeen,
    VpnBypassSeen,
    VpnTunnelCameUp,
    VpnTunnelWentDown,
)
from edge.rules.base import AlertDraft, Rule, RuleContext

# fact kind -> (alert kind, severity, zone, dedupe key, title)
Describe = Callable[[NetworkFinding], tuple[str, str]]


def _rogue_ap(f: NetworkFinding) -> tuple[str, str]:
    assert isinstance(f, RogueAccessPointSeen)
    return (f"rogue_ap:{f.bssid}:{f.ssid}",
            f"Rogue access point / evil twin: SSID {f.ssid!r} from {f.bssid} on channel {f.channel} "
            f"({f.security}): {', '.join(f.reasons)}")


def _lookalike(f: NetworkFinding) -> tuple[str, str]:
    assert isinstance(f, LookalikeSsidSeen)
    return f"lookalike:{f.bssid}:{f.ssid}", f"Look-alike SSID {f.ssid!r} from {f.bssid} imitates {f.resembles!r}"


def _deauth(f: NetworkFinding) -> tuple[str, str]:
    assert isinstance(f, DeauthFloodSeen)
    target = "broadcast, every client" if f.broadcast else "clients"
    return (f"deauth:{f.bssid}",
            f"Deauthentication flood against {f.bssid} ({target}): {f.frames} frames in {f.window_s:g} s, "
            f"usual rate {f.baseline_per_s:.2f}/s")


def _tool(f: NetworkFinding) -> tuple[str, str]:
    assert isinstance(f, AttackToolSeen)
    return f"tool:{f.tool}:{f.mac}", f"Attack tool {f.tool} seen ({f.mac})"


def _station(f: NetworkFinding) -> tuple[str, str]:
    assert isinstance(f, StationSeen)
    vendor = f.vendor or "unregistered vendor"
    at = f" at {f.ip}" if f.ip else ""
    return f"station:{f.mac}", f"Unknown device {f.mac} ({vendor}){at} on the LAN"


def _arp(f: NetworkFinding) -> tuple[str, str]:
    assert isinstance(f, ArpSpoofingSeen)
    if f.ip is None:
        return f"arp:storm:{f.macs[-1]}", f"Gratuitous ARP storm from {f.macs[-1]}"
    return f"arp:{f.ip}", f"ARP spoofing of {f.ip} ({f.reason}): {' -> '.join(f.macs)}"


def _dhcp(f: NetworkFinding) -> tuple[str, str]:
    assert isinstance(f, RogueDhcpServerSeen)
    return (f"dhcp:{f.server_ip}:{f.server_mac}",
            f"Rogue DHCP server {f.server_ip} ({f.server_mac}) offered {f.offered_ip}")


def _bypass(f: NetworkFinding) -> tuple[str, str]:
    assert isinstance(f, VpnBypassSeen)
    return f"bypass:{f.agent_ip}", f"VPN bypass: agent {f.agent_ip} reached {f.destination} outside the tunnel"


def _personal(f: NetworkFinding) -> tuple[str, str]:
    assert isinstance(f, PersonalVpnSeen)
    return (f"personal_vpn:{f.agent_ip}:{f.endpoint}",
            f"Personal VPN: agent {f.agent_ip} runs a {f.protocol} tunnel to {f.endpoint}, not an approved "
            "concentrator")


def _down(f: NetworkFinding) -> tuple[str, str]:
    assert isinstance(f, VpnTunnelWentDown)
    return (f"tunnel:{f.agent_ip}:{f.concentrator}",
            f"VPN tunnel down: agent {f.agent_ip} to {f.concentrator} silent for {f.silent_s:.0f} s")


ALERTS: dict[str, tuple[str, Severity, str, Describe]] = {
    "rogue_access_point_seen": ("rogue_ap", Severity.HIGH, "wifi", _rogue_ap),
    "lookalike_ssid_seen": ("lookalike_ssid", Severity.MEDIUM, "wifi", _lookalike),
    "deauth_flood_seen": ("deauth_flood", Severity.HIGH, "wifi", _deauth),
    "attack_tool_seen": ("attack_tool", Severity.HIGH, "wifi", _tool),
    "station_seen": ("unknown_device", Severity.MEDIUM, "lan", _station),
    "arp_spoofing_seen": ("arp_spoofing", Severity.HIGH, "lan", _arp),
    "rogue_dhcp_server_seen": ("rogue_dhcp", Severity.HIGH, "lan", _dhcp),
    "vpn_bypass_seen": ("vpn_bypass", Severity.HIGH, "vpn", _bypass),
    "personal_vpn_seen": ("personal_vpn", Severity.MEDIUM, "vpn", _personal),
    "vpn_tunnel_went_down": ("vpn_tunnel_down", Severity.MEDIUM, "vpn", _down),
}


class NetworkRule(Rule):
    """Raises one alert per network finding (a station learned in learning mode raises none)."""

    name = "network"
    kinds = frozenset(ALERTS) | {"vpn_tunnel_came_up"}

    def __init__(self, settings: RulesSettings) -> None:
        self._down: dict[str, str] = {}  # tunnel dedupe key -> trigger of its open tunnel-down alert

    def on_fact(self, fact: Event, ctx: RuleContext) -> None:
        if isinstance(fact, VpnTunnelCameUp):
            trigger = self._down.pop(f"tunnel:{fact.agent_ip}:{fact.concentrator}", None)
            if trigger is not None:
                ctx.resolve("vpn_tunnel_down", trigger, "tunnel carries packets again")
            return
        if not isinstance(fact, NetworkFinding) or fact.kind not in ALERTS:  # type: ignore[attr-defined]
            return
        if isinstance(fact, StationSeen) and fact.learning:
            return
        kind, severity, zone, describe = ALERTS[fact.kind]  # type: ignore[attr-defined]
        key, title = describe(fact)
        if isinstance(fact, VpnTunnelWentDown):
            self._down[key] = fact.event_id
        evidence: list[Evidence] = []
        if fact.evidence:
            evidence.append(Evidence(kind="pcap", ref=fact.evidence))
        if fact.packets:
            evidence.append(Evidence(kind="note", ref="\n".join(fact.packets)))
        ctx.raise_alert(AlertDraft(
            kind=kind, severity=severity, title=f"{title} [{fact.signature}]", dedupe_key=key,
            trigger=fact.event_id, at=fact.occurred_at, fact_ids=(fact.event_id,), zone=zone,
            device=fact.source, evidence=tuple(evidence),
        ))
