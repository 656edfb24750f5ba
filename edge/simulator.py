"""A simulated door for the demo: forced open once, then held open past its limit, then closed."""

from __future__ import annotations

import logging
import threading

from edge import topics
from edge.bus import Bus
from edge.config import Settings
from edge.events import AccessGranted, DoorClosed, DoorOpened, Event, HeartbeatSent, dump_event, utcnow

logger = logging.getLogger(__name__)

SERVICE = "doorsim"
DEVICE = "controller-1"
HEARTBEAT_S = 5.0


def run_door_script(settings: Settings, stop: threading.Event) -> None:
    """Play the script until `stop`; it repeats so a long demo keeps producing alerts."""
    site = settings.site.id
    # No availability topic: the demo stops the simulator first, and that is not an outage to alert on.
    bus = Bus(settings.mqtt, client_id=f"sitewarden-{site}-doorsim", site=site, service=None)
    bus.start()
    if not bus.connected.wait(10):
        logger.error("door simulator cannot reach the local broker %s", bus.where)
    source = f"{SERVICE}/{DEVICE}"
    held = settings.edge.rules.max_open_for("back-office")

    def say(fact: Event) -> None:
        bus.publish(topics.fact_topic(site, SERVICE, DEVICE, fact.kind), dump_event(fact))  # type: ignore[attr-defined]

    script: list[tuple[float, str]] = [
        (2.0, "forced"), (4.0, "close_front"), (6.0, "grant"), (6.5, "open_back"), (held + 10.0, "close_back"),
    ]
    cycle = held + 20.0
    started = utcnow()
    loop = 0
    next_beat = 0.0
    while not stop.is_set():
        base = loop * cycle
        for at, step in script:
            while not stop.is_set():
                elapsed = (utcnow() - started).total_seconds()
                if elapsed >= next_beat:
                    say(HeartbeatSent(site=site, source=source, device_id=source, device_type="controller",
                                      interval_s=HEARTBEAT_S))
                    next_beat = elapsed + HEARTBEAT_S
                if elapsed >= base + at:
                    break
                stop.wait(min(0.2, base + at - elapsed))
            if stop.is_set():
                break
            if step == "forced":
                say(DoorOpened(site=site, source=source, door="front"))
            elif step == "close_front":
                say(DoorClosed(site=site, source=source, door="front"))
            elif step == "grant":
                say(AccessGranted(site=site, source=source, door="back-office", credential="26bit:12/****1",
                                  cardholder="Demo Cardholder"))
            elif step == "open_back":
                say(DoorOpened(site=site, source=source, door="back-office"))
            elif step == "close_back":
                say(DoorClosed(site=site, source=source, door="back-office"))
        loop += 1
    bus.stop()
