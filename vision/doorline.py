"""Door line geometry and the counter that turns tracked people crossing it into "in" and "out" crossings.

Side convention. A `DoorLine` runs from `p1` to `p2` in image pixels (x right, y down). "left" and "right"
are the sides on your left and right hand as you walk along the line from p1 to p2 on the picture as it is
shown on screen. For p1=(0, 240), p2=(640, 240) (walking to the right), "left" is the top half, y < 240,
and "right" is y > 240. For p1=(320, 0), p2=(320, 480) (walking down), "left" is x > 320.

Because "left" of a line drawn downwards is the picture's right, config can instead name the inside with a
point on the picture (`inside_side` turns it into a side), and `describe_inside` says in the picture's words
which side counts as inside, for the start-up log, `vision replay` and set-up.

Config stays resolution-independent by giving points as fractions of the frame (0-1) to
`DoorLine.from_fractions`; `band` is always in pixels of the frame being counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from edge.config_vision import inside_side, line_cross
from vision.tracking import Anchor, Track

Side = Literal["left", "right"]
Direction = Literal["in", "out"]
Point = tuple[float, float]
Inside = Side | Point  # a side of p1 -> p2, or a point on the inside (fractions of the frame)


def describe_inside(p1: Point, p2: Point, inside: Inside) -> str:
    """In the picture's words which side of the line (points as fractions of the frame) counts as inside, e.g.
    "inside is the RIGHT of the picture (x > 0.5) for the line (0.5,0.05)->(0.5,0.95)"."""
    dx, dy = p2[0] - p1[0], p2[1] - p1[1]
    # The inside normal: (dy, -dx) points to the left of p1 -> p2 on screen.
    nx, ny = (dy, -dx) if inside_side(p1, p2, inside) == "left" else (-dy, dx)
    horizontal = "LEFT" if nx < 0 else "RIGHT"
    vertical = "TOP" if ny < 0 else "BOTTOM"
    if dx == 0:
        where = f"x {'<' if nx < 0 else '>'} {p1[0]:g}"
    elif dy == 0:
        where = f"y {'<' if ny < 0 else '>'} {p1[1]:g}"
    else:
        where = f"the side of the line towards the {vertical.lower()} {horizontal.lower()} corner"
    word = horizontal if abs(nx) >= abs(ny) else vertical
    given = f"`inside: {inside}`" if isinstance(inside, str) else f"the point ({inside[0]:g},{inside[1]:g})"
    return (f"inside is the {word} of the picture ({where}) for the line ({p1[0]:g},{p1[1]:g})->"
            f"({p2[0]:g},{p2[1]:g}) (set by {given})")


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
        cls, p1: Point, p2: Point, inside: Inside, width: int, height: int, band: float = 20.0, margin: float = 0.15
    ) -> DoorLine:
        """The line for points given as fractions (0-1) of a `width` x `height` frame; `inside` is a side or a
        point (fractions) on the inside."""
        return cls((p1[0] * width, p1[1] * height), (p2[0] * width, p2[1] * height), inside_side(p1, p2, inside),
                   band, margin)

    @property
    def length(self) -> float:
        """Length of the segment in pixels."""
        return math.dist(self.p1, self.p2)

    def signed_distance(self, point: Point) -> float:
        """Pixels from the (infinite) line to `point`: positive inside, negative outside."""
        left = -line_cross(self.p1, self.p2, point) / self.length
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
