"""The demo's badge hardware: a simulated controller on a pty with two doors, cardholders, and a script of swipes."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge import topics
from edge.bus import Bus
from edge.config import Settings
from edge.demo_story import STORY, STORY_PERIOD_S, StorySchedule
from firmware_bridge.access import DAYS
from firmware_bridge.protocol import InputKind
from firmware_bridge.sim_controller import SerialPair, SimulatedController
from firmware_bridge.wiegand import encode

logger = logging.getLogger(__name__)
LINK_WAIT_S = 60.0
GRANT_AT_S = 3.0  # Alice's grant at the front door, seconds into each cycle of the story
SETTLE_S = 10.0  # quiet doors at the end of a cycle, so one cycle's alerts end before the next begins

CONTROLLER = "controller-1"
FRONT, BACK = "front", "back-office"
ALICE, BOB, CAROL, UNKNOWN = (12, 1001), (12, 1002), (12, 1003), (99, 4242)


def sim_port(data_dir: Path) -> Path:
    return data_dir / "sim" / f"{CONTROLLER}.tty"


def demo_settings(data_dir: Path) -> dict[str, Any]:
    """The `badge` section the demo runs with; the door script plays its part in the demo's story."""
    STORY.join("badge")
    return {
        "controllers": {
            CONTROLLER: {
                "port": str(sim_port(data_dir)),
                "doors": {
                    FRONT: {"reader": 0, "contact": 0, "rex": 0, "relay": 0, "unlock_ms": 3000},
                    BACK: {"reader": 1, "contact": 1, "rex": 1, "relay": 1, "unlock_ms": 3000},
                },
            }
        }
    }


def demo_cardholders(today: date) -> dict[str, Any]:
    """Alice may go anywhere, Bob only on a weekday that is not today, Carol's card expired yesterday."""
    other_day = DAYS[(today.weekday() + 3) % 7]
    return {
        "version": f"demo-{today.isoformat()}",
        "cardholders": [
            {"id": "alice", "name": "Alice Jansen", "credential": f"{ALICE[0]}:{ALICE[1]}", "doors": ["*"]},
            {"id": "bob", "name": "Bob de Vries", "credential": f"{BOB[0]}:{BOB[1]}", "doors": [BACK],
             "schedule": f"{other_day} 08:00-18:00"},
            {"id": "carol", "name": "Carol Smit", "credential": f"{CAROL[0]}:{CAROL[1]}",
             "valid_until": (today - timedelta(days=1)).isoformat()},
        ],
    }


Step = tuple[float, Callable[[], None]]  # seconds into the story's cycle, and what happens then


def door_script(held_s: float, swipe: Callable[[str, tuple[int, int]], None],
                contact: Callable[[str, bool], None]) -> list[Step]:
    """One cycle of the doors, sorted by time. Alice's grant at the front door comes 3 s in: the camera's
    video (vision.demo) shows her walking in with someone right behind her just after it."""
    script: list[Step] = [
        (GRANT_AT_S, lambda: swipe(FRONT, ALICE)), (3.5, lambda: contact(FRONT, True)),
        (5.0, lambda: contact(FRONT, False)),
        (6.0, lambda: swipe(BACK, ALICE)), (6.5, lambda: contact(BACK, True)),         # held open
        (7.0, lambda: swipe(FRONT, UNKNOWN)),
        (7.5, lambda: swipe(BACK, BOB)),
        (8.0, lambda: swipe(FRONT, CAROL)),
        (9.0, lambda: contact(FRONT, True)), (11.0, lambda: contact(FRONT, False)),  # forced
        *[(14.0 + 0.3 * i, lambda: swipe(FRONT, UNKNOWN)) for i in range(5)],          # a burst of denials
        (6.5 + held_s + 2.0, lambda: contact(BACK, False)),
    ]
    script.sort(key=lambda step: step[0])
    if script[-1][0] + SETTLE_S > STORY_PERIOD_S:
        raise ValueError(f"the door script needs {script[-1][0] + SETTLE_S:g} s, more than the story's cycle "
                         f"of {STORY_PERIOD_S:g} s (edge.rules max_open_s too long for the demo?)")
    return script


def play(script: list[Step], schedule: StorySchedule, stop: threading.Event) -> None:
    """Play the script once per cycle of `schedule` until `stop`; each step at its own instant of the
    schedule, so a step that ran late (a busy box) never pushes the later ones or cycles back."""
    cycle = schedule.first_cycle_from(time.monotonic())
    while not stop.is_set():
        for at, step in script:
            if stop.wait(max(0.0, schedule.at(cycle, at) - time.monotonic())):
                return
            step()
        cycle += 1


def run_simulated_site(settings: Settings, stop: threading.Event) -> None:
    """Create the controller's pty, publish the cardholder list, then play the door script until `stop`."""
    site = settings.site.id
    pair = SerialPair(sim_port(settings.data_dir))
    controller = SimulatedController(pair.master)
    for index in (0, 1):
        controller.set_input(InputKind.DOOR_CONTACT, index, False)
    controller.set_input(InputKind.TAMPER, 0, False)
    controller.start()
    bus = Bus(settings.mqtt, client_id=f"sitewarden-{site}-badge-sim", site=site, service=None)
    bus.start()
    if not bus.connected.wait(10):
        logger.error("badge simulator cannot reach the local broker %s", bus.where)
    today = datetime.now(ZoneInfo(settings.site.timezone)).date()
    bus.publish(topics.config_topic(site, "badge", "cardholders"), json.dumps(demo_cardholders(today)).encode(),
                retain=True)
    held = settings.edge.rules.max_open_for(BACK)

    def swipe(door: str, card: tuple[int, int]) -> None:
        controller.swipe(0 if door == FRONT else 1, encode("H10301", *card))

    def contact(door: str, is_open: bool) -> None:
        controller.set_input(InputKind.DOOR_CONTACT, 0 if door == FRONT else 1, is_open)

    script = door_script(held, swipe, contact)
    # The script starts when the badge service has opened the link (its HOST_HELLO) and the camera is
    # watching: both follow the demo's one story clock, so the front-door grant and the people the camera
    # sees walk in together in every cycle, not only in the first.
    try:
        waited_until = time.monotonic() + LINK_WAIT_S
        while not controller.host_seen.wait(0.2) and not stop.is_set():
            if time.monotonic() > waited_until:
                logger.warning("badge service did not open the controller link within %.0f s; playing the doors "
                               "anyway", LINK_WAIT_S)
                break
        STORY.ready("badge")
        schedule = STORY.wait(stop)
        if schedule is not None:
            play(script, schedule, stop)
    finally:
        bus.stop()
        controller.stop()
        pair.close()

