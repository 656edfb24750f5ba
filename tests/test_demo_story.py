"""The demo's one story clock: the door script and the camera's video start every cycle together, however many
cycles the demo runs (they drifted: a 37.7 s video loop against a 34.5 s door script, each on its own clock, so
after about two minutes a tailgate became an unauthorized entry)."""

from __future__ import annotations

import threading
import time

import pytest

from edge.config import RulesSettings
from edge.demo_story import STORY_PERIOD_S, StoryClock, StorySchedule
from firmware_bridge import demo as badge_demo
from vision import demo as vision_demo

CYCLES = 2000
EPOCH = 912_345.678  # a monotonic clock of a box that has been up for ten days


def door_events(held_s: float = 8.0) -> list[tuple[float, str, str, object]]:
    """One cycle of the door script as (offset, what, door, detail), played against recording doors."""
    events: list[tuple[float, str, str, object]] = []
    now = [0.0]
    script = badge_demo.door_script(held_s, lambda door, card: events.append((now[0], "swipe", door, card)),
                                    lambda door, is_open: events.append((now[0], "contact", door, is_open)))
    for at, step in script:
        now[0] = at
        step()
    return events


def test_camera_shows_the_two_entering_just_after_alices_grant_in_every_cycle() -> None:
    rules = RulesSettings()
    grants = [at for at, what, door, card in door_events()
              if what == "swipe" and door == badge_demo.FRONT and card == badge_demo.ALICE]
    assert len(grants) == 1
    scene = vision_demo.story_scene()
    entries = [c for c in scene.ground_truth.crossings if c.direction == "in"]
    assert len(entries) == 2 and scene.ground_truth.exited == 0
    schedule = StorySchedule(EPOCH)
    for cycle in range(CYCLES):
        grant = schedule.at(cycle, grants[0])
        for entry in entries:
            # The instant the camera sends the frame in which this person is first across the line.
            shown = schedule.at(cycle, (entry.frame + 0.5) / scene.fps)
            assert vision_demo.frame_index(schedule, shown, scene.fps, scene.frames) == entry.frame, cycle
            assert grant < shown <= grant + rules.tailgate_window_s, (cycle, entry, shown - grant)
            assert shown < schedule.at(cycle + 1, 0.0), cycle


def test_video_cycle_and_door_script_fit_one_period_of_the_story() -> None:
    scene = vision_demo.story_scene()
    assert scene.frames == round(STORY_PERIOD_S * scene.fps)
    last_step = max(at for at, *_ in door_events())
    assert last_step + badge_demo.SETTLE_S <= STORY_PERIOD_S
    # The door held open longer than the rules allow closes within the cycle that opened it.
    assert [is_open for _, what, door, is_open in door_events() if what == "contact" and door == badge_demo.BACK] \
        == [True, False]


def test_video_shows_the_empty_door_until_the_story_starts() -> None:
    scene = vision_demo.story_scene()
    assert vision_demo.frame_index(None, EPOCH, scene.fps, scene.frames) == 0
    schedule = StorySchedule(EPOCH)
    assert vision_demo.frame_index(schedule, EPOCH - 5.0, scene.fps, scene.frames) == 0
    assert scene.placements(0) == []


def test_schedule_positions_do_not_drift_over_many_cycles() -> None:
    schedule = StorySchedule(EPOCH, 40.0)
    for cycle in range(0, 100_000, 997):
        assert schedule.position(schedule.at(cycle, 0.25)) == (cycle, pytest.approx(0.25, abs=1e-6))
        assert schedule.first_cycle_from(schedule.at(cycle, 0.25)) == cycle + 1
        assert schedule.first_cycle_from(schedule.at(cycle, 0.0)) == cycle
        assert schedule.position(schedule.at(cycle, 0.0))[0] == cycle
    assert schedule.position(EPOCH - 1) == (-1, 0.0)


def test_story_starts_when_the_last_part_is_ready_not_before() -> None:
    clock = StoryClock(lead_s=0.0)
    clock.join("badge")
    clock.join("vision")
    clock.ready("badge")
    assert clock.schedule is None
    clock.ready("vision")
    assert clock.schedule is not None
    assert clock.wait(threading.Event(), deadline_s=1.0) is clock.schedule


def test_story_starts_at_the_deadline_without_a_part_that_never_gets_ready() -> None:
    clock = StoryClock(lead_s=0.0)
    clock.join("badge")
    clock.join("vision")
    clock.ready("badge")
    before = time.monotonic()
    schedule = clock.wait(threading.Event(), deadline_s=0.3)
    assert schedule is not None and schedule.epoch >= before


def test_story_wait_returns_none_when_the_demo_stops_first() -> None:
    clock = StoryClock()
    clock.join("vision")
    stop = threading.Event()
    stop.set()
    assert clock.wait(stop, deadline_s=5.0) is None

