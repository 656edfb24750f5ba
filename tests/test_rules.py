"""Rules and the alert store: forced, held and offline decisions, dedupe, lifecycle, idempotent replay."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.alert_store import AlertAmbiguous, AlertNotFound, AlertStore
from edge.alerts import AlertMessage, AlertState, Severity
from edge.config import DoorOverride, RulesSettings
from edge.events import AccessGranted, DeviceCameOnline, DeviceWentOffline, DoorClosed, DoorOpened, ExitRequested
from edge.events import HeartbeatSent as Heartbeat
from edge.migrations import MIGRATIONS
from edge.rules.base import AlertDraft
from edge.rules.device import DeviceOfflineRule
from edge.rules.door import DoorForcedRule, DoorHeldRule
from edge.store import open_database

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
SRC = "badge/ctl-1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Collect:
    """A RuleContext that records what rules ask for."""

    def __init__(self) -> None:
        self.raised: list[AlertDraft] = []
        self.resolved: list[tuple[str, str, str]] = []
        self.resolved_by: list[str | None] = []

    def raise_alert(self, draft: AlertDraft) -> None:
        self.raised.append(draft)

    def resolve(self, kind: str, trigger: str, note: str, by: str | None = None) -> None:
        self.resolved.append((kind, trigger, note))
        self.resolved_by.append(by)


RULES = RulesSettings(grant_window_s=10, late_grant_grace_s=1, max_open_s=30, silent_after_s=60)


def test_door_opened_without_grant_is_forced_after_the_grace() -> None:
    rule, ctx = DoorForcedRule(RULES), Collect()
    opened = DoorOpened(site="s", source=SRC, door="front", occurred_at=at(0))
    rule.on_fact(opened, ctx)
    rule.on_tick(at(0.5), ctx)
    assert ctx.raised == []  # a grant may still be on its way
    rule.on_tick(at(1.0), ctx)
    (draft,) = ctx.raised
    assert (draft.kind, draft.severity, draft.door, draft.fact_ids) == (
        "door_forced_open", Severity.HIGH, "front", (opened.event_id,))


@pytest.mark.parametrize("auth_at", [-10.0, -3.0, 0.0, 0.8])
def test_grant_or_exit_request_in_the_window_authorizes_the_opening(auth_at: float) -> None:
    for fact_type in (AccessGranted, ExitRequested):
        rule, ctx = DoorForcedRule(RULES), Collect()
        extra = {"credential": "26bit:1/****2"} if fact_type is AccessGranted else {}
        auth = fact_type(site="s", source=SRC, door="front", occurred_at=at(auth_at), **extra)
        opened = DoorOpened(site="s", source=SRC, door="front", occurred_at=at(0))
        for fact in sorted([auth, opened], key=lambda f: f.occurred_at):
            rule.on_fact(fact, ctx)
        rule.on_tick(at(5), ctx)
        assert ctx.raised == [], (fact_type.__name__, auth_at)


def test_grant_too_old_or_at_another_door_does_not_authorize() -> None:
    rule, ctx = DoorForcedRule(RULES), Collect()
    rule.on_fact(AccessGranted(site="s", source=SRC, door="front", credential="x", occurred_at=at(-11)), ctx)
    rule.on_fact(AccessGranted(site="s", source=SRC, door="back", credential="x", occurred_at=at(-1)), ctx)
    rule.on_fact(DoorOpened(site="s", source=SRC, door="front", occurred_at=at(0)), ctx)
    rule.on_tick(at(2), ctx)
    assert [d.door for d in ctx.raised] == ["front"]


def test_held_open_alert_after_the_limit_and_resolved_on_close() -> None:
    settings = RULES.model_copy(update={"doors": {"dock": DoorOverride(max_open_s=120)}})
    rule, ctx = DoorHeldRule(settings), Collect()
    front = DoorOpened(site="s", source=SRC, door="front", occurred_at=at(0))
    dock = DoorOpened(site="s", source=SRC, door="dock", occurred_at=at(0))
    rule.on_fact(front, ctx)
    rule.on_fact(dock, ctx)
    rule.on_tick(at(30), ctx)
    assert ctx.raised == []
    rule.on_tick(at(31), ctx)
    rule.on_tick(at(32), ctx)
    assert [(d.kind, d.door, d.trigger) for d in ctx.raised] == [("door_held_open", "front", front.event_id)]
    rule.on_fact(DoorClosed(site="s", source=SRC, door="front", occurred_at=at(40)), ctx)
    assert ctx.resolved == [("door_held_open", front.event_id, "door closed after 40 s")]
    rule.on_tick(at(119), ctx)
    assert len(ctx.raised) == 1  # the dock has its own, longer limit
    rule.on_tick(at(121), ctx)
    assert [d.door for d in ctx.raised] == ["front", "dock"]


def test_door_closed_in_time_raises_nothing() -> None:
    rule, ctx = DoorHeldRule(RULES), Collect()
    rule.on_fact(DoorOpened(site="s", source=SRC, door="front", occurred_at=at(0)), ctx)
    rule.on_fact(DoorClosed(site="s", source=SRC, door="front", occurred_at=at(29)), ctx)
    rule.on_tick(at(100), ctx)
    assert ctx.raised == [] and ctx.resolved == []


def test_device_offline_on_report_and_resolved_when_back() -> None:
    rule, ctx = DeviceOfflineRule(RULES), Collect()
    down = DeviceWentOffline(site="s", source="badge/bus-1", device_id="badge/reader-2", device_type="reader",
                             reason="no poll reply", occurred_at=at(0))
    rule.on_fact(down, ctx)
    rule.on_fact(down.model_copy(update={"event_id": "again"}), ctx)  # repeated report: still one alert
    assert [(d.kind, d.device, d.title) for d in ctx.raised] == [
        ("device_offline", "badge/reader-2", "reader badge/reader-2 offline: no poll reply")]
    rule.on_fact(DeviceCameOnline(site="s", source="badge/bus-1", device_id="badge/reader-2",
                                  device_type="reader", occurred_at=at(5)), ctx)
    assert ctx.resolved == [("device_offline", down.event_id, "back online")]


def test_a_video_file_that_ended_raises_no_offline_alert_but_a_lost_stream_does() -> None:
    rule, ctx = DeviceOfflineRule(RULES), Collect()
    ended = DeviceWentOffline(site="s", source="vision/cam-1", device_id="vision/cam-1", device_type="camera",
                              reason="end of file", ended=True, occurred_at=at(0))
    rule.on_fact(ended, ctx)
    rule.on_tick(at(600), ctx)
    assert ctx.raised == []
    lost = DeviceWentOffline(site="s", source="vision/cam-2", device_id="vision/cam-2", device_type="camera",
                             reason="stream lost", occurred_at=at(1))
    rule.on_fact(lost, ctx)
    assert [(d.kind, d.severity, d.device) for d in ctx.raised] == [("device_offline", Severity.HIGH, "vision/cam-2")]


def test_device_that_stops_its_heartbeats_goes_offline_and_comes_back() -> None:
    rule, ctx = DeviceOfflineRule(RULES), Collect()
    beat = Heartbeat(site="s", source="vision/cam-1", device_id="vision/cam-1", device_type="camera",
                     interval_s=10, occurred_at=at(0))
    rule.on_fact(beat, ctx)
    rule.on_tick(at(60), ctx)
    assert ctx.raised == []
    rule.on_tick(at(61), ctx)
    assert [d.title for d in ctx.raised] == ["camera vision/cam-1 silent for 61 s"]
    rule.on_tick(at(120), ctx)
    assert len(ctx.raised) == 1
    rule.on_fact(beat.model_copy(update={"event_id": "b2", "occurred_at": at(125)}), ctx)
    assert ctx.resolved == [("device_offline", f"silent:{beat.event_id}", "heartbeat resumed")]


# The alert store, on a real sqlite database.

@pytest.fixture
def store(tmp_path: Path) -> tuple[AlertStore, list[AlertMessage]]:
    db = open_database(tmp_path / "edge.db", MIGRATIONS)
    messages: list[AlertMessage] = []
    return AlertStore(db, "s", suppression_window_s=300, emit=lambda m, _: messages.append(m)), messages


def _draft(trigger: str, seconds: float = 0, door: str = "front") -> AlertDraft:
    return AlertDraft(kind="door_forced_open", severity=Severity.HIGH, title="forced", trigger=trigger,
                      dedupe_key=f"door_forced_open:{door}", at=at(seconds), fact_ids=(trigger,), door=door)


def test_same_trigger_never_raises_twice(store) -> None:
    alerts, messages = store
    assert alerts.raise_alert(_draft("f1")) is not None
    assert alerts.raise_alert(_draft("f1")) is None
    assert [m.type for m in messages] == ["new"]


def test_repeat_inside_suppression_window_folds_and_outside_raises_anew(store) -> None:
    alerts, messages = store
    first = alerts.raise_alert(_draft("f1", 0))
    folded = alerts.raise_alert(_draft("f2", 200))
    assert folded is not None and first is not None
    assert folded.alert_id == first.alert_id and folded.count == 2 and folded.fact_ids == ("f1", "f2")
    later = alerts.raise_alert(_draft("f3", 200 + 301))
    assert later is not None and later.alert_id != first.alert_id
    other_door = alerts.raise_alert(_draft("f4", 201, door="back"))
    assert other_door is not None and other_door.alert_id not in (first.alert_id, later.alert_id)
    assert [m.type for m in messages] == ["new", "update", "new", "new"]
    assert [m.seq for m in messages] == [1, 2, 3, 4]


def test_lifecycle_records_who_and_when(store) -> None:
    alerts, messages = store
    alert = alerts.raise_alert(_draft("f1"))
    assert alert is not None
    acked, changed = alerts.acknowledge(alert.alert_id[-8:], by="anna", note="on it")
    assert changed
    assert (acked.state, acked.acknowledged_by, acked.note) == (AlertState.ACKNOWLEDGED, "anna", "on it")
    assert acked.acknowledged_at is not None
    resolved, _ = alerts.resolve(alert.alert_id, by="ben", note="propped by cleaners")
    assert alerts.resolve(alert.alert_id, by="carl") == (resolved, False)
    assert alerts.acknowledge(alert.alert_id, by="carl") == (resolved, False)
    assert (resolved.state, resolved.resolved_by, resolved.acknowledged_by) == (AlertState.RESOLVED, "ben", "anna")
    assert [m.type for m in messages] == ["new", "update", "end"]
    assert alerts.get(alert.alert_id) == resolved
    assert alerts.raise_alert(_draft("f2")) is not None
    assert alerts.get(alert.alert_id).count == 1  # resolved alerts are not folded into


def test_find_refuses_short_unknown_and_ambiguous_ids(store) -> None:
    alerts, _ = store
    a = alerts.raise_alert(_draft("f1", door="a"))
    b = alerts.raise_alert(_draft("f2", door="b"))
    assert a is not None and b is not None
    with pytest.raises(AlertNotFound):
        alerts.find("abc")
    with pytest.raises(AlertNotFound):
        alerts.find("zzzzzzzz")
    # Ids made a moment apart share their leading (time) digits.
    common = os.path.commonprefix([a.alert_id, b.alert_id])
    assert len(common) >= 6
    with pytest.raises(AlertAmbiguous):
        alerts.find(common)
    assert alerts.find(b.alert_id[-12:]) == b


def test_acknowledging_an_older_alert_keeps_repeats_folding_into_the_newest(store) -> None:
    alerts, messages = store
    old = alerts.raise_alert(_draft("f1", 0))
    new = alerts.raise_alert(_draft("f2", 400))  # outside the 300 s window: a new alert
    assert old is not None and new is not None and old.alert_id != new.alert_id
    alerts.acknowledge(old.alert_id, by="anna")
    repeat = alerts.raise_alert(_draft("f3", 420))
    assert repeat is not None and repeat.alert_id == new.alert_id and repeat.count == 2


def test_tamper_raises_once_and_clearing_resolves() -> None:
    from edge.events import TamperCleared, TamperDetected
    from edge.rules.badge import TamperRule

    rule, ctx = TamperRule(RULES), Collect()
    first = TamperDetected(site="s", source=SRC, device_id=SRC, door="front", occurred_at=at(0))
    rule.on_fact(first, ctx)
    rule.on_fact(TamperDetected(site="s", source=SRC, device_id=SRC, occurred_at=at(1)), ctx)
    (draft,) = ctx.raised
    assert (draft.kind, draft.severity, draft.door, draft.trigger) == ("tamper_detected", Severity.HIGH, "front",
                                                                       first.event_id)
    rule.on_fact(TamperCleared(site="s", source=SRC, device_id=SRC, occurred_at=at(5)), ctx)
    assert ctx.resolved == [("tamper_detected", first.event_id, "tamper switch closed again")]


def test_five_denials_within_the_window_raise_denied_swipes() -> None:
    from edge.events import AccessDenied
    from edge.rules.badge import DeniedBurstRule

    rule, ctx = DeniedBurstRule(RULES), Collect()

    def deny(t: float, door: str = "front") -> None:
        rule.on_fact(AccessDenied(site="s", source=SRC, door=door, credential="x", reason="unknown_card",
                                  occurred_at=at(t)), ctx)

    for t in (0, 30, 59):
        deny(t)
    deny(70)  # the first two are out of the 60 s window now
    deny(80, door="lab")
    assert ctx.raised == []
    deny(85)
    deny(90)
    (draft,) = ctx.raised
    assert draft.kind == "denied_swipes" and draft.door == "front" and len(draft.fact_ids) == 5


def test_watchlist_match_raises_a_high_alert_without_the_name() -> None:
    from edge.events import WatchlistMatched
    from edge.rules.visitor import WatchlistRule

    rule, ctx = WatchlistRule(RULES), Collect()
    fact = WatchlistMatched(site="s", source="kiosk/reception", visit_id="0190a5e0-0000-7000-8000-000000000001",
                            entry="line 3", occurred_at=at(0))
    rule.on_fact(fact, ctx)
    (draft,) = ctx.raised
    assert (draft.kind, draft.severity, draft.fact_ids) == ("watchlist_hit", Severity.HIGH, (fact.event_id,))
    assert "line 3" in draft.title and "reception console" in draft.title


def test_overstay_raises_once_and_check_out_resolves() -> None:
    from edge.events import VisitorCheckedOut, VisitorOverstayed
    from edge.rules.visitor import OverstayRule

    rule, ctx = OverstayRule(RULES), Collect()
    vid = "0190a5e0-0000-7000-8000-000000000002"
    first = VisitorOverstayed(site="s", source="kiosk/reception", visit_id=vid, host_id="anna", expected_end=at(0),
                              occurred_at=at(1800))
    rule.on_fact(first, ctx)
    rule.on_fact(VisitorOverstayed(site="s", source="kiosk/reception", visit_id=vid, host_id="anna",
                                   expected_end=at(0), occurred_at=at(1900)), ctx)
    (draft,) = ctx.raised
    assert draft.kind == "visitor_overstay" and draft.trigger == first.event_id
    rule.on_fact(VisitorCheckedOut(site="s", source="kiosk/reception", visit_id=vid, host_id="anna",
                                   checked_out_by="end_of_day", occurred_at=at(4000)), ctx)
    assert ctx.resolved == [("visitor_overstay", first.event_id, "visitor checked out (end_of_day)")]


def test_reception_decision_resolves_the_watchlist_alert_with_who_decided() -> None:
    from edge.events import WatchlistHoldDecided, WatchlistMatched
    from edge.rules.visitor import WatchlistRule

    rule, ctx = WatchlistRule(RULES), Collect()
    vid = "0190a5e0-0000-7000-8000-000000000003"
    rule.on_fact(WatchlistMatched(site="s", source="kiosk/reception", visit_id=vid, entry="line 3",
                                  occurred_at=at(0)), ctx)
    (draft,) = ctx.raised
    rule.on_fact(WatchlistHoldDecided(site="s", source="kiosk/reception", visit_id=vid, decision="refused",
                                      decided_by="rita", occurred_at=at(60)), ctx)
    assert ctx.resolved == [("watchlist_hit", draft.trigger, "refused: turned away at reception by rita")]
    assert ctx.resolved_by == ["kiosk:rita"]
