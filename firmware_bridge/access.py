"""Who may pass, decided locally: cardholders, weekly schedules, and the decision with its reason (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.card_formats import canonical_format

DenyReason = Literal["unknown_card", "disabled", "expired", "not_yet_valid", "outside_schedule", "wrong_door",
                     "parity_error", "unknown_length"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^(?P<days>[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)\s+"
                     r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")


@dataclass(frozen=True)
class Window:
    """Days of the week (0 = Monday) and a time span [start, end) within each of them."""

    days: frozenset[int]
    start: time
    end: time

    def contains(self, when: datetime) -> bool:
        return when.weekday() in self.days and self.start <= when.time() < self.end


def _days(spec: str) -> frozenset[int]:
    days: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"unknown day in {part!r}; use {', '.join(DAYS)}")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def _time(text: str) -> time:
    hours, minutes = int(text[:2]), int(text[3:])
    if hours == 24 and minutes == 0:
        return time.max
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day")
    return time(hours, minutes)


def parse_schedule(spec: str) -> tuple[Window, ...] | None:
    """`always` (None: no limit) or windows like `mon-fri 07:00-19:00; sat 09:00-13:00`; ValueError says why not."""
    text = " ".join(spec.lower().split())
    if text in ("", "always", "24/7"):
        return None
    windows = []
    for part in text.split(";"):
        part = part.strip()
        match = _WINDOW.match(part)
        if not match:
            raise ValueError(f"{part!r} is not `days HH:MM-HH:MM` (e.g. `mon-fri 07:00-19:00`)")
        start, end = _time(match["start"]), _time(match["end"])
        if end <= start:
            raise ValueError(f"{part!r}: the end must come after the start (split a span across midnight in two)")
        windows.append(Window(_days(match["days"]), start, end))
    return tuple(windows)


class Cardholder(BaseModel):
    """A person who may pass, the doors they may use, and when."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64, description="Cardholder id (employee number, badge id).")
    name: str = Field(default="", max_length=200, description="Display name.")
    credential: str = Field(min_length=1, max_length=64, description="`facility:card` for Wiegand cards, or the "
                            "card's text for ASCII (OSDP) cards.")
    card_format: str | None = Field(default=None, description="Only this card format matches; any when empty.")
    enabled: bool = Field(default=True, description="False suspends the card without deleting it.")
    valid_from: date | None = Field(default=None, description="First day the card works.")
    valid_until: date | None = Field(default=None, description="Last day the card works.")
    doors: tuple[str, ...] = Field(default=("*",), description="Door ids, or `*` for every door.")
    schedule: str = Field(default="always", description="`always`, or `mon-fri 07:00-19:00; sat 09:00-13:00`.")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("credential")
    @classmethod
    def _credential(cls, value: str) -> str:
        facility, sep, card = value.partition(":")
        if sep and facility.isdigit() and card.isdigit():
            return f"{int(facility)}:{int(card)}"  # `012:00345` and `12:345` are the same card
        return value

    @field_validator("card_format", mode="before")
    @classmethod
    def _blank_format(cls, value: object) -> object:
        if value in ("", None):
            return None
        if isinstance(value, str) and value.strip().lower() == "ascii":
            return "ascii"  # OSDP text cards, as the badge service names their format
        return canonical_format(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class Decision:
    """Grant or deny, and why."""

    granted: bool
    reason: DenyReason | None
    cardholder: Cardholder | None

    @property
    def who(self) -> str | None:
        return self.cardholder.id if self.cardholder else None


def decide(holder: Cardholder | None, door: str, when: datetime) -> Decision:
    """The decision for `holder` (None: no such card) at `door` at local time `when`."""
    if holder is None:
        return Decision(False, "unknown_card", None)
    if not holder.enabled:
        return Decision(False, "disabled", holder)
    today = when.date()
    if holder.valid_until is not None and today > holder.valid_until:
        return Decision(False, "expired", holder)
    if holder.valid_from is not None and today < holder.valid_from:
        return Decision(False, "not_yet_valid", holder)
    if "*" not in holder.doors and door not in holder.doors:
        return Decision(False, "wrong_door", holder)
    windows = parse_schedule(holder.schedule)
    if windows is not None and not any(w.contains(when) for w in windows):
        return Decision(False, "outside_schedule", holder)
    return Decision(True, None, holder)
