"""The tailgating rule on facts alone: camera entries held against badge grants and exit requests."""

from __future__ import annotations

from test_rules import Collect, at

from edge.alerts import Severity
from edge.config import RulesSettings
from edge.events import AccessGranted, DoorOpened, ExitRequested, PersonEntered
from edge.rules.tailgate import TailgateRule

RULES = RulesSettings(tailgate_window_s=10, entry_grace_s=0.3)


def grant(t: float, door: str = "front", allowed: int = 1, who: str = "Ann") -> AccessGranted:
    return AccessGranted(site="s", source="badge/ctl-1", door=door, credential="H10301:1/****1", cardholder=who,
                         allowed_entries=allowed, occurred_at=at(t))


def entered(t: float, door: str = "front", track: int = 1) -> PersonEntered:
    return PersonEntered(site="s", source="vision/cam-1", door=door, camera="cam-1", track_id=track,
                         snapshot=f"vision/snapshots/{track}.jpg", occurred_at=at(t))


def run(*facts, until: float = 30.0) -> Collect:
    rule, ctx = TailgateRule(RULES), Collect()
    for fact in facts:
        rule.on_fact(fact, ctx)
        rule.on_tick(fact.occurred_at, ctx)
    rule.on_tick(at(until), ctx)
    return ctx


def test_one_grant_one_person_raises_nothing() -> None:
    assert run(grant(0), entered(3)).raised == []


def test_one_grant_two_people_is_one_tailgate_with_its_evidence() -> None:
    g, first, second = grant(0), entered(3, track=1), entered(4, track=2)
    ctx = run(g, first, second)
    (draft,) = ctx.raised
    assert (draft.kind, draft.severity, draft.door) == ("tailgate_detected", Severity.HIGH, "front")
    assert draft.trigger == second.event_id and "2 people in on one grant to Ann (allowed 1)" in draft.title
    assert set(draft.fact_ids) == {g.event_id, first.event_id, second.event_id}
    assert [e.ref for e in draft.evidence if e.kind == "snapshot"] == ["vision/snapshots/2.jpg"]
    assert any("counted 2 in" in e.ref for e in draft.evidence if e.kind == "note")


def test_two_grants_two_people_and_a_grant_for_two_raise_nothing() -> None:
    assert run(grant(0), grant(1, who="Bob"), entered(3, track=1), entered(4, track=2)).raised == []
    assert run(grant(0, allowed=2), entered(3, track=1), entered(4, track=2)).raised == []


def test_an_entry_with_no_grant_is_unauthorized_after_the_grace_and_an_exit_request_covers_it() -> None:
    rule, ctx = TailgateRule(RULES), Collect()
    alone = entered(5)
    rule.on_fact(alone, ctx)
    rule.on_tick(at(5.2), ctx)
    assert ctx.raised == []  # a grant may still be on its way
    rule.on_tick(at(5.3), ctx)
    (draft,) = ctx.raised
    assert (draft.kind, draft.severity, draft.trigger) == ("unauthorized_entry", Severity.HIGH, alone.event_id)
    rex = ExitRequested(site="s", source="badge/ctl-1", door="front", occurred_at=at(0))
    assert run(rex, entered(5)).raised == []


def test_the_window_runs_from_the_door_opening_and_other_doors_do_not_count() -> None:
    opened = DoorOpened(site="s", source="badge/ctl-1", door="front", occurred_at=at(8))
    assert run(grant(0), opened, entered(15)).raised == []  # 7 s after the door opened
    late = run(grant(0), entered(12))  # 12 s after the grant, door never seen open: no grant covers it
    assert [d.kind for d in late.raised] == ["unauthorized_entry"]
    other = run(grant(0, door="back"), entered(3))
    assert [d.kind for d in other.raised] == ["unauthorized_entry"]


def test_a_second_grant_reported_late_takes_the_tailgate_back() -> None:
    rule, ctx = TailgateRule(RULES), Collect()
    second = entered(4, track=2)
    for fact in (grant(0), entered(3, track=1), second):
        rule.on_fact(fact, ctx)
    assert [d.trigger for d in ctx.raised] == [second.event_id]  # raised at once
    rule.on_fact(grant(3.9, who="Bob"), ctx)  # Bob badged just before; his grant arrived after his entry
    assert ctx.resolved and ctx.resolved[0][:2] == ("tailgate_detected", second.event_id)


def test_three_people_on_one_grant_fold_into_one_alert() -> None:
    ctx = run(grant(0), entered(3, track=1), entered(4, track=2), entered(5, track=3))
    assert len({d.dedupe_key for d in ctx.raised}) == 1 and len(ctx.raised) == 2
    assert "3 people in" in ctx.raised[-1].title


def test_a_late_grant_takes_back_only_entries_inside_its_own_window() -> None:
    rule, ctx = TailgateRule(RULES), Collect()
    opened = DoorOpened(site="s", source="badge/ctl-1", door="front", occurred_at=at(9))
    tailgater = entered(17, track=2)
    for fact in (grant(0), opened, entered(9.5, track=1), tailgater):
        rule.on_fact(fact, ctx)
    assert [d.trigger for d in ctx.raised] == [tailgater.event_id]
    rule.on_fact(grant(1, who="Bob"), ctx)  # valid until 11: B came in at 17
    assert ctx.resolved == []


def test_an_unauthorized_entry_is_taken_back_by_a_grant_or_door_opening_reported_late() -> None:
    rule, ctx = TailgateRule(RULES), Collect()
    alone = entered(5)
    rule.on_fact(alone, ctx)
    rule.on_tick(at(5.3), ctx)
    assert [d.kind for d in ctx.raised] == ["unauthorized_entry"]
    rule.on_fact(grant(4.9), ctx)
    assert ctx.resolved and ctx.resolved[0][:2] == ("unauthorized_entry", alone.event_id)

    rule, ctx = TailgateRule(RULES), Collect()
    late_entry = entered(12)
    for fact in (grant(0), late_entry):
        rule.on_fact(fact, ctx)
    rule.on_tick(at(12.3), ctx)
    assert [d.kind for d in ctx.raised] == ["unauthorized_entry"]
    rule.on_fact(DoorOpened(site="s", source="badge/ctl-1", door="front", occurred_at=at(9.9)), ctx)
    assert ctx.resolved and ctx.resolved[0][:2] == ("unauthorized_entry", late_entry.event_id)


def test_only_the_first_door_opening_moves_a_grants_window() -> None:
    facts = [grant(0)] + [DoorOpened(site="s", source="badge/ctl-1", door="front", occurred_at=at(t))
                          for t in range(9, 300, 9)]
    ctx = run(*facts, entered(300.5), until=310)
    assert [d.kind for d in ctx.raised] == ["unauthorized_entry"]


def test_exit_requests_at_a_door_without_entries_do_not_pile_up() -> None:
    rule, ctx = TailgateRule(RULES), Collect()
    for i in range(2000):
        rule.on_fact(ExitRequested(site="s", source="badge/ctl-1", door="side", occurred_at=at(i)), ctx)
    assert len(rule._exits["side"]) < 100
