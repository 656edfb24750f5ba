"""The rule API: a rule subscribes to fact kinds, keeps its own state and asks for alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol

from edge.alerts import Evidence, Severity
from edge.events import Event


@dataclass(frozen=True)
class AlertDraft:
    """What a rule wants raised. `trigger` makes it idempotent: the same trigger never raises twice."""

    kind: str
    severity: Severity
    title: str
    dedupe_key: str
    trigger: str
    at: datetime
    fact_ids: tuple[str, ...] = ()
    door: str | None = None
    zone: str | None = None
    device: str | None = None
    evidence: tuple[Evidence, ...] = field(default=())


class RuleContext(Protocol):
    """What a rule may do: raise an alert, or resolve the alert one of its triggers raised."""

    def raise_alert(self, draft: AlertDraft) -> None:
        """Raise (or fold into an open alert with the same dedupe key)."""

    def resolve(self, kind: str, trigger: str, note: str, by: str | None = None) -> None:
        """Resolve the alert that `trigger` raised, if it is still open; `by` names a person who decided (else
        the rule itself)."""


class Rule:
    """Base of every rule. Rules are pure: no I/O, time comes in through facts and ticks."""

    name: ClassVar[str]
    kinds: ClassVar[frozenset[str]]

    def on_fact(self, fact: Event, ctx: RuleContext) -> None:
        """Called for each new fact of a kind in `kinds`, in arrival order."""

    def on_tick(self, now: datetime, ctx: RuleContext) -> None:
        """Called after each batch and at least twice a second: time-based decisions go here."""
