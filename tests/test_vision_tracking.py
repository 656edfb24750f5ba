"""Tracker, door-line counter and motion gate on synthetic boxes and frames: no camera, no model."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from vision.boxes import Detection
from vision.doorline import Crossing, DoorLine, LineCounter
from vision.motion import MotionGate
from vision.tracking import Track, Tracker, min_cost_assignment

FPS = 10
BOX_W, BOX_H = 80.0, 200.0
# Horizontal door line across a 640x480 frame; inside is the bottom half (y > 240).
DOOR = DoorLine((0.0, 240.0), (640.0, 240.0), inside="right", band=20.0)

Person = Callable[[float], tuple[float, float] | None]


def box_at(foot: tuple[float, float], w: float = BOX_W, h: float = BOX_H) -> Detection:
    x, y = foot
    return Detection(x - w / 2, y - h, x + w / 2, y, 0.9)


def walker(start: tuple[float, float], velocity: tuple[float, float]) -> Person:
    return lambda t: (start[0] + velocity[0] * t, start[1] + velocity[1] * t)


def run(people: list[Person], duration_s: float, line: DoorLine = DOOR, jitter_px: float = 1.5,
        w: float = BOX_W, h: float = BOX_H) -> tuple[list[Crossing], list[list[Track]]]:
    """Feed each person's foot position (None = not detected) through tracker and counter at FPS."""
    rng = np.random.default_rng(7)
    tracker, counter = Tracker(), LineCounter(line, anchor="foot")
    crossings, frames = [], []
    for k in range(round(duration_s * FPS) + 1):
        t = k / FPS
        dets = []
        for person in people:
            foot = person(t)
            if foot is not None:
                fx, fy = foot + rng.normal(0, jitter_px, 2)
                dets.append(box_at((fx, fy), w, h))
        tracks = tracker.update(dets, t)
        frames.append(tracks)
        crossings += counter.update(tracks, t)
    return crossings, frames


def all_ids(frames: list[list[Track]]) -> set[int]:
    return {track.id for tracks in frames for track in tracks}


def id_near(tracks: list[Track], foot: tuple[float, float]) -> int:
    best = min(tracks, key=lambda tr: np.hypot(tr.box.foot[0] - foot[0], tr.box.foot[1] - foot[1]))
    assert np.hypot(best.box.foot[0] - foot[0], best.box.foot[1] - foot[1]) < 30
    return best.id


def test_two_people_in_single_file_get_two_ids_and_two_entries() -> None:
    """The follower walks 80 px (0.4 box heights) behind, their boxes overlapping, and is hidden twice."""
    lead = walker((300.0, 120.0), (0.0, 150.0))
    follow_walk = walker((320.0, 40.0), (0.0, 150.0))

    def follower(t: float) -> tuple[float, float] | None:
        return None if round(t * FPS) in (10, 12) else follow_walk(t)

    crossings, frames = run([lead, follower], 2.2)
    assert [c.direction for c in crossings] == ["in", "in"]
    assert all_ids(frames) == {1, 2}
    assert len({c.track_id for c in crossings}) == 2
    assert id_near(frames[-1], lead(2.2)) == crossings[0].track_id


def test_two_people_crossing_paths_keep_their_ids() -> None:
    """They pass each other; the farther one is hidden behind the nearer one for 0.3 s at the crossing."""
    near_walk = walker((100.0, 330.0), (200.0, 0.0))
    far_walk = walker((540.0, 300.0), (-200.0, 0.0))

    def far(t: float) -> tuple[float, float] | None:
        return None if abs(near_walk(t)[0] - far_walk(t)[0]) < 50 else far_walk(t)

    _, frames = run([near_walk, far], 2.2, w=60.0, h=150.0)
    assert all_ids(frames) == {1, 2}
    start, end = frames[2], frames[-1]
    assert id_near(start, near_walk(0.2)) == id_near(end, near_walk(2.2))
    assert id_near(start, far_walk(0.2)) == id_near(end, far_walk(2.2))
    assert id_near(end, near_walk(2.2)) != id_near(end, far_walk(2.2))


def test_person_hidden_for_half_a_second_keeps_id_and_counts_once() -> None:
    walk = walker((320.0, 120.0), (0.0, 150.0))  # reaches the line at t = 0.8 s

    def person(t: float) -> tuple[float, float] | None:
        return None if 0.55 <= t <= 1.05 else walk(t)

    crossings, frames = run([person], 2.0)
    assert all_ids(frames) == {1}
    assert [(c.track_id, c.direction) for c in crossings] == [(1, "in")]


def test_jitter_inside_the_band_counts_nothing() -> None:
    def person(t: float) -> tuple[float, float]:
        if t < 0.6:
            return 320.0, 180.0 + 100.0 * t
        return 320.0, 240.0 + 10.0 * np.sin(2 * np.pi * 1.5 * (t - 0.6))

    crossings, frames = run([person], 4.0, jitter_px=0.0)
    assert all_ids(frames) == {1}
    assert crossings == []


def test_jitter_wider_than_the_band_does_count() -> None:
    """Control for the band test: the same motion at +-40 px is real crossing, both ways."""
    def person(t: float) -> tuple[float, float]:
        return 320.0, 240.0 - 40.0 * np.cos(2 * np.pi * 0.5 * t)

    crossings, _ = run([person], 4.0, jitter_px=0.0)
    assert [c.direction for c in crossings] == ["in", "out", "in", "out"]


def test_walking_in_and_back_out_gives_one_in_and_one_out() -> None:
    def person(t: float) -> tuple[float, float]:
        return 320.0, 150.0 + 180.0 * (1 - abs(t - 1.0))  # 150 -> 330 -> 150

    crossings, _ = run([person], 2.0)
    assert [(c.track_id, c.direction) for c in crossings] == [(1, "in"), (1, "out")]
    assert crossings[0].t < crossings[1].t
    assert crossings[0].point[1] > 260 and crossings[1].point[1] < 220


def test_person_first_seen_inside_counts_nothing_until_walking_out() -> None:
    crossings, _ = run([walker((320.0, 300.0), (0.0, 80.0))], 1.5)
    assert crossings == []
    crossings, _ = run([walker((320.0, 300.0), (0.0, -100.0))], 1.5)
    assert [c.direction for c in crossings] == ["out"]


def test_person_confirmed_inside_the_band_still_counts() -> None:
    """First detected just outside the band, already in it when confirmed: the first detection decides."""
    crossings, _ = run([walker((320.0, 212.0), (0.0, 150.0))], 1.0, jitter_px=0.0)
    assert [c.direction for c in crossings] == ["in"]


def test_crossing_beyond_the_segment_and_its_margin_counts_nothing() -> None:
    door = DoorLine((200.0, 240.0), (440.0, 240.0), inside="right", band=20.0, margin=0.15)  # x 164-476
    outside, _ = run([walker((520.0, 120.0), (0.0, 150.0))], 2.0, line=door)
    within_margin, _ = run([walker((460.0, 120.0), (0.0, 150.0))], 2.0, line=door)
    assert outside == []
    assert [c.direction for c in within_margin] == ["in"]


def test_walking_round_the_end_of_the_door_counts_nothing() -> None:
    """Out in front, sideways past the end of the segment, back behind the line, then into the doorway."""
    door = DoorLine((200.0, 240.0), (440.0, 240.0), inside="right")

    def person(t: float) -> tuple[float, float]:
        if t < 1.0:
            return 320.0 + 260.0 * t, 150.0
        if t < 2.0:
            return 580.0, 150.0 + 200.0 * (t - 1.0)
        return 580.0 - 260.0 * (t - 2.0), 350.0

    crossings, _ = run([person], 3.0, line=door)
    assert crossings == []


def test_door_line_sides_follow_the_screen_convention() -> None:
    horizontal = DoorLine((0.0, 240.0), (640.0, 240.0), inside="left")
    assert horizontal.signed_distance((320.0, 100.0)) == pytest.approx(140.0)
    assert horizontal.signed_distance((320.0, 300.0)) == pytest.approx(-60.0)
    down = DoorLine((320.0, 0.0), (320.0, 480.0), inside="left")
    assert down.signed_distance((400.0, 50.0)) == pytest.approx(80.0)
    assert DoorLine((320.0, 0.0), (320.0, 480.0), inside="right").signed_distance((400.0, 50.0)) < 0
    scaled = DoorLine.from_fractions((0.25, 0.5), (0.75, 0.5), "right", width=640, height=480)
    assert (scaled.p1, scaled.p2) == ((160.0, 240.0), (480.0, 240.0))
    assert scaled.covers((480.0 + 0.14 * 320, 100.0)) and not scaled.covers((480.0 + 0.16 * 320, 100.0))
    with pytest.raises(ValueError):
        DoorLine((1.0, 1.0), (1.0, 1.0), inside="left")


def test_tracker_drops_a_track_after_max_missed_and_keeps_it_through_a_still_scene() -> None:
    tracker = Tracker(max_missed_s=1.0)
    still = box_at((320.0, 300.0))
    for k in range(3):
        tracks = tracker.update([still], k / FPS)
    assert [tr.id for tr in tracks] == [1]
    # Detector idle for 30 s (nothing moved), then sees the same person: same id.
    assert [tr.id for tr in tracker.update([still], 30.0)] == [1]
    # Detector running and seeing nobody: the track coasts, then goes.
    alive = [tracker.update([], 30.0 + k / FPS) for k in range(1, 13)]
    assert alive[5][0].coasting and alive[5][0].id == 1
    assert alive[-1] == []
    assert [tr.id for tr in tracker.update([still], 31.4)] == []  # new tentative track
    assert [tr.id for tr in tracker.update([still], 31.5)] == [2]


def test_coasting_track_moves_on_its_velocity() -> None:
    tracker = Tracker()
    for k in range(5):
        tracker.update([box_at((100.0 + 20.0 * k, 300.0))], k / FPS)  # 200 px/s to the right
    (track,) = tracker.update([], 0.7)
    assert track.missed_s == pytest.approx(0.3)
    assert track.box.foot[0] == pytest.approx(180.0 + 200.0 * 0.3, abs=1.0)
    assert track.velocity[0] == pytest.approx(200.0, rel=0.05)


def test_min_cost_assignment_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    for n, m in [(1, 1), (3, 3), (4, 6), (6, 4), (5, 5), (2, 7)]:
        for _ in range(20):
            cost = rng.random((n, m))
            pairs = min_cost_assignment(cost)
            assert len(pairs) == min(n, m)
            assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
            total = sum(cost[r, c] for r, c in pairs)
            if n <= m:
                best = min(sum(cost[r, c] for r, c in enumerate(cols)) for cols in itertools.permutations(range(m), n))
            else:
                best = min(sum(cost[r, c] for c, r in enumerate(rows)) for rows in itertools.permutations(range(n), m))
            assert total == pytest.approx(best)


# A textured wall of 10 px tiles, grey levels 90-170, the same in every frame.
WALL = np.kron(np.random.default_rng(11).integers(90, 170, (48, 64, 3), dtype=np.uint8),
               np.ones((10, 10, 1), dtype=np.uint8))


def scene(rng: np.random.Generator, block_x: int | None) -> np.ndarray:
    """The 640x480 wall with sigma-3 sensor noise and, optionally, a dark 60x120 block at x, y=200."""
    frame = WALL + 3.0 * rng.standard_normal(WALL.shape, dtype=np.float32)
    if block_x is not None:
        frame[200:320, block_x:block_x + 60] = 30.0
    return np.clip(frame, 0, 255).astype(np.uint8)


def test_motion_gate_ignores_sensor_noise_on_a_still_scene() -> None:
    rng = np.random.default_rng(5)
    gate = MotionGate()
    moved = [gate.update(scene(rng, None)) for _ in range(40)]
    assert not any(moved)
    assert gate.last_fraction < gate.min_fraction


@pytest.mark.parametrize(("xs", "expected"), [(range(40, 240, 10), True), (range(400, 560, 8), False)])
def test_motion_gate_sees_a_moving_block_only_inside_its_roi(xs: range, expected: bool) -> None:
    rng = np.random.default_rng(6)
    gate = MotionGate(roi=(0, 0, 320, 480))
    for _ in range(10):
        gate.update(scene(rng, None))
    moved = [gate.update(scene(rng, x)) for x in xs]
    assert all(moved) if expected else not any(moved)
    whole = MotionGate()
    whole.update(scene(rng, None))
    assert whole.update(scene(rng, xs[0]))
