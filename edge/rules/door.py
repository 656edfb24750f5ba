"""Door rules: forced open (no grant or exit request) and held open (longer than allowed)."""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from edge.alerts import Severity
from edge.config import RulesSettings
from edge.events import AccessGranted, DoorClosed, DoorOpened, Event, ExitRequested
from edge.rules.base import AlertDraft, Rule, RuleContext


@dataclass
class _PendingOpen:
    fact: DoorOpened
    deadline: datetime


class DoorForcedRule(Rule):
    """A door that opens with no grant or request-to-exit within the grant window was forced."""

    name = "door_forced_open"
    kinds = frozenset({"door_opened", "access_granted", "exit_requested"})

    def __init__(self, settings: RulesSettings) -> None:
        self.settings = settings
        self._authorized: dict[str, deque[datetime]] = defaultdict(deque)
        self._pending: dict[str, _PendingOpen] = {}

    def on_fact(self, fact: Event, ctx: RuleContext) -> None:
        if isinstance(fact, AccessGranted | ExitRequested):
            self._authorize(fact.door, fact.occurred_at)
        elif isinstance(fact, DoorOpened):
            window = timedelta(seconds=self.settings.grant_window_for(fact.door))
            times = self._authorized[fact.door]
            while times and times[0] < fact.occurred_at - window - timedelta(seconds=60):
                times.popleft()
            if any(fact.occurred_at - window <= t <= fact.occurred_at for t in times):
                return
            grace = timedelta(seconds=self.settings.late_grant_grace_s)
            self._pending[fact.event_id] = _PendingOpen(fact, fact.occurred_at + grace)

    def _authorize(self, door: str, at: datetime) -> None:
        self._authorized[door].append(at)
        grace = timedelta(seconds=self.settings.late_grant_grace_s)
        # A grant reported just after the opening still authorizes it.
        for event_id, pending in list(self._pending.items()):
            opened = pending.fact
            window = timedelta(seconds=self.settings.grant_window_for(door))
            if opened.door == door and opened.occurred_at - window <= at <= opened.occurred_at + grace:
                del self._pending[event_id]

    def on_tick(self, now: datetime, ctx: RuleContext) -> None:
        for event_id, pending in list(self._pending.items()):
            if pending.deadline > now:
                continue
            del self._pending[event_id]
            fact = pending.fact
            ctx.raise_alert(
                AlertDraft(
                    kind=self.name,
                    severity=Severity.HIGH,
                    title=f"Door {fact.door} forced open: no badge grant or exit request",
                    dedupe_key=f"{self.name}:{fact.door}",
                    trigger=fact.event_id,
                    at=fact.occurred_at,
                    fact_ids=(fact.event_id,),
                    door=fact.door,
                )
            )


class DoorHeldRule(Rule):
    """A door open longer than its limit is held open; closing it resolves the alert."""

    name = "door_held_open"
    kinds = frozenset({"door_opened", "door_closed"})

    def __init__(self, settings: RulesSettings) -> None:
        self.settings = settings
        self._open: dict[str, DoorOpened] = {}
        self._alerted: set[str] = set()
        # (deadline, event id, door): a tick looks only at doors whose limit has passed, not at every open one.
        self._deadlines: list[tuple[datetime, str, str]] = []

    def on_fact(self, fact: Event, ctx: RuleContext) -> None:
        if isinstance(fact, DoorOpened):
            if fact.door not in self._open:
                self._open[fact.door] = fact
                deadline = fact.occurred_at + timedelta(seconds=self.settings.max_open_for(fact.door))
                heapq.heappush(self._deadlines, (deadline, fact.event_id, fact.door))
        elif isinstance(fact, DoorClosed):
            opened = self._open.pop(fact.door, None)
            if opened is not None and opened.event_id in self._alerted:
                self._alerted.discard(opened.event_id)
                seconds = (fact.occurred_at - opened.occurred_at).total_seconds()
                ctx.resolve(self.name, opened.event_id, f"door closed after {seconds:.0f} s")

    def on_tick(self, now: datetime, ctx: RuleContext) -> None:
        while self._deadlines and self._deadlines[0][0] < now:
            _, event_id, door = heapq.heappop(self._deadlines)
            opened = self._open.get(door)
            if opened is None or opened.event_id != event_id:
                continue  # closed since, or opened again: a newer deadline is in the heap
            self._alerted.add(event_id)
            limit = self.settings.max_open_for(door)
            ctx.raise_alert(
                AlertDraft(
                    kind=self.name,
                    severity=Severity.MEDIUM,
                    title=f"Door {door} held open longer than {limit:g} s",
                    dedupe_key=f"{self.name}:{door}",
                    trigger=event_id,
                    at=opened.occurred_at,
                    fact_ids=(event_id,),
                    door=door,
                )
            )
