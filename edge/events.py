"""Typed facts: the envelope every message carries, each fact kind, and the one union consumers parse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from edge.ids import new_id
from edge.topics import NAME_PATTERN

SCHEMA_VERSION = 1

Name = Annotated[str, Field(pattern=NAME_PATTERN, description="Lower-case id: letters, digits, _ . -")]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as err:  # 0001-01-01T00:00+01:00 has no UTC time; pydantic reports only ValueErrors
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from err


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class Event(BaseModel):
    """The envelope of every fact: who said what, where and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(default_factory=new_id, description="Time-sortable unique id (UUIDv7).")
    occurred_at: UtcDatetime = Field(default_factory=utcnow, description="When it happened, in UTC.")
    site: Name = Field(description="Site id of the box that saw it.")
    source: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.-]*/[a-z0-9][a-z0-9_.-]*$",
        description="`service/device` that produced the fact.",
    )
    v: Literal[1] = Field(default=SCHEMA_VERSION, description="Schema version of the envelope and body.")

    @property
    def service(self) -> str:
        """The service half of `source`."""
        return self.source.split("/", 1)[0]

    @property
    def device(self) -> str:
        """The device half of `source`."""
        return self.source.split("/", 1)[1]


class DoorOpened(Event):
    """A door's contact reported it open."""

    kind: Literal["door_opened"] = "door_opened"
    door: Name = Field(description="Door id from the site config.")


class DoorClosed(Event):
    """A door's contact reported it closed."""

    kind: Literal["door_closed"] = "door_closed"
    door: Name = Field(description="Door id from the site config.")


class AccessGranted(Event):
    """A credential was accepted at a door and the lock released."""

    kind: Literal["access_granted"] = "access_granted"
    door: Name = Field(description="Door id from the site config.")
    credential: str = Field(description="Masked credential, e.g. `26bit:12/****5`; never the full number.")
    cardholder: str | None = Field(default=None, description="Cardholder name or id, when known.")
    allowed_entries: int = Field(default=1, ge=1, description="How many people this grant lets in.")


class AccessDenied(Event):
    """A credential was refused at a door."""

    kind: Literal["access_denied"] = "access_denied"
    door: Name = Field(description="Door id from the site config.")
    credential: str = Field(description="Masked credential; never the full number.")
    reason: str = Field(description="Why it was refused, e.g. `unknown_card`, `outside_schedule`.")


class ExitRequested(Event):
    """Someone pressed the request-to-exit button (or a motion sensor fired) on the inside of a door."""

    kind: Literal["exit_requested"] = "exit_requested"
    door: Name = Field(description="Door id from the site config.")


class BadgeSwiped(Event):
    """A reader read a credential (decoded or not); the decision follows as AccessGranted or AccessDenied."""

    kind: Literal["badge_swiped"] = "badge_swiped"
    door: Name = Field(description="Door id from the site config.")
    reader: str = Field(description="Reader id, e.g. `controller-1/0` or `osdp-bus-1/reader-2`.")
    credential: str = Field(description="Masked credential, e.g. `H10301:12/****5`, or `raw:30bit` when unreadable.")
    card_format: str | None = Field(default=None, description="Decoded card format, None when it did not decode.")
    read_error: str | None = Field(default=None, description="`parity_error` or `unknown_length` when the bits did "
                                   "not decode: noise on the wire, a foreign card, or tampering.")


class KeypadEntered(Event):
    """Keys were pressed on a reader's keypad (the keys themselves are never published)."""

    kind: Literal["keypad_entered"] = "keypad_entered"
    door: Name = Field(description="Door id from the site config.")
    reader: str = Field(description="Reader id.")
    keys: int = Field(ge=0, description="How many keys were pressed.")


class TamperDetected(Event):
    """A reader's or controller's tamper switch opened (cover off, device pulled from the wall)."""

    kind: Literal["tamper_detected"] = "tamper_detected"
    device_id: str = Field(description="Device id, unique on the site (e.g. `badge/controller-1`).")
    door: Name | None = Field(default=None, description="Door the device serves, when it serves one.")


class TamperCleared(Event):
    """A tamper switch closed again."""

    kind: Literal["tamper_cleared"] = "tamper_cleared"
    device_id: str = Field(description="Device id, unique on the site.")
    door: Name | None = Field(default=None, description="Door the device serves, when it serves one.")


class PowerFailed(Event):
    """A device reports it lost mains power (running on battery, or about to go dark)."""

    kind: Literal["power_failed"] = "power_failed"
    device_id: str = Field(description="Device id, unique on the site.")


class PowerRestored(Event):
    """A device reports mains power back."""

    kind: Literal["power_restored"] = "power_restored"
    device_id: str = Field(description="Device id, unique on the site.")


VisitId = Annotated[str, Field(pattern=r"^[0-9a-f-]{36}$", description="The kiosk's visit id (UUIDv7).")]


class VisitorArrived(Event):
    """A visitor finished check-in at the kiosk (or reception checked them in); their host is being told.

    No personal data travels in facts: the host's notice e-mail and the reception console carry the name.
    """

    kind: Literal["visitor_arrived"] = "visitor_arrived"
    visit_id: VisitId
    host_id: Name = Field(description="Host id from the site's host directory.")
    pre_registered: bool = Field(default=False, description="The visit was expected (an invite was used).")
    checked_in_by: Literal["kiosk", "reception"] = Field(default="kiosk", description="Who completed check-in.")


class VisitorCheckedOut(Event):
    """A visit ended: checked out at the kiosk, by reception, or automatically at the end of the day."""

    kind: Literal["visitor_checked_out"] = "visitor_checked_out"
    visit_id: VisitId
    host_id: Name = Field(description="Host id from the site's host directory.")
    checked_out_by: Literal["kiosk", "reception", "end_of_day"] = Field(description="How the visit ended.")


class VisitorOverstayed(Event):
    """A visitor is still on site past the visit's expected end (plus the site's grace)."""

    kind: Literal["visitor_overstayed"] = "visitor_overstayed"
    visit_id: VisitId
    host_id: Name = Field(description="Host id from the site's host directory.")
    expected_end: UtcDatetime = Field(description="When the visit was expected to end, in UTC.")


class WatchlistMatched(Event):
    """A check-in matched the site's watch/deny list and is held for reception; the visitor is not told why."""

    kind: Literal["watchlist_matched"] = "watchlist_matched"
    visit_id: VisitId
    entry: str = Field(description="Reference of the matching watchlist entry (its line number), never the name.")


class WatchlistHoldDecided(Event):
    """Reception decided on a check-in held by the watchlist: let the visitor in, or turned them away."""

    kind: Literal["watchlist_hold_decided"] = "watchlist_hold_decided"
    visit_id: VisitId
    decision: Literal["admitted", "refused"] = Field(description="What reception decided.")
    decided_by: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$",
                            description="User id of the staff account that decided (never the visitor's name).")


class PersonEntered(Event):
    """A camera saw a person cross a door line from outside to inside."""

    kind: Literal["person_entered"] = "person_entered"
    door: Name = Field(description="Door id from the site config.")
    camera: str = Field(description="Camera id, unique on the site (e.g. `cam-lobby`).")
    track_id: int = Field(ge=0, description="The tracker's id for this person on this camera (not an identity).")
    snapshot: str | None = Field(default=None, description="JPEG of the crossing with boxes and track ids, as a "
                                 "path under the data directory; None when snapshots are off.")


class PersonExited(Event):
    """A camera saw a person cross a door line from inside to outside."""

    kind: Literal["person_exited"] = "person_exited"
    door: Name = Field(description="Door id from the site config.")
    camera: str = Field(description="Camera id, unique on the site.")
    track_id: int = Field(ge=0, description="The tracker's id for this person on this camera (not an identity).")


DeviceType = Literal["service", "reader", "camera", "sensor", "controller", "radio", "interface"]


class DeviceWentOffline(Event):
    """A service, reader, camera or sensor stopped answering."""

    kind: Literal["device_went_offline"] = "device_went_offline"
    device_id: str = Field(description="Device id, unique on the site (e.g. `badge/reader-1`).")
    device_type: DeviceType = Field(description="What kind of device it is.")
    reason: str = Field(default="", description="What was seen, e.g. `no poll reply`, `will message`.")
    ended: bool = Field(default=False, description="The source came to its planned end (a video file played "
                        "once, not looping): a state to show, not a fault, so no offline alert.")


class DeviceCameOnline(Event):
    """A service, reader, camera or sensor answers again."""

    kind: Literal["device_came_online"] = "device_came_online"
    device_id: str = Field(description="Device id, unique on the site (e.g. `badge/reader-1`).")
    device_type: DeviceType = Field(description="What kind of device it is.")


class HeartbeatSent(Event):
    """A device says it is alive; a device that sends heartbeats and then falls silent is offline."""

    kind: Literal["heartbeat_sent"] = "heartbeat_sent"
    device_id: str = Field(description="Device id, unique on the site (e.g. `vision/cam-lobby`).")
    device_type: DeviceType = Field(description="What kind of device it is.")
    interval_s: float = Field(gt=0, description="Seconds until the next heartbeat.")


class NetworkFinding(Event):
    """Base of what netmon reports: where it was seen, the packets behind it, and their evidence."""

    interface: str = Field(description="Capture source: an interface name, or `replay:<file>`.")
    signature: str = Field(description="Kismet-style name of what was matched, e.g. `APSPOOF`, `DEAUTHFLOOD`.")
    packets: list[str] = Field(default=[], max_length=16, description="One-line summaries of the triggering "
                               "packets (headers only).")
    evidence: str | None = Field(default=None, description="pcap snippet (payloads cut to the headers), as a path "
                                 "under the data directory.")


class RogueAccessPointSeen(NetworkFinding):
    """A corporate SSID from a BSSID not on its list, on an unexpected channel or with weaker security."""

    kind: Literal["rogue_access_point_seen"] = "rogue_access_point_seen"
    ssid: str = Field(description="The SSID it broadcast.")
    bssid: str = Field(description="Its BSSID.")
    channel: int = Field(ge=0, description="Channel it was heard on (0: unknown).")
    security: str = Field(description="Security it offered (open, wep, wpa, wpa2, wpa2/wpa3, wpa3, ...).")
    reasons: list[str] = Field(min_length=1, description="Why it is rogue: unknown bssid, channel, weaker security.")


class LookalikeSsidSeen(NetworkFinding):
    """An SSID that imitates a corporate name (homoglyphs, one edit away, the name inside another)."""

    kind: Literal["lookalike_ssid_seen"] = "lookalike_ssid_seen"
    ssid: str = Field(description="The look-alike SSID.")
    bssid: str = Field(description="Its BSSID.")
    resembles: str = Field(description="The corporate SSID it resembles.")


class DeauthFloodSeen(NetworkFinding):
    """Deauthentication/disassociation frames for one BSSID far above its usual rate."""

    kind: Literal["deauth_flood_seen"] = "deauth_flood_seen"
    bssid: str = Field(description="BSSID the frames name.")
    frames: int = Field(ge=1, description="Frames in the window.")
    window_s: float = Field(gt=0, description="Window length in seconds.")
    baseline_per_s: float = Field(ge=0, description="The BSSID's usual rate before the flood, frames per second.")
    broadcast: bool = Field(description="Some frames went to the broadcast address (every client at once).")


class AttackToolSeen(NetworkFinding):
    """A known attack tool's fingerprint (e.g. a pwnagotchi's beacon)."""

    kind: Literal["attack_tool_seen"] = "attack_tool_seen"
    tool: str = Field(description="Which tool.")
    mac: str = Field(description="MAC address it used.")


class StationSeen(NetworkFinding):
    """A MAC address seen on the LAN for the first time (not in the inventory)."""

    kind: Literal["station_seen"] = "station_seen"
    mac: str = Field(description="The station's MAC address.")
    vendor: str | None = Field(default=None, description="Vendor from the MAC's OUI, when registered.")
    ip: str | None = Field(default=None, description="IPv4 address it used, when seen.")
    learning: bool = Field(description="Seen in learning mode: recorded as known, not reported.")


class ArpSpoofingSeen(NetworkFinding):
    """An IP whose MAC keeps changing, a protected IP claimed by another MAC, or a gratuitous ARP storm."""

    kind: Literal["arp_spoofing_seen"] = "arp_spoofing_seen"
    ip: str | None = Field(default=None, description="The contested IPv4 address (none for a storm).")
    macs: list[str] = Field(min_length=1, description="The MACs involved, newest last.")
    reason: str = Field(description="flip-flop, protected address, or gratuitous storm.")


class RogueDhcpServerSeen(NetworkFinding):
    """A DHCP offer or ack from a server not on the site's list."""

    kind: Literal["rogue_dhcp_server_seen"] = "rogue_dhcp_server_seen"
    server_ip: str = Field(description="The server's address (its server identifier option, else the source).")
    server_mac: str = Field(description="The MAC it sent from.")
    offered_ip: str = Field(description="The address it offered.")


class VpnBypassSeen(NetworkFinding):
    """An agent machine talking to the internet outside an approved tunnel."""

    kind: Literal["vpn_bypass_seen"] = "vpn_bypass_seen"
    agent_ip: str = Field(description="The agent machine's address.")
    destination: str = Field(description="Internet address it reached, `ip:port/proto`.")


class PersonalVpnSeen(NetworkFinding):
    """A VPN tunnel (recognised by its packets) from an agent machine to an endpoint that is not approved."""

    kind: Literal["personal_vpn_seen"] = "personal_vpn_seen"
    agent_ip: str = Field(description="The agent machine's address.")
    endpoint: str = Field(description="Tunnel endpoint, `ip:port/proto`.")
    protocol: str = Field(description="wireguard, openvpn, ike or esp.")


class VpnTunnelWentDown(NetworkFinding):
    """An approved tunnel fell silent."""

    kind: Literal["vpn_tunnel_went_down"] = "vpn_tunnel_went_down"
    agent_ip: str = Field(description="The agent machine's address.")
    concentrator: str = Field(description="The concentrator's address.")
    silent_s: float = Field(ge=0, description="Seconds since its last packet.")


class VpnTunnelCameUp(NetworkFinding):
    """An approved tunnel that was down carries packets again."""

    kind: Literal["vpn_tunnel_came_up"] = "vpn_tunnel_came_up"
    agent_ip: str = Field(description="The agent machine's address.")
    concentrator: str = Field(description="The concentrator's address.")


FACT_TYPES: tuple[type[Event], ...] = (
    DoorOpened,
    DoorClosed,
    AccessGranted,
    AccessDenied,
    ExitRequested,
    DeviceWentOffline,
    DeviceCameOnline,
    HeartbeatSent,
    BadgeSwiped,
    KeypadEntered,
    TamperDetected,
    TamperCleared,
    PowerFailed,
    PowerRestored,
    VisitorArrived,
    VisitorCheckedOut,
    VisitorOverstayed,
    WatchlistMatched,
    WatchlistHoldDecided,
    PersonEntered,
    PersonExited,
    RogueAccessPointSeen,
    LookalikeSsidSeen,
    DeauthFloodSeen,
    AttackToolSeen,
    StationSeen,
    ArpSpoofingSeen,
    RogueDhcpServerSeen,
    VpnBypassSeen,
    PersonalVpnSeen,
    VpnTunnelWentDown,
    VpnTunnelCameUp,
)

Fact = Annotated[
    DoorOpened
    | DoorClosed
    | AccessGranted
    | AccessDenied
    | ExitRequested
    | DeviceWentOffline
    | DeviceCameOnline
    | HeartbeatSent
    | BadgeSwiped
    | KeypadEntered
    | TamperDetected
    | TamperCleared
    | PowerFailed
    | PowerRestored
    | VisitorArrived
    | VisitorCheckedOut
    | VisitorOverstayed
    | WatchlistMatched
    | WatchlistHoldDecided
    | PersonEntered
    | PersonExited
    | RogueAccessPointSeen
    | LookalikeSsidSeen
    | DeauthFloodSeen
    | AttackToolSeen
    | StationSeen
    | ArpSpoofingSeen
    | RogueDhcpServerSeen
    | VpnBypassSeen
    | PersonalVpnSeen
    | VpnTunnelWentDown
    | VpnTunnelCameUp,
    Field(discriminator="kind"),
]
FACT_ADAPTER: TypeAdapter[Fact] = TypeAdapter(Fact)
FACT_KINDS: frozenset[str] = frozenset(t.model_fields["kind"].default for t in FACT_TYPES)


class PayloadError(ValueError):
    """A message body that is not a fact we can read; `reason` is a short stable label for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class UnknownKind(PayloadError):
    """A well-formed message of a kind this version does not know (counted, not fatal)."""


MAX_PAYLOAD_BYTES = 256 * 1024


def parse_fact(payload: bytes) -> Event:
    """Parse one message body into its fact model, or raise PayloadError saying why not.

    Whatever JSON arrives, the answer is a fact or a PayloadError: a `kind` that is not a string (list, object,
    number, null, bool, or none at all) is `bad_schema`, a string kind this version does not know is
    `unknown_kind`, and a string the fact could never be stored or sent with (a lone UTF-16 surrogate) is
    `bad_schema` too.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"{len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError("not_utf8", str(err)) from err
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as err:  # also: nesting too deep, integers too long to convert
        raise PayloadError("not_json", f"{type(err).__name__}: {str(err)[:200]}") from err
    if not isinstance(data, dict):
        raise PayloadError("not_object", f"top level is {type(data).__name__}")
    if "kind" not in data:
        raise PayloadError("bad_schema", "no kind")
    kind = data["kind"]
    if not isinstance(kind, str):
        raise PayloadError("bad_schema", f"kind is a JSON {_json_type(kind)}, not a string")
    if kind not in FACT_KINDS:
        raise UnknownKind("unknown_kind", f"kind {kind[:64]!r}")
    if "\\u" in text and _has_lone_surrogate(data):  # only an escape can make one; valid UTF-8 cannot
        raise PayloadError("bad_schema", f"{kind}: a string holds a lone UTF-16 surrogate (not valid Unicode)")
    try:
        return FACT_ADAPTER.validate_python(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PayloadError("bad_schema", f"{kind}: {where}: {first['msg']} ({err.error_count()} errors)") from err


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), type(value).__name__)


def _has_lone_surrogate(data: Any) -> bool:
    """True if any key or string in parsed JSON holds an unpaired surrogate (`"\\ud800"`), which no UTF-8
    encoder, sqlite text or pydantic serializer accepts. Walked without recursion: nesting is the sender's."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def dump_event(event: BaseModel) -> bytes:
    """Serialize an event or alert message for the wire."""
    return event.model_dump_json().encode()


def schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every fact kind, keyed by kind."""
    return {t.model_fields["kind"].default: t.model_json_schema() for t in FACT_TYPES}
