"""Benchmark: a Wiegand read frame in -> decision published and unlock command out, against the parser alone;
then several doors swiping at the same moment, against one swipe at a time in the same run."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from bus import percentile  # bench/bus.py: the same nearest-rank percentile for every figure
from paho.mqtt.enums import CallbackAPIVersion

from edge import topics
from edge.brokers import MosquittoBroker
from edge.processes import stop_process
from firmware_bridge.protocol import FrameParser, Heartbeat, InputChanged, WiegandRead, encode_frame
from firmware_bridge.protocol import Unlock as UnlockFrame
from firmware_bridge.sim_controller import SerialPair, SimulatedController
from firmware_bridge.wiegand import encode

SITE = "bench"


def pct(values: list[float], p: float) -> float:
    return percentile(sorted(values), p / 100)


def parser_rate(frames: int) -> float:
    """Frames/s through FrameParser.feed for a realistic mix, fed in 4 KiB chunks as a serial read returns them."""
    mix = [encode_frame(WiegandRead(i & 0xFF, 0, 26, encode("H10301", 12, i % 65536).to_bytes())) for i in range(64)]
    mix += [encode_frame(InputChanged(7, 1, 0, 1)), encode_frame(Heartbeat(8, 123456, 0))]
    stream = b"".join(mix[i % len(mix)] for i in range(frames))
    chunks = [stream[i:i + 4096] for i in range(0, len(stream), 4096)]
    parser = FrameParser()
    start = time.perf_counter()
    count = 0
    for chunk in chunks:
        count += len(parser.feed(chunk))
    elapsed = time.perf_counter() - start
    assert count == frames, (count, frames)
    return frames / elapsed


def start_badge(workdir: Path, broker_port: int, doors: dict[str, Path]) -> subprocess.Popen[bytes]:
    """`sitewarden run badge` with one controller per door (`ctl-<door>` on the given pty), door on reader 0."""
    controllers = {f"ctl-{door}": {"port": str(port), "doors": {door: {"reader": 0}}} for door, port in doors.items()}
    config = {"site": {"id": SITE}, "data_dir": str(workdir / "data"), "mqtt": {"port": broker_port},
              "badge": {"controllers": controllers}, "log": {"level": "WARNING"}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    log = open(workdir / "badge.log", "wb")
    command_line = [sys.executable, "-m", "edge.cli", "--config", str(workdir / "config.yaml"), "run", "badge"]
    return subprocess.Popen(command_line, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def watch_facts(port: int, on_message) -> mqtt.Client:
    """A client on the broker that hands every fact to `on_message`, after publishing the one cardholder (Ann,
    credential 12:100) the badge service decides against."""
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", port)
    watcher.loop_start()
    watcher.subscribe(topics.facts_filter(SITE), qos=1)
    holders = {"version": "1", "cardholders": [{"id": "ann", "credential": "12:100"}]}
    watcher.publish(topics.config_topic(SITE, "badge", "cardholders"), json.dumps(holders), qos=1,
                    retain=True).wait_for_publish(5)
    return watcher


def concurrent(doors: int, rounds: int, workdir: Path) -> tuple[list[float], list[float]]:
    """`doors` controllers on their own ptys; each round every one of them reads the same card at once.

    Returns, over all swipes after 10 warm-up rounds, the ms from the swipe to its door's access_granted on
    the broker, and to the UNLOCK carried out by its controller.
    """
    broker = MosquittoBroker(workdir / "broker")  # started by the constructor
    names = [f"door-{i}" for i in range(doors)]
    pairs = {name: SerialPair(workdir / "dev" / name) for name in names}
    sims = {name: SimulatedController(pair.master) for name, pair in pairs.items()}
    for sim in sims.values():
        sim.set_input(1, 0, False)
        sim.start()
    granted: dict[str, list[float]] = {name: [] for name in names}
    online: set[str] = set()
    cond = threading.Condition()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        fact = json.loads(message.payload)
        with cond:
            if fact.get("kind") == "access_granted":
                granted[fact["door"]].append(time.perf_counter())
            elif fact.get("kind") == "device_came_online":
                online.add(fact["device_id"])
            cond.notify_all()

    watcher = watch_facts(broker.port, on_message)
    proc = start_badge(workdir, broker.port, {name: pair.link for name, pair in pairs.items()})
    decided: list[float] = []
    unlocked: list[float] = []
    try:
        with cond:
            if not cond.wait_for(lambda: len(online) == doors, 20):
                raise RuntimeError(f"controllers online: {sorted(online)}; see {workdir / 'badge.log'}")
        time.sleep(1)  # the cardholder list (retained) arrives just after the connection
        bits = encode("H10301", 12, 100)
        for r in range(rounds + 10):
            started: dict[str, tuple[float, float]] = {}
            for name in names:  # microseconds apart: each swipe only queues a frame for its controller's thread
                started[name] = (time.perf_counter(), time.monotonic())
                sims[name].swipe(0, bits)
            with cond:
                if not cond.wait_for(lambda r=r: all(len(g) > r for g in granted.values()), 10):
                    raise RuntimeError(f"round {r}: not every door granted; see {workdir / 'badge.log'}")
            for name in names:
                command = sims[name].wait_for_command(UnlockFrame, after=r, timeout_s=10)
                if command is None:
                    raise RuntimeError(f"round {r}: no unlock at {name}")
                if r >= 10:
                    decided.append((granted[name][r] - started[name][0]) * 1000)
                    unlocked.append((command.at - started[name][1]) * 1000)
            time.sleep(0.02)
    finally:
        stop_process(proc, 10)
        watcher.loop_stop()
        for sim in sims.values():
            sim.stop()
        for pair in pairs.values():
            pair.close()
        broker.stop()
    return decided, unlocked


def end_to_end(swipes: int, workdir: Path) -> tuple[list[float], list[float]]:
    broker = MosquittoBroker(workdir / "broker")  # started by the constructor
    pair = SerialPair(workdir / "dev" / "ctl-1")
    controller = SimulatedController(pair.master)
    controller.set_input(1, 0, False)
    controller.start()
    granted: dict[int, float] = {}
    cond = threading.Condition()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/access_granted"):
            with cond:
                granted[len(granted)] = time.perf_counter()
                cond.notify_all()

    watcher = watch_facts(broker.port, on_message)
    proc = start_badge(workdir, broker.port, {"front": pair.link})
    decided: list[float] = []
    unlocked: list[float] = []
    try:
        time.sleep(3)  # connect, open the port, take the cardholder list
        bits = encode("H10301", 12, 100)
        for i in range(swipes + 20):
            start = time.perf_counter()
            start_mono = time.monotonic()  # the clock ReceivedCommand.at uses
            controller.swipe(0, bits)
            command = controller.wait_for_command(UnlockFrame, after=i, timeout_s=10)
            with cond:
                if not cond.wait_for(lambda i=i: i in granted, 10):
                    raise RuntimeError(f"no AccessGranted for swipe {i}; see {workdir / 'badge.log'}")
            if command is None:
                raise RuntimeError(f"no unlock for swipe {i}")
            if i >= 20:  # warm-up excluded
                decided.append((granted[i] - start) * 1000)
                unlocked.append((command.at - start_mono) * 1000)
            time.sleep(0.01)
    finally:
        stop_process(proc, 10)
        watcher.loop_stop()
        controller.stop()
        pair.close()
        broker.stop()
    return decided, unlocked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--swipes", type=int, default=500)
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--doors", type=int, default=4, help="doors swiping at the same moment (0: skip)")
    ap.add_argument("--rounds", type=int, default=200, help="rounds of simultaneous swipes")
    args = ap.parse_args()
    rate = parser_rate(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        decided, unlocked = end_to_end(args.swipes, Path(tmp))
    together: tuple[list[float], list[float]] | None = None
    if args.doors:
        with tempfile.TemporaryDirectory() as tmp:
            together = concurrent(args.doors, args.rounds, Path(tmp))
    print(f"swipes: {len(decided)} (one at a time, 10 ms apart)")
    print(f"frame in -> AccessGranted on the broker: p50 {statistics.median(decided):.2f} ms, "
          f"p99 {pct(decided, 99):.2f} ms, max {max(decided):.2f} ms")
    print(f"frame in -> UNLOCK at the controller:    p50 {statistics.median(unlocked):.2f} ms, "
          f"p99 {pct(unlocked, 99):.2f} ms, max {max(unlocked):.2f} ms")
    print(f"baseline: parser alone {rate:,.0f} frames/s ({1e6 / rate:.2f} us/frame)")
    ratio = statistics.median(decided) * 1000 * rate / 1e6
    print(f"ratio: end-to-end p50 decision / parser time per frame = {ratio:.0f}x")
    if together is not None:
        both_decided, both_unlocked = together
        print(f"{args.doors} doors swiping at once, {len(both_decided) // args.doors} rounds "
              f"({len(both_decided)} swipes, 20 ms between rounds):")
        print(f"  swipe -> AccessGranted on the broker: p50 {statistics.median(both_decided):.2f} ms, "
              f"p99 {pct(both_decided, 99):.2f} ms, max {max(both_decided):.2f} ms")
        print(f"  swipe -> UNLOCK at its controller:    p50 {statistics.median(both_unlocked):.2f} ms, "
              f"p99 {pct(both_unlocked, 99):.2f} ms, max {max(both_unlocked):.2f} ms")
        print(f"ratio: p50 to grant with {args.doors} at once / one at a time (above) = "
              f"{statistics.median(both_decided) / statistics.median(decided):.2f}x")


if __name__ == "__main__":
    main()
