"""Door line geometry and the counter that turns tracked people crossing it into "in" and "out" crossings.

Side convention. A `DoorLine` runs from `p1` to `p2` in image pixels (x right, y down). "left" and "right"
are the sides on your left and right hand as you walk along the line from p1 to p2 on the picture as it is
shown on screen. For p1=(0, 240), p2=(640, 240) (walking to the right), "left" is the top half, y < 240,
and "right" is y > 240. For p1=(320, 0), p2=(320, 480) (walking down), "left" is x > 320.

Config stays resolution-independent by giving points as fractions of the frame (0-1) to
`DoorLine.from_fractions`; `band` is always in pixels of the frame being counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vision.tracking import Anchor, Track

Side = Literal["left", "right"]
Direction = Literal["in", "out"]
Point = tuple[float, float]


@dataclass(frozen=True)
class DoorLine:
    """A directed segment with an inside; points nearer than `band` px are undecided, beyond `margin` ignored."""

    p1: Point
    p2: Point
    inside: Side
    band: float = 20.0
    margin: float = 0.15

    def __post_init__(self) -> None:
        if self.p1 == self.p2:
            raise ValueError(f"door line needs two distinct points, got {self.p1} twice")
        if self.inside not in ("left", "right"):
            raise ValueError(f"door line inside must be 'left' or 'right', got {self.inside!r}")
        if self.band < 0 or self.margin < 0:
            raise ValueError("door line band and margin must not be negative")

    @classmethod
    def from_fractions(
        cls, p1: Point, p2: Point, inside: Side, width: int, height: int, band: float = 20.0, margin: float = 0.15
    ) -> DoorLine:
        """The line for points given as fractions (0-1) of a `width` x `height` frame."""
        return cls((p1[0] * width, p1[1] * height), (p2[0] * width, p2[1] * height), inside, band, margin)

    @property
    def length(self) -> float:
        """Length of the segment in pixels."""
        return math.dist(self.p1, self.p2)

    def signed_distance(self, point: Point) -> float:
        """Pixels from the (infinite) line to `point`: positive inside, negative outside."""
        dx, dy = self.p2[0] - self.p1[0], self.p2[1] - self.p1[1]
        cross = dx * (point[1] - self.p1[1]) - dy * (point[0] - self.p1[0])
        # With y growing downward, a negative cross product is on the left of p1 -> p2 as seen on screen.
        left = -cross / self.length
        return left if self.inside == "left" else -left

    def covers(self, point: Point) -> bool:
        """True when `point` projects onto the segment extended by `margin` x length at each end."""
        dx, dy = self.p2[0] - self.p1[0], self.p2[1] - self.p1[1]
        along = (dx * (point[0] - self.p1[0]) + dy * (point[1] - self.p1[1])) / (dx * dx + dy * dy)
        return -self.margin <= along <= 1 + self.margin


@dataclass(frozen=True)
class Crossing:
    """A track's decided side changed: "in" means outside to inside; `point` is its anchor when decided."""

    track_id: int
    direction: Direction
    t: float
    point: Point


class LineCounter:
    """Counts tracks across one door line with hysteresis, remembering each live track's decided side.

    A track's side is decided only where its anchor is covered by the line and more than `band` px from it;
    a change of decided side is one crossing. Leaving the covered extent forgets the side, so walking round
    the end of the door never counts. Coasting tracks (predicted, unseen) decide nothing. A newly confirmed
    track starts from the side of the detection that began it, so confirmation lag cannot hide a crossing.
    """

    def __init__(self, line: DoorLine, anchor: Anchor = "foot") -> None:
        self.line = line
        self.anchor = anchor
        self._sides: dict[int, Direction | None] = {}

    def update(self, tracks: list[Track], t: float) -> list[Crossing]:
        """Take the tracker's live tracks at time `t`; return the crossings they made since the last call."""
        live = {track.id for track in tracks}
        self._sides = {tid: side for tid, side in self._sides.items() if tid in live}
        crossings = []
        for track in tracks:
            if track.id not in self._sides:
                origin = track.origin.foot if self.anchor == "foot" else track.origin.center
                self._sides[track.id] = self._decide(origin, None)
            if track.coasting:
                continue
            point = track.anchor(self.anchor)
            before = self._sides[track.id]
            after = self._decide(point, before)
            if before is not None and after is not None and after != before:
                crossings.append(Crossing(track.id, after, t, point))
            self._sides[track.id] = after
        return crossings

    def _decide(self, point: Point, before: Direction | None) -> Direction | None:
        if not self.line.covers(point):
            return None
        distance = self.line.signed_distance(point)
        if abs(distance) <= self.line.band:
            return before
        return "in" if distance > 0 else "out"
