"""Multi-person tracker: detections per frame in, people with stable ids out, through short occlusions.

Each track carries a constant-velocity model of its box centre. Every frame the tracker predicts where each
track should be, then pairs predictions with detections by a minimum-cost assignment (a small Hungarian
solver; n is at most about ten people). The cost is the centre distance in box heights plus (1 - IoU).

Gating rule: a detection may join a track only if

- its box overlaps the track's predicted box by IoU >= `iou_gate`, and
- its centre lies within ``JITTER_H + max_jump * elapsed`` box heights of the predicted centre, where
  `elapsed` is the time since the track was last matched. `max_jump` is the largest unpredicted centre
  move per second (a person stopping, starting or turning), in box heights; `JITTER_H` covers the
  detector's box jitter and a new track's first step, taken before its velocity is known.

Time: call `update` after each detector run. The detector only runs while the motion gate sees movement
(plus a slow heartbeat), so a long pause between runs means a still scene, not missing people: at most
`max_gap_s` of each pause counts towards a track's age and its predicted motion. A person standing still
for a minute therefore keeps their id when the next detector run sees them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from vision.boxes import Detection

Anchor = Literal["center", "foot"]

JITTER_H = 0.25
VELOCITY_WINDOW_S = 0.5
HISTORY_MAX = 16
GATED_COST = 1e6


@dataclass(frozen=True)
class Track:
    """A confirmed person: `box` is the latest detection, or its prediction while `missed_s` > 0 (coasting).

    `origin` is the detection that started the track; `last_seen` is the `t` of its latest match; `velocity`
    is the box centre's in px/s; `missed_s` counts only detector time (see `Tracker`), not still pauses.
    """

    id: int
    box: Detection
    origin: Detection
    hits: int
    last_seen: float
    missed_s: float
    velocity: tuple[float, float]

    @property
    def coasting(self) -> bool:
        """True while the person is unseen and `box` is only a prediction."""
        return self.missed_s > 0

    def anchor(self, kind: Anchor = "foot") -> tuple[float, float]:
        """The point that is counted against a door line: the box centre or the middle of its bottom edge."""
        return self.box.foot if kind == "foot" else self.box.center


@dataclass
class _State:
    box: Detection
    origin: Detection
    seen_clock: float
    last_seen: float
    hits: int = 1
    vx: float = 0.0
    vy: float = 0.0
    id: int = 0
    history: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=HISTORY_MAX))

    def __post_init__(self) -> None:
        self.history.append((self.seen_clock, *self.box.center))

    def predicted(self, clock: float) -> Detection:
        dt = clock - self.seen_clock
        dx, dy = self.vx * dt, self.vy * dt
        b = self.box
        return replace(b, x1=b.x1 + dx, y1=b.y1 + dy, x2=b.x2 + dx, y2=b.y2 + dy)

    def absorb(self, det: Detection, clock: float, t: float) -> None:
        self.box, self.seen_clock, self.last_seen = det, clock, t
        self.hits += 1
        # Velocity is the least-squares slope over the last VELOCITY_WINDOW_S of sightings (at least two), not
        # a difference of two frames: at 15 fps a few pixels of box jitter would otherwise be 100 px/s of noise.
        self.history.append((clock, *det.center))
        while len(self.history) > 2 and clock - self.history[0][0] > VELOCITY_WINDOW_S:
            self.history.popleft()
        # plain Python: at most HISTORY_MAX points, where numpy's per-call cost would dominate
        n = len(self.history)
        mt = sum(h[0] for h in self.history) / n
        mx = sum(h[1] for h in self.history) / n
        my = sum(h[2] for h in self.history) / n
        spread = sum((h[0] - mt) ** 2 for h in self.history)
        if spread > 0:
            self.vx = sum((h[0] - mt) * (h[1] - mx) for h in self.history) / spread
            self.vy = sum((h[0] - mt) * (h[2] - my) for h in self.history) / spread

    def snapshot(self, clock: float) -> Track:
        missed = clock - self.seen_clock
        box = self.predicted(clock) if missed > 0 else self.box
        return Track(self.id, box, self.origin, self.hits, self.last_seen, missed, (self.vx, self.vy))


def min_cost_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """Row-column pairs of minimum total cost (Hungarian algorithm, O(n^2 m)); every row or column is used."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return []
    if n > m:
        return sorted((r, c) for c, r in min_cost_assignment(cost.T))
    rows = cost.tolist()  # element access on lists, not numpy scalars
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    owner, way = [0] * (m + 1), [0] * (m + 1)
    for row in range(1, n + 1):
        owner[0], col = row, 0
        slack, used = [inf] * (m + 1), [False] * (m + 1)
        while owner[col]:
            used[col] = True
            r, delta, nxt = owner[col], inf, 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = rows[r - 1][j - 1] - u[r] - v[j]
                    if reduced < slack[j]:
                        slack[j], way[j] = reduced, col
                    if slack[j] < delta:
                        delta, nxt = slack[j], j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    slack[j] -= delta
            col = nxt
        while col:
            prev = way[col]
            owner[col] = owner[prev]
            col = prev
    return sorted((owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j])


class Tracker:
    """Gives each person a stable id across frames; ids count up from 1 as tracks are confirmed."""

    def __init__(
        self,
        max_missed_s: float = 1.0,
        min_hits: int = 2,
        iou_gate: float = 0.1,
        max_jump: float = 0.6,
        max_gap_s: float = 0.5,
    ) -> None:
        if max_missed_s < 0 or min_hits < 1 or not 0 <= iou_gate <= 1 or max_jump < 0 or max_gap_s <= 0:
            raise ValueError("tracker needs max_missed_s >= 0, min_hits >= 1, 0 <= iou_gate <= 1, "
                             "max_jump >= 0 and max_gap_s > 0")
        self.max_missed_s = max_missed_s
        self.min_hits = min_hits
        self.iou_gate = iou_gate
        self.max_jump = max_jump
        self.max_gap_s = max_gap_s
        self._states: list[_State] = []
        self._next_id = 1
        self._clock = 0.0
        self._last_t: float | None = None

    def update(self, detections: list[Detection], t: float) -> list[Track]:
        """Take one detector run's boxes at monotonic time `t` (s); return the confirmed live tracks."""
        if self._last_t is not None:
            self._clock += min(max(t - self._last_t, 0.0), self.max_gap_s)
        self._last_t = t
        pairs = self._match(detections)
        matched_states = {s for s, _ in pairs}
        matched_dets = {d for _, d in pairs}
        for s, d in pairs:
            self._states[s].absorb(detections[d], self._clock, t)
        live = [
            state for i, state in enumerate(self._states)
            if i in matched_states or (state.id and self._clock - state.seen_clock <= self.max_missed_s)
        ]
        live += [_State(det, det, self._clock, t) for i, det in enumerate(detections) if i not in matched_dets]
        for state in live:
            if not state.id and state.hits >= self.min_hits:
                state.id, self._next_id = self._next_id, self._next_id + 1
        self._states = live
        return [state.snapshot(self._clock) for state in live if state.id]

    def _match(self, detections: list[Detection]) -> list[tuple[int, int]]:
        if not self._states or not detections:
            return []
        # Plain Python: a door sees a handful of people, where numpy's per-call cost (highest right after an
        # invoke has flushed the caches) would be most of the time.
        cost: list[list[float]] = []
        allowed: list[list[bool]] = []
        for state in self._states:
            p = state.predicted(self._clock)
            p_area = max(0.0, p.x2 - p.x1) * max(0.0, p.y2 - p.y1)
            pcx, pcy = (p.x1 + p.x2) / 2, (p.y1 + p.y2) / 2
            radius = JITTER_H + self.max_jump * (self._clock - state.seen_clock)
            cost_row: list[float] = []
            allowed_row: list[bool] = []
            for d in detections:
                inter = max(0.0, min(p.x2, d.x2) - max(p.x1, d.x1)) * max(0.0, min(p.y2, d.y2) - max(p.y1, d.y1))
                union = p_area + (d.x2 - d.x1) * (d.y2 - d.y1) - inter
                iou = inter / union if union > 0 else 0.0
                height = max(((p.y2 - p.y1) + (d.y2 - d.y1)) / 2, 1.0)
                dist = math.hypot(pcx - (d.x1 + d.x2) / 2, pcy - (d.y1 + d.y2) / 2) / height
                ok = iou >= self.iou_gate and dist <= radius
                allowed_row.append(ok)
                cost_row.append(dist + 1.0 - iou if ok else GATED_COST)
            cost.append(cost_row)
            allowed.append(allowed_row)
        return [(s, d) for s, d in min_cost_assignment(np.array(cost)) if allowed[s][d]]
