"""The lifecycle fold: both sides reach the same state from the same changes, whatever order they arrived in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.alerts import AlertState
from edge.lifecycle import Action, AlertChange, ChangeConflict, Outcome, fold, merge, next_action_allowed

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def change(action: Action, minute: float, by: str = "anna", origin: str = "console", **kw) -> AlertChange:
    return AlertChange(alert_id="a1", action=action, by=by, at=T0 + timedelta(minutes=minute), origin=origin, **kw)


changes_st = st.lists(
    st.builds(
        lambda action, minute, who, outcome, assignee: change(
            action, minute, by=who,
            outcome=outcome if action is Action.RESOLVE else None,
            assignee=assignee if action is Action.ASSIGN else None,
            note="seen" if action is Action.COMMENT else ""),
        st.sampled_from(list(Action)), st.integers(0, 30), st.sampled_from(["anna", "rule:door", "kiosk:rita"]),
        st.sampled_from(list(Outcome)), st.sampled_from([None, "anna", "bob"])),
    max_size=12)


@settings(max_examples=300, deadline=None)
@given(changes=changes_st, seed=st.integers(0, 2**32 - 1))
def test_any_order_and_any_repeat_of_the_same_changes_folds_to_the_same_state(changes, seed) -> None:
    shuffled = list(changes) + list(changes[: len(changes) // 2])  # some arrive twice
    random.Random(seed).shuffle(shuffled)
    assert fold(shuffled) == fold(changes)


@settings(max_examples=200, deadline=None)
@given(changes=changes_st, seed=st.integers(0, 2**32 - 1))
def test_two_sides_that_saw_parts_of_the_history_converge_after_exchanging_them(changes, seed) -> None:
    rng = random.Random(seed)
    box = [c for c in changes if rng.random() < 0.5]
    console = [c for c in changes if c not in box or rng.random() < 0.3]  # some seen by both
    box_after, console_after = merge(box, console), merge(console, box)
    assert box_after == console_after
    assert fold(box_after) == fold(console_after) == fold(changes)
    assert {c.change_id for c in box_after} == {c.change_id for c in changes}  # nothing lost or overwritten


def test_both_sides_changing_one_alert_while_the_link_is_down_keep_every_change_and_agree() -> None:
    """The box's guard acknowledges and comments; meanwhile the console's operator takes the alert and resolves it
    as a false alarm. When the link is back each side has all four changes and the same state."""
    on_box = [change(Action.ACKNOWLEDGE, 1, by="guard", origin="site:ams-office"),
              change(Action.COMMENT, 2, by="guard", origin="site:ams-office", note="door was propped by cleaners")]
    on_console = [change(Action.ASSIGN, 1.5, by="olga", assignee="olga"),
                  change(Action.RESOLVE, 3, by="olga", outcome=Outcome.FALSE_ALARM, note="cleaners")]
    box = merge(on_box, on_console)
    console = merge(on_console, on_box)
    assert box == console and len(box) == 4
    state = fold(box)
    assert state.state is AlertState.RESOLVED and state.outcome is Outcome.FALSE_ALARM
    assert (state.acknowledged_by, state.resolved_by, state.assignee) == ("guard", "olga", "olga")


def test_a_late_acknowledgement_does_not_take_back_a_resolution_in_the_same_round() -> None:
    resolved = change(Action.RESOLVE, 1, outcome=Outcome.REAL_INCIDENT)
    late_ack = change(Action.ACKNOWLEDGE, 2, by="guard")
    assert fold([late_ack, resolved]).state is AlertState.RESOLVED
    assert fold([late_ack, resolved]).acknowledged_by == "guard"


def test_the_first_acknowledgement_of_a_round_is_the_one_shown() -> None:
    """Two guards acknowledge the same alert a minute apart: who took it first is what the screen says."""
    second, first = change(Action.ACKNOWLEDGE, 2, by="bob"), change(Action.ACKNOWLEDGE, 1, by="anna")
    assert (fold([second, first]).acknowledged_by, fold([second, first]).acknowledged_at) == ("anna", first.at)


def test_reopen_starts_a_new_round_and_the_next_acknowledgement_counts_in_it() -> None:
    history = [change(Action.ACKNOWLEDGE, 1, by="anna"), change(Action.RESOLVE, 2, outcome=Outcome.TEST),
               change(Action.REOPEN, 3, by="bob", note="it happened again"), change(Action.ACKNOWLEDGE, 4, by="bob")]
    state = fold(history)
    assert (state.state, state.round, state.acknowledged_by, state.outcome) == (
        AlertState.ACKNOWLEDGED, 1, "bob", None)
    assert fold(history[:3]).state is AlertState.NEW


def test_concurrent_resolutions_settle_on_the_later_one_and_keep_both() -> None:
    first = change(Action.RESOLVE, 5, by="anna", outcome=Outcome.REAL_INCIDENT)
    second = change(Action.RESOLVE, 5, by="bob", outcome=Outcome.DUPLICATE)  # same minute: the id decides
    winner = max(first, second, key=lambda c: c.order)
    assert fold([first, second]).resolved_by == fold([second, first]).resolved_by == winner.by
    assert len(merge([first], [second])) == 2


def test_a_change_id_reused_for_different_contents_is_refused() -> None:
    ack = change(Action.ACKNOWLEDGE, 1)
    forged = ack.model_copy(update={"by": "mallory"})
    with pytest.raises(ChangeConflict, match=f"change {ack.change_id} of alert a1 arrived with two contents"):
        merge([ack], [forged])
    with pytest.raises(ChangeConflict):
        fold([ack, forged])


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"action": Action.RESOLVE}, "a resolve needs an outcome"),
    ({"action": Action.ACKNOWLEDGE, "outcome": Outcome.TEST}, "acknowledge takes no outcome"),
    ({"action": Action.COMMENT, "assignee": "bob", "note": "x"}, "comment takes no assignee"),
    ({"action": Action.COMMENT, "note": "  "}, "a comment needs a note"),
    ({"action": Action.ACKNOWLEDGE, "by": ""}, "by"),
    ({"action": Action.ACKNOWLEDGE, "at": datetime(2026, 12, 4, 9, 0)}, "at"),  # a time with no zone
])
def test_a_change_that_does_not_fit_its_action_is_refused(kwargs, problem) -> None:
    fields = {"alert_id": "a1", "by": "anna", "at": T0, "origin": "console"} | kwargs
    with pytest.raises(ValidationError, match=problem):
        AlertChange(**fields)


def test_what_a_person_may_do_next_is_told_in_words() -> None:
    new = fold([])
    acked = fold([change(Action.ACKNOWLEDGE, 1)])
    resolved = fold([change(Action.RESOLVE, 1, outcome=Outcome.FALSE_ALARM)])
    assert next_action_allowed(new, Action.ACKNOWLEDGE) is True
    assert next_action_allowed(new, Action.REOPEN) == "only a resolved alert can be reopened"
    assert next_action_allowed(acked, Action.ACKNOWLEDGE) == "the alert is already acknowledged"
    assert next_action_allowed(acked, Action.RESOLVE) is True
    assert next_action_allowed(resolved, Action.RESOLVE) == "the alert is resolved: reopen it first"
    assert next_action_allowed(resolved, Action.REOPEN) is True
    assert next_action_allowed(resolved, Action.COMMENT) is True
