"""Badge rules: a tampered reader or controller, and a burst of denied swipes at one door."""

from __future__ import annotations

from collections import defaultdict, deque
from datetime import timedelta

from edge.alerts import Severity
from edge.config import RulesSettings
from edge.events import AccessDenied, Event, TamperCleared, TamperDetected
from edge.rules.base import AlertDraft, Rule, RuleContext


class TamperRule(Rule):
    """Raises tamper_detected when a tamper switch opens; the switch closing again resolves it."""

    name = "tamper_detected"
    kinds = frozenset({"tamper_detected", "tamper_cleared"})

    def __init__(self, settings: RulesSettings) -> None:
        self._open: dict[str, str] = {}  # device id -> trigger of its open alert

    def on_fact(self, fact: Event, ctx: RuleContext) -> None:
        if isinstance(fact, TamperDetected):
            if fact.device_id in self._open:
                return
            trigger = fact.event_id
            self._open[fact.device_id] = trigger
            where = f" at door {fact.door}" if fact.door else ""
            ctx.raise_alert(AlertDraft(
                kind=self.name, severity=Severity.HIGH, title=f"tamper switch open on {fact.device_id}{where}",
                dedupe_key=f"tamper:{fact.device_id}", trigger=trigger, at=fact.occurred_at,
                fact_ids=(fact.event_id,), door=fact.door, device=fact.device_id,
            ))
        elif isinstance(fact, TamperCleared):
            trigger = self._open.pop(fact.device_id, None)
            if trigger is not None:
                ctx.resolve(self.name, trigger, "tamper switch closed again")


class DeniedBurstRule(Rule):
    """Raises denied_swipes when one door sees `denied_burst_count` denials within the window."""

    name = "denied_swipes"
    kinds = frozenset({"access_denied"})

    def __init__(self, settings: RulesSettings) -> None:
        self.settings = settings
        self._recent: dict[str, deque[AccessDenied]] = defaultdict(deque)

    def on_fact(self, fact: Event, ctx: RuleContext) -> None:
        if not isinstance(fact, AccessDenied):
            return
        window = timedelta(seconds=self.settings.denied_burst_window_s)
        recent = self._recent[fact.door]
        recent.append(fact)
        while recent and recent[0].occurred_at < fact.occurred_at - window:
            recent.popleft()
        if len(recent) < self.settings.denied_burst_count:
            return
        burst = list(recent)
        recent.clear()  # the next burst starts afresh; repeats fold into the open alert by dedupe key
        reasons = sorted({d.reason for d in burst})
        ctx.raise_alert(AlertDraft(
            kind=self.name, severity=Severity.MEDIUM,
            title=f"{len(burst)} denied swipes at door {fact.door} within "
                  f"{self.settings.denied_burst_window_s:g} s ({', '.join(reasons)})",
            dedupe_key=f"denied:{fact.door}", trigger=burst[0].event_id, at=fact.occurred_at,
            fact_ids=tuple(d.event_id for d in burst), door=fact.door,
        ))
