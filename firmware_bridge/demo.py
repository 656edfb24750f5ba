"""The demo's badge hardware: a simulated controller on a pty with two doors, cardholders, and a script of swipes."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge import topics
from edge.bus import Bus
from edge.config import Settings
from firmware_bridge.access import DAYS
from firmware_bridge.protocol import InputKind
from firmware_bridge.sim_controller import SerialPair, SimulatedController
from firmware_bridge.wiegand import encode

logger = logging.getLogger(__name__)
LINK_WAIT_S = 60.0

CONTROLLER = "controller-1"
FRONT, BACK = "front", "back-office"
ALICE, BOB, CAROL, UNKNOWN = (12, 1001), (12, 1002), (12, 1003), (99, 4242)


def sim_port(data_dir: Path) -> Path:
    return data_dir / "sim" / f"{CONTROLLER}.tty"


def demo_settings(data_dir: Path) -> dict[str, Any]:
    """The `badge` section the demo runs with."""
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

    script: list[tuple[float, Any]] = [
        (3.0, lambda: swipe(FRONT, ALICE)), (3.5, lambda: contact(FRONT, True)), (5.0, lambda: contact(FRONT, False)),
        (6.0, lambda: swipe(FRONT, UNKNOWN)),
        (7.0, lambda: swipe(BACK, BOB)),
        (8.0, lambda: swipe(FRONT, CAROL)),
        (9.0, lambda: contact(FRONT, True)), (11.0, lambda: contact(FRONT, False)),  # forced
        (12.0, lambda: swipe(BACK, ALICE)), (12.5, lambda: contact(BACK, True)),      # held open
        *[(14.0 + 0.3 * i, lambda: swipe(FRONT, UNKNOWN)) for i in range(5)],          # a burst of denials
        (12.5 + held + 4.0, lambda: contact(BACK, False)),
    ]
    script.sort(key=lambda step: step[0])
    cycle = script[-1][0] + 10.0
    # The script's clock starts when the badge service has opened the link (its HOST_HELLO), not when this
    # thread does: on a slow or busy box the service can take seconds to start, and swipes played into a
    # closed port would reach it in one burst, squeezing the grant window and the forced door together.
    try:
        waited_until = time.monotonic() + LINK_WAIT_S
        while not controller.host_seen.wait(0.2) and not stop.is_set():
            if time.monotonic() > waited_until:
                logger.warning("badge service did not open the controller link within %.0f s; playing the doors "
                               "anyway", LINK_WAIT_S)
                break
        started = time.monotonic()
        loop = 0
        while not stop.is_set():
            for at, step in script:
                if stop.wait(max(0.0, loop * cycle + at - (time.monotonic() - started))):
                    break
                step()
            loop += 1
    finally:
        bus.stop()
        controller.stop()
        pair.close()

