"""The demo's one clock: every simulator that plays part of the story (the door script, the camera's video)
follows one schedule, so cycle N of each starts at the same instant however long the demo runs.

A simulator joins the story from its `demo_settings` (called before any simulator starts, so nobody can start
the story without it), says `ready` once its device is connected, and waits for the schedule. The story starts
`STORY_LEAD_S` after the last part is ready, or at the wait's deadline with the missing parts named.

    schedule = STORY.wait(stop)           # None when stopped first
    cycle = schedule.first_cycle_from(time.monotonic())
    stop.wait(schedule.at(cycle, 3.0) - time.monotonic())   # 3 s into cycle N, on everyone's clock
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

STORY_PERIOD_S = 40.0  # one cycle: the door script and one pass of the camera's video
STORY_LEAD_S = 1.0  # from the last part ready to the start of cycle 0
READY_DEADLINE_S = 90.0  # a part not ready by then is named, and the story starts without waiting for it
_EPSILON_S = 1e-6  # an instant computed as at(N, 0) is in cycle N, whatever the float rounding made of it


@dataclass(frozen=True)
class StorySchedule:
    """Cycle N starts at `epoch + N * period_s` (time.monotonic(), which all threads of the demo share)."""

    epoch: float
    period_s: float = STORY_PERIOD_S

    def __post_init__(self) -> None:
        if self.period_s <= 0:
            raise ValueError(f"period_s must be > 0, not {self.period_s}")

    def at(self, cycle: int, offset_s: float) -> float:
        """When `offset_s` into cycle `cycle` happens."""
        return self.epoch + cycle * self.period_s + offset_s

    def position(self, t: float) -> tuple[int, float]:
        """The cycle running at `t` and how far into it; cycle -1 before the story starts."""
        if t < self.epoch:
            return -1, 0.0
        cycle = math.floor((t - self.epoch + _EPSILON_S) / self.period_s)
        return cycle, max(0.0, t - self.at(cycle, 0.0))

    def first_cycle_from(self, t: float) -> int:
        """The first cycle that starts at or after `t`: where a part that joins late begins."""
        return max(0, math.ceil((t - self.epoch - _EPSILON_S) / self.period_s))


class StoryClock:
    """Starts one StorySchedule once every part that joined is ready; thread-safe."""

    def __init__(self, period_s: float = STORY_PERIOD_S, lead_s: float = STORY_LEAD_S) -> None:
        self.period_s = period_s
        self.lead_s = lead_s
        self._cond = threading.Condition()
        self._parts: dict[str, bool] = {}
        self._schedule: StorySchedule | None = None

    def reset(self) -> None:
        """Forget the parts and the schedule (a new demo run in this process)."""
        with self._cond:
            self._parts.clear()
            self._schedule = None

    def join(self, part: str) -> None:
        """`part` plays in the story: the story waits for it to be ready."""
        with self._cond:
            self._parts.setdefault(part, False)

    def ready(self, part: str) -> None:
        """`part` is connected and can play; the last one to say so starts the story."""
        with self._cond:
            self._parts[part] = True
            if all(self._parts.values()):
                self._start()

    @property
    def schedule(self) -> StorySchedule | None:
        """The schedule once started."""
        with self._cond:
            return self._schedule

    def wait(self, stop: threading.Event, deadline_s: float = READY_DEADLINE_S) -> StorySchedule | None:
        """The schedule, once every part is ready or at the deadline; None if `stop` is set first."""
        end = time.monotonic() + deadline_s
        with self._cond:
            while self._schedule is None and not stop.is_set():
                left = end - time.monotonic()
                if left <= 0:
                    missing = sorted(p for p, ok in self._parts.items() if not ok)
                    logger.warning("demo story: %s not ready within %.0f s; starting without waiting",
                                   ", ".join(missing), deadline_s)
                    self._start()
                    break
                self._cond.wait(min(left, 0.5))
            return None if stop.is_set() else self._schedule

    def _start(self) -> None:
        if self._schedule is None:
            self._schedule = StorySchedule(time.monotonic() + self.lead_s, self.period_s)
            self._cond.notify_all()


STORY = StoryClock()
