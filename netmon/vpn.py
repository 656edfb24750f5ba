"""VPN detectors: agent traffic outside an approved tunnel (bypass), tunnels to endpoints that are not approved
(personal VPN), and approved tunnels that fell silent. Tunnels are recognised by their packets (see
`netmon/packets.py`), not only by port. Pure logic over `Ip` records; time is the packets' own."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from edge.config_netmon import VpnSettings
from netmon.findings import Capped, Finding
from netmon.packets import Ip, ip_text

PRIVATE = [IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                                     "169.254.0.0/16", "100.64.0.0/10", "224.0.0.0/4", "255.255.255.255/32")]
PROTO_NAMES = {6: "tcp", 17: "udp", 50: "esp", 1: "icmp"}


class Nets:
    """A set of IPv4 networks, tested on 4 raw address bytes."""

    def __init__(self, nets: list[IPv4Network]) -> None:
        self.nets = [(int(n.network_address), int(n.netmask)) for n in nets]

    def __contains__(self, ip: bytes) -> bool:
        value = int.from_bytes(ip, "big")
        for network, mask in self.nets:
            if value & mask == network:
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self.nets)


@dataclass
class _Tunnel:
    last_seen: float
    down: bool = False
    downs: int = 0
    frame: tuple[float, bytes] | None = None


def _where(ip: bytes, port: int, proto: int) -> str:
    name = PROTO_NAMES.get(proto, str(proto))
    return f"{ip_text(ip)}:{port}/{name}" if port else f"{ip_text(ip)}/{name}"


class VpnDetector:
    """Judges agent-subnet traffic against the approved concentrators."""

    def __init__(self, settings: VpnSettings, max_keys: int) -> None:
        self.settings = settings
        self.agents = Nets(settings.agent_subnets)
        self.concentrators = Nets(settings.concentrators)
        self.allowed = Nets(settings.allowed_destinations)
        self.private = Nets(PRIVATE)
        self.tunnels: Capped[tuple[bytes, bytes], _Tunnel] = Capped(max_keys)

    def ip(self, rec: Ip, raw: bytes) -> list[Finding]:
        """One IPv4 packet seen on the mirror port."""
        agents = self.agents
        if not agents:
            return []
        if rec.src not in agents:
            if rec.dst in agents and rec.src in self.concentrators:  # the concentrator's side keeps it alive too
                return self._alive(rec.dst, rec.src, rec.ts, raw)
            return []
        dst = rec.dst
        if dst in self.concentrators:
            return self._alive(rec.src, dst, rec.ts, raw)
        if dst in self.private or dst in self.allowed:
            return []
        agent = ip_text(rec.src)
        if rec.vpn is not None:
            endpoint = _where(dst, rec.dport, rec.proto)
            return [Finding("personal_vpn_seen", rec.ts, f"personal_vpn:{agent}:{endpoint}", "PERSONALVPN",
                            {"agent_ip": agent, "endpoint": endpoint, "protocol": rec.vpn}, ((rec.ts, raw),))]
        return [Finding("vpn_bypass_seen", rec.ts, f"bypass:{agent}", "VPNBYPASS",
                        {"agent_ip": agent, "destination": _where(dst, rec.dport, rec.proto)}, ((rec.ts, raw),))]

    def _alive(self, agent: bytes, concentrator: bytes, ts: float, raw: bytes) -> list[Finding]:
        key = (agent, concentrator)
        tunnel = self.tunnels.get(key)
        if tunnel is None:
            self.tunnels.put(key, _Tunnel(ts, frame=(ts, raw)))
            return []
        self.tunnels.touch(key)
        tunnel.last_seen = max(tunnel.last_seen, ts)
        tunnel.frame = (ts, raw)
        if not tunnel.down:
            return []
        tunnel.down = False
        a, c = ip_text(agent), ip_text(concentrator)
        return [Finding("vpn_tunnel_came_up", ts, f"tunnel_up:{a}:{c}:{tunnel.downs}", "VPNTUNNELUP",
                        {"agent_ip": a, "concentrator": c}, ((ts, raw),))]

    def tick(self, now: float) -> list[Finding]:
        """Approved tunnels silent for `tunnel_idle_s` at time `now` (packet time) are down."""
        found = []
        idle = self.settings.tunnel_idle_s
        for (agent, concentrator), tunnel in self.tunnels.items():
            if not tunnel.down and now - tunnel.last_seen >= idle:
                tunnel.down = True
                tunnel.downs += 1
                a, c = ip_text(agent), ip_text(concentrator)
                frames = (tunnel.frame,) if tunnel.frame else ()
                found.append(Finding("vpn_tunnel_went_down", now, f"tunnel:{a}:{c}:{tunnel.downs}",
                                     "VPNTUNNELDOWN", {"agent_ip": a, "concentrator": c,
                                                       "silent_s": round(now - tunnel.last_seen, 1)}, frames))
        return found
