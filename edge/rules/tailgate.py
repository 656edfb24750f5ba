"""Tailgating: people counted through a door by a camera, held against the badge grants at that door.

Each AccessGranted lets in `allowed_entries` people within `tailgate_window_s` of the grant, or of the door
opening after it. A PersonEntered beyond that allowance is tailgating (high); it is raised at once, because a
second person slipping in is what the alert is for, and taken back if a grant reported late covers it. An
entry with no grant and no request-to-exit in the window is an unauthorized entry, after `entry_grace_s`,
also taken back if a grant, a door opening or an exit request reported late covers it.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from edge.alerts import Evidence, Severity
from edge.config import RulesSettings
from edge.events import AccessGranted, DoorOpened, Event, ExitRequested, PersonEntered
from edge.rules.base import AlertDraft, Rule, RuleContext


@dataclass
class _Grant:
    fact: AccessGranted
    until: datetime
    entered: list[PersonEntered] = field(default_factory=list)
    tailgates: list[PersonEntered] = field(default_factory=list)
    alert_trigger: str | None = None  # the entry that raised this grant's tailgate alert
    door_opened: bool = False  # only the first opening after the grant moves its window


class TailgateRule(Rule):
    """Raises tailgate_detected (high) and unauthorized_entry (high) from camera entries and badge grants."""

    name = "tailgate_detected"
    unauthorized = "unauthorized_entry"
    kinds = frozenset({"access_granted", "door_opened", "exit_requested", "person_entered"})

    def __init__(self, settings: RulesSettings) -> None:
        self.settings = settings
        self._grants: dict[str, deque[_Grant]] = defaultdict(deque)
        self._exits: dict[str, deque[datetime]] = defaultdict(deque)
        self._pending: dict[str, PersonEntered] = {}  # entries with no grant, waiting out the grace
        self._raised: dict[str, PersonEntered] = {}  # unauthorized entries raised, which a late grant takes back

    def _window(self) -> timedelta:
        return timedelta(seconds=self.settings.tailgate_window_s)

    def on_fact(self, fact: Event, ctx: RuleContext) -> None:
        if isinstance(fact, AccessGranted):
            self._grant(fact, ctx)
        elif isinstance(fact, DoorOpened):
            for grant in self._grants[fact.door]:  # the walk-through starts when the door first opens
                if not grant.door_opened and grant.fact.occurred_at <= fact.occurred_at <= grant.until:
                    grant.door_opened = True
                    grant.until = max(grant.until, fact.occurred_at + self._window())
                    self._cover_late(grant, ctx, "the door opened for a grant")
        elif isinstance(fact, ExitRequested):
            self._prune(fact.door, fact.occurred_at)
            self._exits[fact.door].append(fact.occurred_at)
            for event_id, entry in [*self._pending.items(), *self._raised.items()]:
                if entry.door == fact.door and abs(entry.occurred_at - fact.occurred_at) <= self._window():
                    self._pending.pop(event_id, None)
                    if self._raised.pop(event_id, None) is not None:
                        ctx.resolve(self.unauthorized, event_id, "an exit request reported late covers it")
        elif isinstance(fact, PersonEntered):
            self._entry(fact, ctx)

    def _prune(self, door: str, now: datetime) -> None:
        keep = now - self._window() - timedelta(seconds=60)
        for event_id, entry in list(self._raised.items()):
            if entry.occurred_at < keep:
                del self._raised[event_id]
        grants = self._grants[door]
        while grants and grants[0].until < keep:
            grants.popleft()
        exits = self._exits[door]
        while exits and exits[0] < keep:
            exits.popleft()

    def _grant(self, fact: AccessGranted, ctx: RuleContext) -> None:
        self._prune(fact.door, fact.occurred_at)
        grant = _Grant(fact, fact.occurred_at + self._window())
        self._grants[fact.door].append(grant)
        grace = timedelta(seconds=self.settings.entry_grace_s)
        # A grant reported just after an entry: it covers an entry still waiting, or takes back a tailgate alert.
        late = [e for e in self._pending.values() if e.door == fact.door
                and fact.occurred_at - grace <= e.occurred_at <= grant.until]
        for entry in late:
            if len(grant.entered) < fact.allowed_entries:
                del self._pending[entry.event_id]
                grant.entered.append(entry)
        self._cover_late(grant, ctx, f"a grant reported late ({fact.credential})")

    def _cover_late(self, grant: _Grant, ctx: RuleContext, why: str) -> None:
        """Let a grant (new, or with its window just moved) take entries already judged: tailgates of older
        grants and raised unauthorized entries inside its window; their alerts are taken back."""
        grace = timedelta(seconds=self.settings.entry_grace_s)
        door = grant.fact.door

        def covers(entry: PersonEntered) -> bool:
            return grant.fact.occurred_at - grace <= entry.occurred_at <= grant.until

        for older in self._grants[door]:
            if older is grant:
                continue
            for entry in list(older.tailgates):
                if len(grant.entered) < grant.fact.allowed_entries and covers(entry):
                    older.tailgates.remove(entry)
                    grant.entered.append(entry)
            if older.alert_trigger and not older.tailgates:
                ctx.resolve(self.name, older.alert_trigger, f"{why} covers it")
                older.alert_trigger = None
        for event_id, entry in list(self._raised.items()):
            if entry.door == door and len(grant.entered) < grant.fact.allowed_entries and covers(entry):
                del self._raised[event_id]
                grant.entered.append(entry)
                ctx.resolve(self.unauthorized, event_id, f"{why} covers it")

    def _entry(self, fact: PersonEntered, ctx: RuleContext) -> None:
        self._prune(fact.door, fact.occurred_at)
        grace = timedelta(seconds=self.settings.entry_grace_s)
        open_grants = [g for g in self._grants[fact.door]
                       if g.fact.occurred_at - grace <= fact.occurred_at <= g.until]
        for grant in open_grants:
            if len(grant.entered) < grant.fact.allowed_entries:
                grant.entered.append(fact)
                return
        if open_grants:
            grant = open_grants[-1]
            grant.tailgates.append(fact)
            self._raise_tailgate(grant, fact, ctx)
            return
        if any(fact.occurred_at - self._window() <= t <= fact.occurred_at + grace for t in self._exits[fact.door]):
            return
        self._pending[fact.event_id] = fact

    def _raise_tailgate(self, grant: _Grant, fact: PersonEntered, ctx: RuleContext) -> None:
        allowed = grant.fact.allowed_entries
        entered = len(grant.entered) + len(grant.tailgates)
        who = grant.fact.cardholder or grant.fact.credential
        grant.alert_trigger = grant.alert_trigger or fact.event_id
        evidence = (Evidence(kind="snapshot", ref=fact.snapshot),) if fact.snapshot else ()
        notes = (Evidence(kind="note", ref=f"grant to {who} at {grant.fact.occurred_at:%H:%M:%S} UTC allowed "
                          f"{allowed}; camera {fact.camera} counted {entered} in (track {fact.track_id})"),)
        ctx.raise_alert(AlertDraft(
            kind=self.name, severity=Severity.HIGH,
            title=f"Tailgating at door {fact.door}: {entered} people in on one grant to {who} (allowed {allowed})",
            dedupe_key=f"{self.name}:{fact.door}:{grant.fact.event_id}", trigger=fact.event_id,
            at=fact.occurred_at, fact_ids=(grant.fact.event_id, *(e.event_id for e in grant.entered),
                                          *(e.event_id for e in grant.tailgates)),
            door=fact.door, device=fact.source, evidence=evidence + notes,
        ))

    def on_tick(self, now: datetime, ctx: RuleContext) -> None:
        grace = timedelta(seconds=self.settings.entry_grace_s)
        for event_id, fact in list(self._pending.items()):
            if fact.occurred_at + grace > now:
                continue
            del self._pending[event_id]
            self._raised[event_id] = fact
            evidence = (Evidence(kind="snapshot", ref=fact.snapshot),) if fact.snapshot else ()
            ctx.raise_alert(AlertDraft(
                kind=self.unauthorized, severity=Severity.HIGH,
                title=f"Unauthorized entry at door {fact.door}: camera {fact.camera} saw a person come in with no "
                      "badge grant or exit request",
                dedupe_key=f"{self.unauthorized}:{fact.door}", trigger=fact.event_id, at=fact.occurred_at,
                fact_ids=(fact.event_id,), door=fact.door, device=fact.source, evidence=evidence,
            ))
