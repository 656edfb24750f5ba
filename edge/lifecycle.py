"""An alert's lifecycle as a set of change events, and the one fold that turns any set of them into its state.

The box and the console each keep the union of the changes they have seen and never overwrite one: a change is
identified by its `change_id`, and the state is derived by folding the changes in one fixed order (their time,
then their id), so both sides reach the same state whatever order the changes reached them in. A `reopen`
starts a new round; inside a round `resolved` beats `acknowledged` beats `new`, so a late acknowledgement never
takes back a resolution made in the same round. This lives in the core rather than in `console/` because the
box folds the same changes (the core may hold libraries; it still imports no service).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.alerts import AlertState
from edge.events import UtcDatetime
from edge.ids import new_id

MAX_NOTE_CHARS = 2000
Who = Annotated[str, Field(min_length=1, max_length=120, description="Who made the change: a staff account, "
                                                                     "`rule:<name>`, `kiosk:<user>`, `os:<user>`.")]


class Action(StrEnum):
    """What a person (or a rule) did to an alert."""

    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"
    COMMENT = "comment"
    RESOLVE = "resolve"
    REOPEN = "reopen"


class Outcome(StrEnum):
    """How a resolved alert ended."""

    REAL_INCIDENT = "real_incident"
    FALSE_ALARM = "false_alarm"
    TEST = "test"
    DUPLICATE = "duplicate"
    CLEARED = "cleared"  # its rule saw the condition end (a door closed, a device came back)


class AlertChange(BaseModel):
    """One change to one alert, as kept on both sides and exchanged between them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    change_id: str = Field(default_factory=new_id, min_length=1, max_length=64,
                           description="Unique id; a change seen twice is the same change.")
    alert_id: str = Field(min_length=1, max_length=64, description="The alert it changes.")
    action: Action = Field(description="acknowledge, assign, comment, resolve or reopen.")
    by: Who
    at: UtcDatetime = Field(description="When it was made, by the clock of the side that made it.")
    origin: str = Field(min_length=1, max_length=120, description="Where it was made: `site:<id>`, `console`, "
                                                                  "and the address or host when known.")
    note: str = Field(default="", max_length=MAX_NOTE_CHARS, description="What the person wrote.")
    assignee: str | None = Field(default=None, max_length=120, description="With assign: who takes it "
                                                                           "(null: nobody).")
    outcome: Outcome | None = Field(default=None, description="With resolve: how it ended.")

    @model_validator(mode="after")
    def _fields_fit_the_action(self) -> AlertChange:
        if self.action is Action.RESOLVE and self.outcome is None:
            raise ValueError("a resolve needs an outcome")
        if self.action is not Action.RESOLVE and self.outcome is not None:
            raise ValueError(f"{self.action.value} takes no outcome")
        if self.action is not Action.ASSIGN and self.assignee is not None:
            raise ValueError(f"{self.action.value} takes no assignee")
        if self.action is Action.COMMENT and not self.note.strip():
            raise ValueError("a comment needs a note")
        return self

    @property
    def order(self) -> tuple[float, str]:
        """The fixed order every side folds in: time, then id (ids are unique, so no two changes tie)."""
        return (self.at.timestamp(), self.change_id)


class ChangeConflict(ValueError):
    """Two changes share an id but differ: one of the sides is broken or lying; neither is taken."""


class Lifecycle(BaseModel):
    """What the fold of an alert's changes says now."""

    model_config = ConfigDict(frozen=True)

    state: AlertState = AlertState.NEW
    round: int = Field(default=0, description="How many times it was reopened.")
    acknowledged_by: str | None = None
    acknowledged_at: UtcDatetime | None = None
    resolved_by: str | None = None
    resolved_at: UtcDatetime | None = None
    outcome: Outcome | None = None
    assignee: str | None = None
    last_change_id: str | None = None


_RANK = {AlertState.NEW: 0, AlertState.ACKNOWLEDGED: 1, AlertState.RESOLVED: 2}


def fold(changes: Iterable[AlertChange]) -> Lifecycle:
    """The state an alert's changes give, the same for any order or repetition of the same changes."""
    state, round_, assignee = AlertState.NEW, 0, None
    acked: AlertChange | None = None
    resolved: AlertChange | None = None
    last: AlertChange | None = None
    for change in sorted(_unique(changes).values(), key=lambda c: c.order):
        last = change
        if change.action is Action.REOPEN:
            state, round_, acked, resolved = AlertState.NEW, round_ + 1, None, None
        elif change.action is Action.ACKNOWLEDGE:
            acked = acked or change  # the first acknowledgement of a round is the one that counts
            state = max(state, AlertState.ACKNOWLEDGED, key=_RANK.__getitem__)
        elif change.action is Action.RESOLVE:
            resolved = change  # the last resolution of a round wins; earlier ones stay in the history
            state = AlertState.RESOLVED
        elif change.action is Action.ASSIGN:
            assignee = change.assignee
    return Lifecycle(
        state=state, round=round_, assignee=assignee,
        acknowledged_by=acked.by if acked else None, acknowledged_at=acked.at if acked else None,
        resolved_by=resolved.by if resolved else None, resolved_at=resolved.at if resolved else None,
        outcome=resolved.outcome if resolved else None, last_change_id=last.change_id if last else None,
    )


def merge(*histories: Iterable[AlertChange]) -> list[AlertChange]:
    """The union of several sides' changes, each once, in fold order; a change id used for two different
    changes is a ChangeConflict."""
    union: dict[str, AlertChange] = {}
    for history in histories:
        for change_id, change in _unique(history).items():
            if change_id in union and union[change_id] != change:
                raise ChangeConflict(f"change {change_id} of alert {change.alert_id} arrived with two contents")
            union[change_id] = change
    return sorted(union.values(), key=lambda c: c.order)


def _unique(changes: Iterable[AlertChange]) -> dict[str, AlertChange]:
    seen: dict[str, AlertChange] = {}
    for change in changes:
        if change.change_id in seen and seen[change.change_id] != change:
            raise ChangeConflict(f"change {change.change_id} of alert {change.alert_id} arrived with two contents")
        seen[change.change_id] = change
    return seen


def next_action_allowed(current: Lifecycle, action: Action) -> Literal[True] | str:
    """Whether a person may make this change now (True), or why not: a console or CLI asks before recording one.
    The fold itself accepts anything, since a change made on the other side while the link was down stands."""
    if action is Action.REOPEN and current.state is not AlertState.RESOLVED:
        return "only a resolved alert can be reopened"
    if action in (Action.ACKNOWLEDGE, Action.RESOLVE) and current.state is AlertState.RESOLVED:
        return "the alert is resolved: reopen it first"
    if action is Action.ACKNOWLEDGE and current.state is AlertState.ACKNOWLEDGED:
        return "the alert is already acknowledged"
    return True
