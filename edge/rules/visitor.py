"""Visitor rules: a watchlist hit at check-in, and a visitor still on site past the visit's end."""

from __future__ import annotations

from edge.alerts import Severity
from edge.config import RulesSettings
from edge.events import Event, VisitorCheckedOut, VisitorOverstayed, WatchlistHoldDecided, WatchlistMatched
from edge.rules.base import AlertDraft, Rule, RuleContext


class WatchlistRule(Rule):
    """Raises watchlist_hit (high) when a check-in matched the watch/deny list; a person decides what next.

    Reception's decision ends the alert, naming who decided: turned away -> resolved as refused; let in ->
    resolved as admitted (the visitor is then an ordinary visit on site). The alert is keyed by the visit, so a
    decision made long after the hold (or after an edge restart) still finds it without rule state. Alerts raised
    before it was keyed so (by the fact's event id) got the visit key by migration `edge_v3_watchlist_by_visit`.
    """

    name = "watchlist_hit"
    kinds = frozenset({"watchlist_matched", "watchlist_hold_decided"})

    def __init__(self, settings: RulesSettings) -> None:
        pass

    def on_fact(self, fact: Event, ctx: RuleContext) -> None:
        if isinstance(fact, WatchlistMatched):
            ctx.raise_alert(AlertDraft(
                kind=self.name, severity=Severity.HIGH,
                title=f"check-in held at {fact.device}: the visitor matches watchlist entry {fact.entry}; "
                      "see the reception console",
                dedupe_key=f"watchlist:{fact.visit_id}", trigger=f"visit:{fact.visit_id}", at=fact.occurred_at,
                fact_ids=(fact.event_id,), zone="reception", device=fact.source,
            ))
        elif isinstance(fact, WatchlistHoldDecided):
            outcome = "refused: turned away" if fact.decision == "refused" else "admitted: let in"
            ctx.resolve(self.name, f"visit:{fact.visit_id}", f"{outcome} at reception by {fact.decided_by}",
                        by=f"{fact.service}:{fact.decided_by}")


class OverstayRule(Rule):
    """Raises visitor_overstay when a visit runs past its expected end; check-out resolves it."""

    name = "visitor_overstay"
    kinds = frozenset({"visitor_overstayed", "visitor_checked_out"})

    def __init__(self, settings: RulesSettings) -> None:
        self._open: dict[str, str] = {}  # visit id -> trigger of its open alert

    def on_fact(self, fact: Event, ctx: RuleContext) -> None:
        if isinstance(fact, VisitorOverstayed):
            if fact.visit_id in self._open:
                return
            self._open[fact.visit_id] = fact.event_id
            ctx.raise_alert(AlertDraft(
                kind=self.name, severity=Severity.LOW,
                title=f"visitor of host {fact.host_id} still on site past {fact.expected_end:%Y-%m-%d %H:%M} UTC "
                      f"(visit {fact.visit_id})",
                dedupe_key=f"overstay:{fact.visit_id}", trigger=fact.event_id, at=fact.occurred_at,
                fact_ids=(fact.event_id,), zone="reception", device=fact.source,
            ))
        elif isinstance(fact, VisitorCheckedOut):
            trigger = self._open.pop(fact.visit_id, None)
            if trigger is not None:
                ctx.resolve(self.name, trigger, f"visitor checked out ({fact.checked_out_by})")
