"""Device offline: a service, reader or camera that says it went offline, or that falls silent.

A source that says it ended by design (a video file played once) is no outage and raises nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from edge.alerts import Severity
from edge.config import RulesSettings
from edge.events import DeviceCameOnline, DeviceWentOffline, Event, HeartbeatSent
from edge.rules.base import AlertDraft, Rule, RuleContext

logger = logging.getLogger(__name__)


@dataclass
class _Device:
    device_type: str
    last_seen: datetime
    last_fact_id: str
    interval_s: float = 0.0
    offline_trigger: str | None = None


class DeviceOfflineRule(Rule):
    """Raises device_offline when a device reports offline or misses its heartbeats; online resolves it."""

    name = "device_offline"
    kinds = frozenset({"device_went_offline", "device_came_online", "heartbeat_sent"})

    def __init__(self, settings: RulesSettings) -> None:
        self.settings = settings
        self._devices: dict[str, _Device] = {}

    def on_fact(self, fact: Event, ctx: RuleContext) -> None:
        if isinstance(fact, HeartbeatSent):
            dev = self._seen(fact.device_id, fact.device_type, fact)
            dev.interval_s = fact.interval_s
            self._back(fact.device_id, dev, ctx, "heartbeat resumed")
        elif isinstance(fact, DeviceCameOnline):
            dev = self._seen(fact.device_id, fact.device_type, fact)
            self._back(fact.device_id, dev, ctx, "back online")
        elif isinstance(fact, DeviceWentOffline):
            dev = self._seen(fact.device_id, fact.device_type, fact)
            dev.interval_s = 0.0  # an announced outage is not also a silence
            if fact.ended:  # a video file played to its end: a planned stop, nobody needs to act on it
                logger.info("%s %s ended%s: no offline alert", fact.device_type, fact.device_id,
                            f" ({fact.reason})" if fact.reason else "")
                return
            reason = f": {fact.reason}" if fact.reason else ""
            self._offline(fact.device_id, dev, ctx, fact.event_id, fact.occurred_at,
                          f"{fact.device_type} {fact.device_id} offline{reason}", (fact.event_id,))

    def on_tick(self, now: datetime, ctx: RuleContext) -> None:
        for device_id, dev in self._devices.items():
            if dev.interval_s <= 0 or dev.offline_trigger is not None:
                continue
            silent = (now - dev.last_seen).total_seconds()
            if silent > max(self.settings.silent_after_s, dev.interval_s):
                self._offline(device_id, dev, ctx, f"silent:{dev.last_fact_id}", now,
                              f"{dev.device_type} {device_id} silent for {silent:.0f} s", (dev.last_fact_id,))

    def _seen(self, device_id: str, device_type: str, fact: Event) -> _Device:
        dev = self._devices.get(device_id)
        if dev is None:
            dev = self._devices[device_id] = _Device(device_type, fact.occurred_at, fact.event_id)
        elif fact.occurred_at >= dev.last_seen:
            dev.last_seen, dev.last_fact_id = fact.occurred_at, fact.event_id
        return dev

    def _offline(self, device_id: str, dev: _Device, ctx: RuleContext, trigger: str, at: datetime,
                 title: str, fact_ids: tuple[str, ...]) -> None:
        if dev.offline_trigger is not None:
            return
        dev.offline_trigger = trigger
        ctx.raise_alert(
            AlertDraft(
                kind=self.name,
                severity=Severity.HIGH,
                title=title,
                dedupe_key=f"{self.name}:{device_id}",
                trigger=trigger,
                at=at,
                fact_ids=fact_ids,
                device=device_id,
            )
        )

    def _back(self, device_id: str, dev: _Device, ctx: RuleContext, why: str) -> None:
        if dev.offline_trigger is not None:
            ctx.resolve(self.name, dev.offline_trigger, why)
            dev.offline_trigger = None
