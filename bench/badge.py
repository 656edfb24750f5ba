"""Benchmark: a Wiegand read frame in -> decision published and unlock command out, against the parser alone."""

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


def end_to_end(swipes: int, workdir: Path) -> tuple[list[float], list[float]]:
    broker = MosquittoBroker(workdir / "broker")
    broker.start()
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

    watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
    watcher.on_message = on_message
    watcher.connect("127.0.0.1", broker.port)
    watcher.loop_start()
    watcher.subscribe(topics.facts_filter(SITE), qos=1)
    holders = {"version": "1", "cardholders": [{"id": "ann", "credential": "12:100"}]}
    watcher.publish(topics.config_topic(SITE, "badge", "cardholders"), json.dumps(holders), qos=1,
                    retain=True).wait_for_publish(5)
    config = {"site": {"id": SITE}, "data_dir": str(workdir / "data"), "mqtt": {"port": broker.port},
              "badge": {"controllers": {"ctl-1": {"port": str(pair.link), "doors": {"front": {"reader": 0}}}}},
              "log": {"level": "WARNING"}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    log = open(workdir / "badge.log", "wb")
    command_line = [sys.executable, "-m", "edge.cli", "--config", str(workdir / "config.yaml"), "run", "badge"]
    proc = subprocess.Popen(command_line, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
    args = ap.parse_args()
    rate = parser_rate(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        decided, unlocked = end_to_end(args.swipes, Path(tmp))
    print(f"swipes: {len(decided)} (one at a time, 10 ms apart)")
    print(f"frame in -> AccessGranted on the broker: p50 {statistics.median(decided):.2f} ms, "
          f"p99 {pct(decided, 99):.2f} ms, max {max(decided):.2f} ms")
    print(f"frame in -> UNLOCK at the controller:    p50 {statistics.median(unlocked):.2f} ms, "
          f"p99 {pct(unlocked, 99):.2f} ms, max {max(unlocked):.2f} ms")
    print(f"baseline: parser alone {rate:,.0f} frames/s ({1e6 / rate:.2f} us/frame)")
    ratio = statistics.median(decided) * 1000 * rate / 1e6
    print(f"ratio: end-to-end p50 decision / parser time per frame = {ratio:.0f}x")


if __name__ == "__main__":
    main()
