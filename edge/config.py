"""The one settings tree: a YAML file, overridden by SITEWARDEN_<SECTION>__<KEY> environment variables."""

from __future__ import annotations

import ipaddress
import os
import ssl
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from edge.card_formats import CardFormatName, canonical_format
from edge.config_base import DoorId, ExistingFile, SecretFile, Section, _readable_file, empty_takes_default, read_secret
from edge.config_netmon import NetmonSettings
from edge.config_vision import VisionSettings
from edge.topics import NAME_PATTERN

ENV_PREFIX = "SITEWARDEN_"
CONFIG_ENV = "SITEWARDEN_CONFIG"
# Values under these keys are never echoed back in an error message.
_SECRET_KEYS = frozenset({"password", "secret", "token"})
# What `sitewarden config example` writes for the site id: no site has it, and `config check` refuses it.
SITE_ID_PLACEHOLDER = "CHANGE-ME"


class TlsSettings(Section):
    """TLS for a broker connection."""

    ca_file: ExistingFile | None = Field(default=None, description="CA bundle that signed the broker's certificate; "
                                         "the system store when unset.")
    cert_file: ExistingFile | None = Field(default=None, description="Client certificate (PEM), for mutual TLS.")
    key_file: SecretFile | None = Field(default=None, description="Client private key (PEM), for mutual TLS.")
    insecure_skip_verify: bool = Field(default=False, description="Skip the broker hostname check. Test rigs only.")

    @field_validator("ca_file")
    @classmethod
    def _ca_loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (ssl.SSLError, ValueError) as err:
                raise ValueError(f"{str(value)!r} is not a PEM CA bundle: {err}") from err
        return value

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        if self.cert_file is not None and self.key_file is not None:
            try:
                ssl.create_default_context().load_cert_chain(str(self.cert_file), str(self.key_file))
            except (ssl.SSLError, ValueError) as err:
                raise ValueError(f"cert_file and key_file do not load as a PEM pair: {err}") from err
        return self


class BrokerSettings(Section):
    """Where an MQTT broker is and how to log in to it."""

    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port (8883 is usual for TLS).")
    username: str | None = Field(default=None, description="User name, when the broker wants one.")
    password_file: SecretFile | None = Field(default=None, description="File holding the password (never inline).")
    password: None = Field(default=None, exclude=True, description="Refused: secrets live in files, see password_file.")
    tls: TlsSettings | None = Field(default=None, description="TLS settings; plain TCP when unset.")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    reconnect_max_delay_s: int = Field(default=30, ge=1, le=3600, description="Longest wait between reconnect "
                                       "tries, in whole seconds.")

    @model_validator(mode="after")
    def _password_needs_user(self) -> BrokerSettings:
        if self.password_file is not None and not self.username:
            raise ValueError("password_file is set but username is not: the broker would never see the password")
        return self

    @field_validator("password", mode="before")
    @classmethod
    def _refuse_inline_password(cls, value: Any) -> None:
        if value is not None:
            raise ValueError("inline secret refused: put the password in a file and set password_file")
        return None


class SiteSettings(Section):
    """Which site this box guards."""

    id: str = Field(pattern=NAME_PATTERN, description="Short site id used in every topic, e.g. `ams-office`.",
                    examples=[SITE_ID_PLACEHOLDER])
    name: str = Field(default="", description="Human name of the site, shown in alerts.")
    timezone: str = Field(default="UTC", description="IANA time zone of the site, e.g. `Europe/Amsterdam`.")

    @field_validator("id", mode="before")
    @classmethod
    def _not_the_placeholder(cls, value: Any) -> Any:
        if value == SITE_ID_PLACEHOLDER:
            raise PydanticCustomError("placeholder", "replace the example's placeholder with this site's id, e.g. "
                                      "ams-office")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value


class DoorOverride(Section):
    """Per-door values that differ from the rule defaults."""

    max_open_s: float | None = Field(default=None, gt=0, description="Held-open limit for this door.")
    grant_window_s: float | None = Field(default=None, gt=0, description="Grant/exit window for this door.")


class RulesSettings(Section):
    """Tuning of the edge's alert rules."""

    grant_window_s: float = Field(default=10.0, gt=0, description="A door opening is authorized by a grant or a "
                                  "request-to-exit at most this many seconds before it.")
    late_grant_grace_s: float = Field(default=1.0, ge=0, description="How long to wait for a grant that is "
                                      "reported just after the door opened, before calling it forced.")
    max_open_s: float = Field(default=30.0, gt=0, description="A door open longer than this is held open.")
    silent_after_s: float = Field(default=60.0, gt=0, description="A device that sends heartbeats and then is "
                                  "silent this long is offline.")
    suppression_window_s: float = Field(default=300.0, ge=0, description="Repeats of an alert with the same "
                                        "dedupe key within this window fold into the open alert.")
    replay_window_s: float = Field(default=86400.0, ge=0, description="On start, rules rebuild their state from "
                                   "the facts stored in this many past seconds.")
    denied_burst_count: int = Field(default=5, ge=2, description="This many denied swipes at one door within "
                                    "`denied_burst_window_s` raise `denied_swipes`.")
    denied_burst_window_s: float = Field(default=60.0, gt=0, description="Window of the denied-swipes rule.")
    tailgate_window_s: float = Field(default=10.0, gt=0, description="A grant lets its people in (its "
                                     "`allowed_entries`, 1 unless the badge service says more) within this many "
                                     "seconds of the grant or of the door opening after it; an entry beyond "
                                     "that is tailgating.")
    entry_grace_s: float = Field(default=0.3, ge=0, description="How long an entry with no grant waits for a grant "
                                 "or exit request reported late, before it is an unauthorized entry.")
    doors: dict[str, DoorOverride] = Field(default_factory=dict, description="Per-door overrides, by door id.")

    def max_open_for(self, door: str) -> float:
        """Held-open limit for one door."""
        override = self.doors.get(door)
        return override.max_open_s if override and override.max_open_s else self.max_open_s

    def grant_window_for(self, door: str) -> float:
        """Grant window for one door."""
        override = self.doors.get(door)
        return override.grant_window_s if override and override.grant_window_s else self.grant_window_s


class ForwarderSettings(Section):
    """Sending alerts to the central console's broker."""

    enabled: bool = Field(default=True, description="Forward alerts to the central console.")
    broker: BrokerSettings = Field(default_factory=BrokerSettings, description="The central console's broker.")
    ack_timeout_s: float = Field(default=15.0, gt=0, description="Send again what the console has not confirmed "
                                 "in this many seconds.")
    max_in_flight: int = Field(default=1000, ge=1, le=65000, description="Messages sent and not yet confirmed.")
    outbox_max_rows: int = Field(default=200_000, ge=10, description="Outbox bound; when full the oldest "
                                 "lowest-severity alerts are evicted, with a log line, a counter and an alert.")


class EdgeSettings(Section):
    """The edge service: rules, alert store, forwarder."""

    rules: RulesSettings = Field(default_factory=RulesSettings, description="Alert rule tuning.")
    forwarder: ForwarderSettings = Field(default_factory=ForwarderSettings, description="Alert forwarding.")
    fact_retention_days: float = Field(default=30.0, gt=0, description="Stored facts are kept this many days.")
    stats_interval_s: float = Field(default=10.0, gt=0, description="How often counters are published.")


class ConsoleSettings(Section):
    """The central console receiver (runs centrally, not on the box)."""

    broker: BrokerSettings = Field(default_factory=BrokerSettings, description="The central broker to listen on.")
    client_id: str = Field(default="sitewarden-console", description="MQTT client id; the broker keeps this "
                           "session's queue while the console restarts.")


def _canonical_format(value: object) -> object:
    return canonical_format(value) if isinstance(value, str | int) else value


# Aliases (`C1K35`, `26-bit`, ...) are accepted and stored under the canonical name.
WiegandFormatName = Annotated[CardFormatName, BeforeValidator(_canonical_format)]
DEFAULT_FORMATS: tuple[WiegandFormatName, ...] = ("H10301",)


def _osdp_key(path: Path) -> Path:
    text = read_secret(_readable_file(path)).strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 16:
        raise ValueError(f"file {str(path)!r} must hold a 16-byte Secure Channel key as 32 hex digits")
    return path


OsdpKeyFile = Annotated[Path, AfterValidator(_osdp_key)]


class DoorWiring(Section):
    """One door on a microcontroller: which reader port, inputs and relay are its own."""

    reader: int = Field(default=0, ge=0, le=255, description="Wiegand reader port on the controller.")
    formats: list[WiegandFormatName] = Field(default=list(DEFAULT_FORMATS), min_length=1, description="Card "
                                             "formats this reader's cards use, tried in order for each bit length.")
    contact: int | None = Field(default=0, ge=0, le=255, description="Door contact input index; null when the "
                                "door has no contact (then forced and held doors cannot be seen).")
    rex: int | None = Field(default=None, ge=0, le=255, description="Request-to-exit input index, if wired.")
    relay: int = Field(default=0, ge=0, le=255, description="Lock relay output index.")
    unlock_ms: int = Field(default=5000, ge=100, le=60000, description="How long a grant releases the lock.")


class ControllerSettings(Section):
    """A Wiegand door controller (microcontroller) on USB serial, speaking firmware_bridge/PROTOCOL.md."""

    port: str = Field(description="Serial device; prefer the stable /dev/serial/by-id/... name.")
    baudrate: int = Field(default=115200, ge=1200, description="Serial speed (ignored by USB CDC adapters).")
    silence_timeout_s: float = Field(default=3.0, gt=0, description="The link is down after this long without "
                                     "a valid frame (the controller sends a heartbeat every second).")
    tamper_input: int | None = Field(default=0, ge=0, le=255, description="Tamper input index, if wired.")
    doors: dict[DoorId, DoorWiring] = Field(min_length=1, description="Doors this controller drives, by door id.")


class OsdpReaderSettings(Section):
    """One OSDP reader on a bus."""

    address: int = Field(ge=0, le=126, description="OSDP address of the reader (0-126).")
    door: DoorId = Field(description="Door id the reader guards.")
    key_file: OsdpKeyFile = Field(description="File holding this reader's Secure Channel key (32 hex digits).")
    enforce_secure: bool = Field(default=True, description="Must stay true: libosdp without EnforceSecure lets a "
                                 "reader with the wrong key fall back to plaintext without a word.")
    formats: list[WiegandFormatName] = Field(default=list(DEFAULT_FORMATS), min_length=1,
                                             description="Card formats for Wiegand-style card data.")
    unlock_output: int | None = Field(default=0, ge=0, le=255, description="Reader output that drives the lock; "
                                      "null when the lock is wired elsewhere.")
    unlock_ms: int = Field(default=5000, ge=100, le=60000, description="How long a grant releases the lock.")
    contact_input: int | None = Field(default=None, ge=0, le=255, description="Reader input (0-based, as in its "
                                      "input status report) wired to the door contact; null when there is none "
                                      "(then forced and held doors cannot be seen).")
    rex_input: int | None = Field(default=None, ge=0, le=255, description="Reader input wired to the "
                                  "request-to-exit button, if any.")

    @field_validator("rex_input")
    @classmethod
    def _rex_not_contact(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value == info.data.get("contact_input"):
            raise ValueError(f"input {value} is already the door contact (contact_input)")
        return value

    @field_validator("enforce_secure")
    @classmethod
    def _must_enforce(cls, value: bool) -> bool:
        if not value:
            raise ValueError("refused: without Secure Channel enforced a reader with the wrong key silently falls "
                             "back to plaintext; provision a key with `sitewarden badge osdp-provision` instead")
        return value


class OsdpBusSettings(Section):
    """An RS-485 bus of OSDP readers behind one serial adapter."""

    port: str = Field(description="Serial device of the RS-485 adapter.")
    baudrate: int = Field(default=9600, description="Bus speed; every reader on the bus must match.")
    recover_min_s: float = Field(default=1.0, gt=0, description="A reader that drops offline is reset after this "
                                 "long (libosdp alone would wait 300 s after one bad frame).")
    recover_max_s: float = Field(default=30.0, gt=0, description="Longest wait between resets of a reader that "
                                 "stays offline (the wait doubles each time).")
    readers: dict[DoorId, OsdpReaderSettings] = Field(min_length=1, description="Readers on the bus, by reader id.")

    @model_validator(mode="after")
    def _unique_addresses(self) -> OsdpBusSettings:
        seen: dict[int, str] = {}
        for name, reader in self.readers.items():
            if reader.address in seen:
                raise ValueError(f"readers {seen[reader.address]!r} and {name!r} share address {reader.address}")
            seen[reader.address] = name
        return self


class BadgeSettings(Section):
    """The badge service: door controllers, OSDP buses, local access decisions."""

    controllers: dict[DoorId, ControllerSettings] = Field(default_factory=dict, description="Wiegand door "
                                                          "controllers on USB serial, by controller id.")
    osdp: dict[DoorId, OsdpBusSettings] = Field(default_factory=dict, description="OSDP buses, by bus id.")
    grant_feedback_ms: int = Field(default=2000, ge=0, le=60000, description="How long the reader LED shows green "
                                   "(grant) or red (deny).")

    @model_validator(mode="after")
    def _one_reader_per_door(self) -> BadgeSettings:
        owners: dict[str, str] = {}
        for cid, controller in self.controllers.items():
            for door in controller.doors:
                if door in owners:
                    raise ValueError(f"door {door!r} is on both {owners[door]} and controllers.{cid}")
                owners[door] = f"controllers.{cid}"
        for bid, bus in self.osdp.items():
            for rid, reader in bus.readers.items():
                where = f"osdp.{bid}.readers.{rid}"
                if reader.door in owners:
                    raise ValueError(f"door {reader.door!r} is on both {owners[reader.door]} and {where} "
                                     "(one reader per door: its contact and lock would be driven twice)")
                owners[reader.door] = where
        return self


Language = Literal["nl", "en"]
HostId = Annotated[str, Field(pattern=NAME_PATTERN)]


def _clock_time(value: str) -> str:
    try:
        hours, minutes = value.split(":")
        if not (0 <= int(hours) <= 23 and 0 <= int(minutes) <= 59 and len(minutes) == 2):
            raise ValueError
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day as HH:MM") from None
    return value


ClockTime = Annotated[str, AfterValidator(_clock_time)]


class HostEntry(Section):
    """One person visitors can come for."""

    name: str = Field(min_length=1, max_length=120, description="Name as visitors would type it.")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$", description="Where the arrival "
                              "notice goes (needs `kiosk.smtp`).")
    department: str = Field(default="", max_length=120, description="Shown beside the name in the directory.")


class HouseRules(Section):
    """The house rules / NDA a visitor signs: versioned, one text per language."""

    version: str = Field(min_length=1, max_length=40, description="Change this when the text changes: everyone "
                         "signs again.")
    text: dict[Language, str] = Field(description="The text, per language (`nl` and `en`).")
    valid_days: int = Field(default=365, ge=1, le=3650, description="A returning visitor signs again after this "
                            "many days, even when the version did not change.")

    @model_validator(mode="after")
    def _both_languages(self) -> HouseRules:
        missing = {"nl", "en"} - set(self.text)
        if missing:
            raise ValueError(f"text is missing language(s) {', '.join(sorted(missing))}")
        return self


class SmtpSettings(Section):
    """The site's mail server, for telling hosts their visitor arrived."""

    host: str = Field(description="SMTP server host name or address.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS before logging in.")
    username: str | None = Field(default=None, description="Login name, when the server wants one.")
    password_file: SecretFile | None = Field(default=None, description="File holding the SMTP password.")
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", description="From address of the notices.")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Give up on one delivery try after this.")


class KioskSettings(Section):
    """The visitor kiosk and the reception console."""

    device_id: str = Field(default="reception", pattern=NAME_PATTERN, description="This kiosk's id in facts.")
    listen_host: str = Field(default="127.0.0.1", description="Address the web server listens on.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port the web server listens on.")
    trusted_proxies: list[str] = Field(default_factory=list, description="Addresses or networks (CIDR) of "
                                       "reverse proxies in front of the kiosk, e.g. [127.0.0.1] for a TLS proxy on "
                                       "this box. Only from these are X-Forwarded-For and X-Forwarded-Proto "
                                       "believed, so sign-in limits count each browser, not the proxy; empty: the "
                                       "headers are ignored.")
    tls_cert_file: ExistingFile | None = Field(default=None, description="Serve HTTPS with this certificate (PEM).")
    tls_key_file: SecretFile | None = Field(default=None, description="Private key of `tls_cert_file`.")
    secure_cookies: bool = Field(default=True, description="Mark cookies Secure (HTTPS only). Browsers also send "
                                 "them to http://localhost, so the demo works; keep this on everywhere else.")
    default_language: Language = Field(default="nl", description="Language a new screen starts in.")
    key_file: Path | None = Field(default=None, description="AES-GCM keyring that encrypts visitor data; "
                                  "`<data_dir>/kiosk.key` when unset. Created (mode 0600) on first start.")
    hosts: dict[HostId, HostEntry] = Field(default_factory=dict, description="The host directory, by host id.")
    house_rules: HouseRules = Field(
        default_factory=lambda: HouseRules(version="1", text={
            "nl": "Draag uw bezoekerspas zichtbaar. Volg de aanwijzingen van uw gastheer of gastvrouw.",
            "en": "Wear your visitor badge where it can be seen. Follow your host's directions."}),
        description="House rules / NDA text and version.")
    watchlist_file: ExistingFile | None = Field(default=None, description="Watch/deny list: one name per line, "
                                                "`#` comments. Re-read when it changes.")
    smtp: SmtpSettings | None = Field(default=None, description="Mail server for host notices; none when unset.")
    visit_hours: float = Field(default=8.0, gt=0, le=24, description="Expected length of a walk-in visit.")
    overstay_grace_min: float = Field(default=30.0, ge=0, description="Minutes past the expected end before a "
                                      "visit counts as overdue.")
    end_of_day: ClockTime = Field(default="20:00", description="Local time at which visitors still on site are "
                                  "checked out automatically.")
    retention_days: int = Field(default=30, ge=1, le=3650, description="Visits older than this are anonymized.")
    badge_valid_hours: float = Field(default=12.0, gt=0, le=24, description="A visit, and the badge printed for "
                                     "it, lasts at most this long after check-in; it also ends at `end_of_day`.")
    checkin_rate_per_min: int = Field(default=30, ge=1, description="Check-ins accepted per minute per client.")
    login_attempts: int = Field(default=5, ge=1, description="Failed staff logins allowed per user and "
                                "address within `login_window_min` (4x per address across users; past 2x per "
                                "user, new addresses are slowed).")
    login_window_min: float = Field(default=15.0, gt=0, description="Window of the login limit, in minutes.")
    staff_session_hours: float = Field(default=8.0, gt=0, le=24, description="A staff login lasts this long.")
    idle_return_s: float = Field(default=60.0, ge=5, le=3600, description="A visitor screen left untouched this "
                                 "long returns to the welcome page (the badge page after twice as long), so "
                                 "nothing of one visitor is shown to the next.")

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/24)") from None
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> KioskSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        return self


class LogSettings(Section):
    """Logging."""

    level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="Log level.")


class Settings(BaseSettings):
    """All of SiteWarden's settings: one section per service."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, case_sensitive=False
    )

    # The examples are what `sitewarden config example` shows (edge/config_example.py). A `disabled_example` is
    # a value for one made-up site, not a default, so it is written commented out (`#~ `): the example copied as
    # is runs on defaults. Only a required key declares `examples`, a placeholder `config check` refuses.
    site: SiteSettings = Field(description="Which site this box guards.", json_schema_extra={"disabled_example": {
        "name": "Amsterdam office", "timezone": "Europe/Amsterdam"}})
    data_dir: Path = Field(default=Path("/var/lib/sitewarden"), description="Databases and evidence live here.")
    mqtt: BrokerSettings = Field(default_factory=BrokerSettings, description="The local broker every service uses.",
                                 json_schema_extra={"disabled_example": {
                                     "username": "edge",
                                     "password_file": "/etc/sitewarden/secrets/mqtt-edge.password"}})
    edge: EdgeSettings = Field(default_factory=EdgeSettings, description="The edge service.", json_schema_extra={
        "disabled_example": {"rules": {"doors": {"loading-dock": {"max_open_s": 300}}}, "forwarder": {"broker": {
            "host": "console.example.internal", "port": 8883, "username": "site-ams-office",
            "password_file": "/etc/sitewarden/secrets/central.password",
            "tls": {"ca_file": "/etc/sitewarden/tls/central-ca.pem"}}}}})
    console: ConsoleSettings = Field(default_factory=ConsoleSettings, description="The central console receiver.")
    badge: BadgeSettings = Field(default_factory=BadgeSettings, description="The badge service (readers, doors).",
                                 json_schema_extra={"disabled_example": {
        "controllers": {"controller-1": {
            "port": "/dev/serial/by-id/usb-Raspberry_Pi_Pico_E6614103E7-if00",
            "doors": {"front": {"reader": 0, "contact": 0, "rex": 0, "relay": 0, "formats": ["H10301"]},
                      "back-office": {"reader": 1, "contact": 1, "relay": 1, "formats": ["H10306", "H10301"]}}}},
        "osdp": {"bus-1": {"port": "/dev/ttyUSB0", "readers": {
            "lobby-in": {"address": 1, "door": "lobby", "key_file": "/etc/sitewarden/osdp/lobby-in.key",
                         "contact_input": 0, "rex_input": 1}}}}}})
    kiosk: KioskSettings = Field(default_factory=KioskSettings, description="The visitor kiosk and reception "
                                 "console.", json_schema_extra={"disabled_example": {
                                     "hosts": {"jdevries": {"name": "Jan de Vries",
                                                            "email": "jan.devries@example.com",
                                                            "department": "Facilities"}},
                                     "tls_cert_file": "/etc/sitewarden/tls/kiosk.pem",
                                     "tls_key_file": "/etc/sitewarden/tls/kiosk.key",
                                     "watchlist_file": "/etc/sitewarden/watchlist.txt",
                                     "smtp": {"host": "smtp.example.internal", "username": "sitewarden",
                                              "password_file": "/etc/sitewarden/secrets/smtp.password",
                                              "sender": "reception@example.com"}}})
    vision: VisionSettings = Field(default_factory=VisionSettings, description="The vision service (cameras, "
                                   "person detection, door-line counts).", json_schema_extra={"disabled_example": {
                                       "cameras": {"cam-front": {
                                           "url": "rtsp://cam-front.example.internal/stream1", "door": "front",
                                           "line": [[0.5, 0.0], [0.5, 1.0]], "inside": [0.8, 0.5]}}}})
    netmon: NetmonSettings = Field(default_factory=NetmonSettings, description="The netmon service (passive "
                                   "capture, Wi-Fi/LAN/VPN detectors, device inventory).", json_schema_extra={
                                       "disabled_example": {
                                       "wifi": {"networks": [{"ssid": "CorpNet", "bssids": ["02:00:00:00:01:01"],
                                                              "channels": [1, 6], "security": "wpa3"}],
                                                "known_ssids": ["Cafe Guest"]},
                                       "lan": {"dhcp_servers": ["10.0.0.1"], "protected_ips": ["10.0.0.1"],
                                               "known_stations": ["02:00:00:00:00:14"]},
                                       "vpn": {"agent_subnets": ["10.20.0.0/16"],
                                               "concentrators": ["198.51.100.10/32"]},
                                       "interface": "eth1", "monitor_interface": "wlan1mon",
                                       "learn_until": "2027-02-01T00:00:00Z",
                                       "evidence_dir": "/var/lib/sitewarden/netmon/evidence",
                                       "replay": [{"path": "/var/lib/sitewarden/drills/site-minute.pcapng",
                                                   "speed": 1.0}]}})
    log: LogSettings = Field(default_factory=LogSettings, description="Logging.")

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        return empty_takes_default(cls, info.field_name or "", value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first, so SITEWARDEN_<SECTION>__<KEY> overrides what the YAML file says.
        return (env_settings, init_settings)


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config: where, what value, and why."""

    path: str
    value: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (got {self.value})"


class ConfigError(Exception):
    """The config cannot be used; `problems` names each key path that is wrong."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


HOW_TO_PASS = ("give it as `sitewarden --config FILE ...` or set SITEWARDEN_CONFIG=FILE (`sitewarden config example` "
               "prints one to start from)")


class ConfigMissing(ConfigError):
    """No config was given at all: no file, no $SITEWARDEN_CONFIG and no SITEWARDEN_* settings."""

    def __init__(self) -> None:
        super().__init__("(no config)", [ConfigProblem("(config)", "(none)", "no config given")])
        self.args = (f"this command needs a config: {HOW_TO_PASS}",)


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if k in _SECRET_KEYS else _mask(v) for k, v in value.items()}
    return value


def _short(value: Any, loc: tuple[Any, ...] = ()) -> str:
    if loc and loc[-1] in _SECRET_KEYS:
        return "'***'"
    text = repr(_mask(value))
    return text if len(text) <= 80 else text[:77] + "..."


def load_settings(path: Path | str | None = None) -> Settings:
    """Load settings from a YAML file (or $SITEWARDEN_CONFIG) plus the environment; ConfigError if wrong."""
    if path is None:
        path = os.environ.get(CONFIG_ENV)
    data: Any = {}
    source = "environment"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(source, [ConfigProblem("(file)", _short(str(path)), err.strerror or str(err))]) from err
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
            raise ConfigError(source, [ConfigProblem(where, "(yaml)", str(getattr(err, "problem", err)))]) from err
        if not isinstance(data, dict):
            raise ConfigError(source, [ConfigProblem("(top level)", _short(data), "expected a mapping of sections")])
    if any(not isinstance(key, str) for key in data):
        bad = [k for k in data if not isinstance(k, str)]
        raise ConfigError(source, [ConfigProblem(f"(top level) {k!r}", _short(k), "keys must be section names")
                                   for k in bad])
    if path is None and not any(key.upper().startswith(ENV_PREFIX) for key in os.environ):
        raise ConfigMissing()
    try:
        return Settings(**data)
    except SettingsError as err:
        # A SITEWARDEN_* variable that pydantic-settings cannot even decode (e.g. bad JSON for a mapping).
        cause = err.__cause__ or err
        raise ConfigError(source, [ConfigProblem("(environment)", "SITEWARDEN_*", f"{err}: {cause}")]) from err
    except ValidationError as err:
        problems = [
            ConfigProblem(".".join(str(p) for p in e["loc"]) or "(top level)", _short(e.get("input"), e["loc"]),
                          e["msg"])
            for e in err.errors()
        ]
        raise ConfigError(source, problems) from err
