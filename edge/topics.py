"""MQTT topic names: every topic SiteWarden uses is built and parsed here, nowhere else."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ROOT = "sitewarden"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
# Second-level segments that are not service names.
RESERVED = frozenset({"alert", "status", "cmd", "console", "config"})


def _check(label: str, value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{label} {value!r} is not a valid topic segment (want {NAME_PATTERN})")
    return value


def fact_topic(site: str, service: str, device: str, kind: str) -> str:
    """`sitewarden/<site>/<service>/<device>/<kind>`: where a service publishes a fact."""
    if service in RESERVED:
        raise ValueError(f"service name {service!r} is reserved")
    return "/".join((ROOT, _check("site", site), _check("service", service), _check("device", device),
                     _check("kind", kind)))


def facts_filter(site: str) -> str:
    """Subscription filter for every fact of a site."""
    return f"{ROOT}/{_check('site', site)}/+/+/+"


def alert_topic(site: str, kind: str) -> str:
    """`sitewarden/<site>/alert/<kind>`: alert lifecycle messages (new, update, end)."""
    return f"{ROOT}/{_check('site', site)}/alert/{_check('kind', kind)}"


def alerts_filter(site: str = "+") -> str:
    """Subscription filter for the alerts of one site, or of every site with the default."""
    return f"{ROOT}/{site}/alert/+"


def status_topic(site: str, service: str) -> str:
    """`sitewarden/<site>/status/<service>`: retained `online`/`offline`, set as the MQTT will."""
    return f"{ROOT}/{_check('site', site)}/status/{_check('service', service)}"


def stats_topic(site: str, service: str) -> str:
    """Retained JSON counters of a service, beside its availability."""
    return status_topic(site, service) + "/stats"


def status_filter(site: str) -> str:
    """Subscription filter for the availability of every service of a site."""
    return f"{ROOT}/{_check('site', site)}/status/+"


def command_topic(site: str, service: str, command: str) -> str:
    """`sitewarden/<site>/cmd/<service>/<command>`: a request to a service."""
    return f"{ROOT}/{_check('site', site)}/cmd/{_check('service', service)}/{_check('command', command)}"


def commands_filter(site: str, service: str) -> str:
    """Subscription filter for every command to one service."""
    return f"{ROOT}/{_check('site', site)}/cmd/{_check('service', service)}/+"


def reply_topic(site: str, service: str, request_id: str) -> str:
    """Where a service answers one command request."""
    return f"{ROOT}/{_check('site', site)}/cmd/{_check('service', service)}/reply/{request_id}"


def config_topic(site: str, service: str, name: str) -> str:
    """`sitewarden/<site>/config/<service>/<name>`: retained configuration data a service follows (e.g. cardholders)."""
    return f"{ROOT}/{_check('site', site)}/config/{_check('service', service)}/{_check('name', name)}"


def console_alerts_topic(site: str) -> str:
    """`sitewarden/<site>/console/alerts`: the forwarder's batches of alert messages for the console."""
    return f"{ROOT}/{_check('site', site)}/console/alerts"


def console_alerts_filter(site: str = "+") -> str:
    """Subscription filter for the forwarded batches of one site, or of every site with the default."""
    return f"{ROOT}/{site}/console/alerts"


def console_ack_topic(site: str) -> str:
    """`sitewarden/<site>/console/ack`: the console confirms stored alert messages to their site."""
    return f"{ROOT}/{_check('site', site)}/console/ack"


TopicKind = Literal["fact", "alert", "status", "stats", "command", "reply", "console_alerts", "console_ack",
                    "config"]


@dataclass(frozen=True)
class Topic:
    """A parsed SiteWarden topic."""

    kind: TopicKind
    site: str
    service: str | None = None
    device: str | None = None
    name: str | None = None


def parse_topic(topic: str) -> Topic | None:
    """Parse a SiteWarden topic; None when it is not one of ours."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != ROOT or not all(_NAME.match(p) for p in parts[1:]):
        return None
    site, second = parts[1], parts[2]
    rest = parts[3:]
    if second == "alert" and len(rest) == 1:
        return Topic("alert", site, name=rest[0])
    if second == "status" and len(rest) == 1:
        return Topic("status", site, service=rest[0])
    if second == "status" and len(rest) == 2 and rest[1] == "stats":
        return Topic("stats", site, service=rest[0])
    if second == "cmd" and len(rest) == 2:
        return Topic("command", site, service=rest[0], name=rest[1])
    if second == "cmd" and len(rest) == 3 and rest[1] == "reply":
        return Topic("reply", site, service=rest[0], name=rest[2])
    if second == "config" and len(rest) == 2:
        return Topic("config", site, service=rest[0], name=rest[1])
    if second == "console" and rest == ["ack"]:
        return Topic("console_ack", site)
    if second == "console" and rest == ["alerts"]:
        return Topic("console_alerts", site)
    if second not in RESERVED and len(rest) == 2:
        return Topic("fact", site, service=second, device=rest[0], name=rest[1])
    return None
