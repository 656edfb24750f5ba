"""Wi-Fi detectors (allow-list driven, as nzyme does): rogue AP / evil twin, look-alike SSIDs, deauth floods,
and cheap attack-tool fingerprints. Pure: records in, findings out; time is the packets' own."""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from edge.config_netmon import WifiSettings
from netmon.findings import Capped, Finding
from netmon.packets import BROADCAST_MAC, SECURITY_RANK, Beacon, Deauth, mac_text

PWNAGOTCHI_BSSID = bytes.fromhex("deadbeefdead")
BASELINE_WEIGHT = 0.2  # share of the latest window in a BSSID's moving-average deauth rate
_HOMOGLYPHS = str.maketrans({"0": "o", "1": "l", "i": "l", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b",
                             "$": "s", "@": "a", "|": "l", "!": "l"})


def normalized(ssid: str) -> str:
    """An SSID folded for comparison: accents and case dropped, look-alike characters mapped, only a-z kept."""
    text = unicodedata.normalize("NFKD", ssid).encode("ascii", "ignore").decode().lower().replace("rn", "m")
    return re.sub(r"[^a-z]", "", text.translate(_HOMOGLYPHS))


def _within_one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diffs) <= 1 or (len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]]
                                   and a[diffs[1]] == b[diffs[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


class AccessPoints(Protocol):
    """What the Wi-Fi detector needs of the inventory's access-point table."""

    def approves_ap(self, bssid: str, ssid: str) -> bool:
        """True for an access point approved for this SSID."""

    def knows_ap(self, bssid: str, ssid: str) -> bool:
        """True for an access point already recorded with this SSID."""

    def learning(self, ts: float) -> bool:
        """True while what is heard is learned rather than reported."""

    def record_ap(self, bssid: str, ssid: str, channel: int, security: str, ts: float, approved: bool) -> None:
        """Add an access point heard for the first time with this SSID."""


@dataclass
class _Flood:
    window_start: float
    count: int = 0
    broadcast: int = 0
    baseline: float = 0.0  # frames per second
    reported: bool = False
    frames: deque[tuple[float, bytes]] = field(default_factory=lambda: deque(maxlen=8))


class WifiDetector:
    """Holds beacons against the corporate networks and counts deauthentication frames per BSSID."""

    def __init__(self, settings: WifiSettings, max_keys: int, aps: AccessPoints | None = None) -> None:
        self.settings = settings
        self.aps = aps
        self.networks = {n.ssid.encode(): n for n in settings.networks}
        self.allowed = {n.ssid.encode(): {bytes.fromhex(b.replace(":", "")) for b in n.bssids}
                        for n in settings.networks}
        self.known = {s.encode() for s in settings.known_ssids} | set(self.networks)
        self.folded = {normalized(n.ssid): n.ssid for n in settings.networks if len(normalized(n.ssid)) >= 3}
        self.checked: Capped[tuple[bytes, bytes, int, str], float] = Capped(max_keys)  # variant -> last heard
        self.floods: Capped[bytes, _Flood] = Capped(max_keys)

    def beacon(self, rec: Beacon, raw: bytes) -> list[Finding]:
        """An access point's beacon or probe response."""
        key = (rec.bssid, rec.ssid, rec.channel, rec.security)
        if key in self.checked:  # beacons repeat ten times a second: judge each variant once
            self.checked.touch(key)
            self.checked[key] = rec.ts
            return []
        self.checked.put(key, rec.ts)
        found: list[Finding] = []
        frames = ((rec.ts, raw),)
        ssid = rec.ssid.decode("utf-8", "replace")
        bssid = mac_text(rec.bssid)
        aps = self.aps
        if rec.bssid == PWNAGOTCHI_BSSID:
            found.append(Finding("attack_tool_seen", rec.ts, f"tool:pwnagotchi:{bssid}", "PWNAGOTCHI",
                                 {"tool": "pwnagotchi", "mac": bssid}, frames))
        net = self.networks.get(rec.ssid)
        if net is not None:
            reasons = []
            if rec.bssid not in self.allowed[rec.ssid] and not (aps is not None and aps.approves_ap(bssid, ssid)):
                if aps is not None and aps.learning(rec.ts):  # learning: this BSSID becomes one of the site's
                    aps.record_ap(bssid, ssid, rec.channel, rec.security, rec.ts, approved=True)
                else:
                    reasons.append("BSSID not on the list")
            if net.channels and rec.channel not in net.channels:
                reasons.append(f"channel {rec.channel} not in {net.channels}")
            if SECURITY_RANK.get(rec.security, 0) < SECURITY_RANK[net.security]:
                reasons.append(f"weaker security: {rec.security} where {net.security} is set")
            if reasons:
                found.append(Finding("rogue_access_point_seen", rec.ts, f"rogue_ap:{bssid}:{ssid}", "APSPOOF",
                                     {"ssid": ssid, "bssid": bssid, "channel": rec.channel,
                                      "security": rec.security, "reasons": reasons}, frames))
        elif rec.ssid not in self.known and rec.ssid:
            resembles = self._resembles(ssid)
            if resembles is not None:
                found.append(Finding("lookalike_ssid_seen", rec.ts, f"lookalike:{bssid}:{ssid}", "SSIDLOOKALIKE",
                                     {"ssid": ssid, "bssid": bssid, "resembles": resembles}, frames))
        if aps is not None and rec.ssid and not aps.knows_ap(bssid, ssid):
            listed = rec.ssid in self.allowed and rec.bssid in self.allowed[rec.ssid]
            aps.record_ap(bssid, ssid, rec.channel, rec.security, rec.ts, approved=listed)
        return found

    def _resembles(self, ssid: str) -> str | None:
        folded = normalized(ssid)
        if not folded:
            return None
        for corporate_folded, corporate in self.folded.items():
            if folded == corporate_folded or corporate_folded in folded or (
                    len(corporate_folded) >= 5 and _within_one_edit(folded, corporate_folded)):
                return corporate
        return None

    def deauth(self, rec: Deauth, raw: bytes) -> list[Finding]:
        """A deauthentication or disassociation frame: counted per BSSID against its usual rate."""
        s = self.settings
        flood = self.floods.get(rec.bssid)
        if flood is None:
            flood = _Flood(window_start=rec.ts)
            self.floods.put(rec.bssid, flood)
        else:
            self.floods.touch(rec.bssid)
        elapsed = rec.ts - flood.window_start
        if elapsed >= s.deauth_window_s:  # close the window(s): fold the rate into the baseline
            windows = int(elapsed // s.deauth_window_s)
            if not flood.reported:  # a flood never becomes the usual rate
                flood.baseline += BASELINE_WEIGHT * (flood.count / s.deauth_window_s - flood.baseline)
            flood.baseline *= (1 - BASELINE_WEIGHT) ** (windows - 1)
            flood.window_start += windows * s.deauth_window_s
            flood.count = flood.broadcast = 0
            flood.reported = False
            flood.frames.clear()
        flood.count += 1
        flood.broadcast += rec.dst == BROADCAST_MAC
        flood.frames.append((rec.ts, raw))
        if flood.reported or flood.count < s.deauth_min_frames:
            return []
        if flood.count / s.deauth_window_s < s.deauth_factor * flood.baseline:
            return []
        flood.reported = True
        bssid = mac_text(rec.bssid)
        return [Finding("deauth_flood_seen", rec.ts, f"deauth:{bssid}", "BCASTDISCON" if flood.broadcast else
                        "DEAUTHFLOOD", {"bssid": bssid, "frames": flood.count, "window_s": s.deauth_window_s,
                                        "baseline_per_s": round(flood.baseline, 3),
                                        "broadcast": flood.broadcast > 0}, tuple(flood.frames))]
