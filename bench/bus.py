"""Benchmark: alerts/s and latency from rule emit to stored and confirmed at the console, against bare paho."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge import topics
from edge.brokers import MosquittoBroker
from edge.events import DoorOpened, dump_event

SOURCE = "badge/controller-1"
START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 10.0
# Paho's default of 20 unacked QoS 1 messages would make the baseline a round-trip test; the edge's
# forwarder and every SiteWarden Bus use 1000, so the baseline does too.
MAX_INFLIGHT = 1000
PACE_SLEEP_S = 0.001


def wait_until(predicate: Callable[[], Any], deadline_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll `predicate` until it is truthy; raise TimeoutError naming `what` at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {deadline_s:g} s waiting for {what}")
        time.sleep(interval_s)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Figures:
    """What one phase measured: count, span, rate and latency distribution (ms)."""

    name: str
    unit: str
    count: int
    span_s: float
    latencies_ms: list[float]
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.span_s if self.span_s > 0 else math.nan

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def line(self) -> str:
        return (f"{self.name}: {self.count} {self.unit} in {self.span_s:.2f} s = {self.rate:.0f} {self.unit}/s, "
                f"p50 {self.p(0.50):.1f} ms, p99 {self.p(0.99):.1f} ms, max {self.latencies_ms[-1]:.1f} ms")


class Client:
    """A plain paho v2 client on 127.0.0.1 that records what it receives with the time it arrived."""

    def __init__(self, port: int, client_id: str) -> None:
        self.received: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()
        self._connected = threading.Event()
        self._subacks: set[int] = set()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._connected.wait(START_DEADLINE_S):
            raise TimeoutError(f"{client_id} could not connect to 127.0.0.1:{port}")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any,
                      properties: Any) -> None:
        with self.lock:
            self._subacks.add(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Timestamp first, and nothing else on paho's thread: parsing happens after the run.
        now = time.time()
        with self.lock:
            self.received.append((now, message.topic, message.payload))

    def subscribe(self, topic_filter: str) -> None:
        _, mid = self.client.subscribe(topic_filter, qos=1)
        wait_until(lambda: mid in self._subacks, START_DEADLINE_S, f"SUBACK for {topic_filter}", 0.01)

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def since(self, start: int) -> list[tuple[float, str, bytes]]:
        with self.lock:
            return self.received[start:]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ServiceProcess:
    """`python -m edge.cli run SERVICE` as a child process, as in production, its output in a log file."""

    def __init__(self, config: Path, service: str, log: Path) -> None:
        self.service = service
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "--config", str(config), "run", service],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def wait_connected(self, links: int) -> None:
        """Wait until the log says the service is connected to each of its `links` brokers."""
        wait_until(lambda: self._connected() >= links, START_DEADLINE_S, f"{self.service} to connect")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def check(self) -> None:
        """Raise if the process died."""
        if self.proc.poll() is not None:
            tail = "\n".join(self.output().splitlines()[-30:])
            raise RuntimeError(f"{self.service} exited with {self.proc.returncode}:\n{tail}")

    def _connected(self) -> int:
        self.check()
        return self.output().count("connected to broker")

    def cpu_s(self) -> float:
        """CPU seconds the process used so far."""
        return process_cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all CPUs spent busy since boot: user, nice, system, irq and softirq (not idle, iowait, steal).

    Interrupt time is counted because the kernel often charges loopback softirq work to the process it
    interrupted as well; without it the estimate of other processes' CPU goes negative under MQTT load.
    """
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")


class NoiseMeter:
    """CPU used by processes that are not part of this benchmark, so a noisy run can be told apart."""

    def __init__(self, brokers: list[MosquittoBroker]) -> None:
        self.brokers = brokers
        self.start = time.monotonic()
        self.busy = machine_busy_s()
        self.ours = self._ours()

    def _ours(self) -> float:
        usage = os.times()
        return usage.user + usage.system + sum(process_cpu_s(b.proc.pid) for b in self.brokers if b.proc)

    def report(self, services_cpu_s: float = 0.0) -> str:
        wall = time.monotonic() - self.start
        other = (machine_busy_s() - self.busy) - (self._ours() - self.ours) - services_cpu_s
        return (f"other processes on this machine used {other:.1f} CPU-s in {wall:.1f} s "
                f"({other / wall / (os.cpu_count() or 1) * 100:.0f}% of {os.cpu_count()} CPUs)")


def write_config(path: Path, site: str, data_dir: Path, local_port: int, central_port: int) -> Path:
    """Production defaults except: loopback brokers, forced-door alerts at the next tick, no held-open alerts.

    `max_open_s` is an hour so the doors the benchmark opens (and never closes) do not also raise
    `door_held_open` alerts while it runs; the console gets a client id per site so phases never share
    a broker session.
    """
    broker = {"host": "127.0.0.1", "port": central_port, "reconnect_max_delay_s": 1}
    config = {
        "site": {"id": site},
        "data_dir": str(data_dir),
        "mqtt": {"host": "127.0.0.1", "port": local_port, "reconnect_max_delay_s": 1},
        "edge": {"rules": {"late_grant_grace_s": 0, "max_open_s": 3600},
                 "forwarder": {"enabled": True, "broker": broker}},
        "console": {"broker": broker, "client_id": f"bench-console-{site}"},
        "log": {"level": "INFO"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def pace(count: int, rate: float | None, send: Callable[[int], None]) -> float:
    """Call send(i) for i in range(count), `rate` per second on a steady clock (None: flat out); returns s."""
    start = time.monotonic()
    if rate is None:
        for i in range(count):
            send(i)
        return time.monotonic() - start
    i = 0
    while i < count:
        due = min(count, int((time.monotonic() - start) * rate) + 1)
        while i < due:
            send(i)
            i += 1
        if i < count:
            time.sleep(PACE_SLEEP_S)
    return time.monotonic() - start


@contextmanager
def started(procs: list[ServiceProcess], config: Path, workdir: Path, site: str) -> Iterator[None]:
    """Console then edge, stopped on the way out even on error."""
    try:
        for service, links in (("console", 1), ("edge", 2)):
            procs.append(ServiceProcess(config, service, workdir / f"{service}-{site}.log"))
            procs[-1].wait_connected(links)
        yield
    finally:
        while procs:
            procs.pop().stop()


def run_sitewarden(name: str, site: str, count: int, rate: float | None, workdir: Path, local: MosquittoBroker,
                   central: MosquittoBroker, deadline_s: float) -> tuple[Figures, dict[str, Any]]:
    """One phase: `count` forced-door facts in, wait until the console confirmed every resulting alert.

    The observer on the central broker only watches the console's confirmations (when each message id
    was confirmed); each alert's `raised_at` (the rule's emit time) is read afterwards from the
    console's own store, which also proves the alert was stored. Subscribing the observer to the
    alerts as well would add a third delivery per alert to the broker under test.
    """
    data_dir = workdir / f"data-{site}"
    config = write_config(workdir / f"config-{site}.yaml", site, data_dir, local.port, central.port)
    procs: list[ServiceProcess] = []
    noise = NoiseMeter([local, central])
    observer = Client(central.port, f"bench-observer-{site}")
    driver = Client(local.port, f"bench-driver-{site}")
    try:
        observer.subscribe(topics.console_ack_topic(site))
        observer.subscribe(topics.status_topic(site, "console"))
        driver.subscribe(topics.status_topic(site, "edge"))
        with started(procs, config, workdir, site):
            # Availability is published after the subscriptions in on_connect: once "online" is seen,
            # the broker has the edge's fact subscription and the console's alert subscription.
            wait_until(lambda: any(p == b"online" for _, _, p in driver.since(0)), START_DEADLINE_S, "edge online")
            wait_until(lambda: any(p == b"online" for _, _, p in observer.since(0)), START_DEADLINE_S,
                       "console online")
            ack_start = observer.count()
            console_cpu_start_s, edge_cpu_start_s = (proc.cpu_s() for proc in procs)
            fact_topic = topics.fact_topic(site, "badge", "controller-1", "door_opened")
            sent_at: dict[str, float] = {}

            def send(i: int) -> None:
                fact = DoorOpened(site=site, source=SOURCE, door=f"d{i}")
                payload = dump_event(fact)
                sent_at[fact.event_id] = time.time()
                driver.client.publish(fact_topic, payload, qos=1)

            offered_s = pace(count, rate, send)
            confirmed: dict[str, float] = {}
            acked_ids = 0
            seen = ack_start
            end = time.monotonic() + deadline_s
            while len(confirmed) < count:
                for proc in procs:
                    proc.check()
                for at, topic, payload in observer.since(seen):
                    seen += 1
                    if not topic.endswith("/console/ack"):
                        continue
                    ids = json.loads(payload)["message_ids"]
                    acked_ids += len(ids)
                    for message_id in ids:
                        confirmed.setdefault(message_id, at)
                if time.monotonic() > end:
                    raise TimeoutError(f"{name}: only {len(confirmed)} of {count} alerts confirmed "
                                       f"after {deadline_s:g} s")
                time.sleep(0.05)
            edge_log = procs[-1].output()
            console_cpu_s, edge_cpu_s = (proc.cpu_s() for proc in procs)
            console_run_s, edge_run_s = console_cpu_s - console_cpu_start_s, edge_cpu_s - edge_cpu_start_s
            noise_line = noise.report(console_cpu_s + edge_cpu_s)
        stored = stored_alerts(data_dir / "console.db")
    finally:
        driver.close()
        observer.close()
    latencies, raise_to_store, store_to_ack, fact_to_raise, fact_to_ack = [], [], [], [], []
    raised = []
    for message_id, (raised_at, received_at, fact_id, kind, mtype) in stored.items():
        if message_id not in confirmed or kind != "door_forced_open" or mtype != "new":
            continue
        ack_at = confirmed[message_id]
        raised.append(raised_at)
        latencies.append((ack_at - raised_at) * 1000)
        raise_to_store.append((received_at - raised_at) * 1000)
        store_to_ack.append((ack_at - received_at) * 1000)
        if fact_id in sent_at:
            fact_to_raise.append((raised_at - sent_at[fact_id]) * 1000)
            fact_to_ack.append((ack_at - sent_at[fact_id]) * 1000)
    if len(latencies) != count:
        raise RuntimeError(f"{name}: {len(latencies)} confirmed door_forced_open alerts in the console "
                           f"database, expected {count} (stored {len(stored)}, confirmed {len(confirmed)})")
    span = max(confirmed.values()) - min(raised)
    for values in (latencies, raise_to_store, store_to_ack, fact_to_raise, fact_to_ack):
        values.sort()
    figures = Figures(name, "alerts", count, span, latencies)
    offered = "flat out" if rate is None else f"{rate:g}/s"
    detail = {
        "offered": f"{offered}: {count} facts published in {offered_s:.2f} s ({count / offered_s:.0f}/s)",
        "breakdown": ("p50/p99 ms: fact publish -> rule emit {:.1f}/{:.1f}, emit -> console insert {:.1f}/{:.1f}, "
                      "console insert -> confirmation seen {:.1f}/{:.1f}, fact publish -> confirmed {:.1f}/{:.1f}"
                      ).format(*(percentile(v, q) for v in (fact_to_raise, raise_to_store, store_to_ack, fact_to_ack)
                                 for q in (0.5, 0.99))),
        "cpu": f"edge {edge_cpu_s:.1f} s ({edge_cpu_s / count * 1000:.2f} ms/alert), console {console_cpu_s:.1f} s "
               f"({console_cpu_s / count * 1000:.2f} ms/alert), including start-up; from the first fact on: edge "
               f"{edge_run_s / count * 1000:.2f} ms/alert, console {console_run_s / count * 1000:.2f} ms/alert",
        "noise": noise_line,
        "confirmations": f"{acked_ids} message ids confirmed for {len(confirmed)} alerts "
                         f"({acked_ids - len(confirmed)} repeats); edge resend warnings: "
                         f"{edge_log.count('unconfirmed alert messages again')}",
    }
    return figures, detail


def stored_alerts(db: Path) -> dict[str, tuple[float, float, str, str, str]]:
    """message_id -> (raised_at, console received_at, first fact id, kind, type), read from the console's store."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT m.message_id, a.raised_at, m.received_at, json_extract(m.payload, '$.alert.fact_ids[0]'), "
            "a.kind, m.type FROM alert_messages m JOIN alerts a ON a.alert_id = m.alert_id"
        ).fetchall()
    finally:
        conn.close()
    return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}


def payload_size(workdir: Path, site: str) -> int:
    """Mean size of the alert messages the console stored (what crossed the central broker)."""
    conn = sqlite3.connect(f"file:{workdir / f'data-{site}' / 'console.db'}?mode=ro", uri=True)
    try:
        return int(round(conn.execute("SELECT avg(length(payload)) FROM alert_messages").fetchone()[0]))
    finally:
        conn.close()


def run_bare(name: str, count: int, rate: float | None, size: int, central: MosquittoBroker,
             deadline_s: float) -> tuple[Figures, dict[str, str]]:
    """Bare paho: one client publishes `count` QoS 1 messages of `size` bytes, another receives them."""
    topic = f"bench/bare/{name.replace(' ', '-')}"
    noise = NoiseMeter([central])
    receiver = Client(central.port, f"bench-bare-rx-{os.getpid()}")
    sender = Client(central.port, f"bench-bare-tx-{os.getpid()}")
    try:
        receiver.subscribe(topic)
        filler = b"x" * max(size, 8)
        payloads = [b"%08d" % i + filler[8:] for i in range(count)]
        sent_at = [0.0] * count

        def send(i: int) -> None:
            sent_at[i] = time.time()
            sender.client.publish(topic, payloads[i], qos=1)

        pace(count, rate, send)
        wait_until(lambda: receiver.count() >= count, deadline_s, f"{name}: {count} messages at the receiver",
                   0.01)
        received = receiver.since(0)
        noise_line = noise.report()
    finally:
        sender.close()
        receiver.close()
    latencies = sorted((at - sent_at[int(payload[:8])]) * 1000 for at, _, payload in received)
    span = max(at for at, _, _ in received) - min(sent_at)
    return Figures(name, "msgs", len(received), span, latencies), {"noise": noise_line}


def report(figures: Figures, detail: dict[str, str]) -> None:
    """Print one phase as it finishes."""
    print(figures.line(), *(f"  {k}: {v}" for k, v in detail.items()), sep="\n", flush=True)


def main() -> int:
    """Run every phase on one pair of brokers and print the figures, the ratios last."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20_000, help="Alerts (and bare messages) per phase.")
    parser.add_argument("--rate", type=float, default=2000.0, help="Offered rate of the paced phases, per s.")
    parser.add_argument("--low-rate", type=float, default=500.0,
                        help="Offered rate of an extra SiteWarden phase below saturation (0: skip it).")
    parser.add_argument("--low-count", type=int, default=5000, help="Alerts in the extra low-rate phase.")
    parser.add_argument("--deadline", type=float, default=120.0, help="Give up on a phase after this many s.")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep configs, databases and logs here.")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop every service process and broker.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sitewarden-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    brokers: list[MosquittoBroker] = []
    low: Figures | None = None
    try:
        local = MosquittoBroker(workdir / "local-broker")
        brokers.append(local)
        central = MosquittoBroker(workdir / "central-broker")
        brokers.append(central)
        print(f"workdir {workdir}; local broker :{local.port}, central broker :{central.port}; "
              f"{args.count} per phase; load average {load_start:.2f} on {os.cpu_count()} CPUs", flush=True)
        paced, detail = run_sitewarden(f"sitewarden paced {args.rate:g}/s", "bench-paced", args.count,
                                       args.rate, workdir, local, central, args.deadline)
        report(paced, detail)
        flat, detail = run_sitewarden("sitewarden flat out", "bench-flat", args.count, None, workdir, local,
                                      central, args.deadline)
        report(flat, detail)
        if args.low_rate > 0:
            low, detail = run_sitewarden(f"sitewarden paced {args.low_rate:g}/s", "bench-low", args.low_count,
                                         args.low_rate, workdir, local, central, args.deadline)
            report(low, detail)
        size = payload_size(workdir, "bench-paced")
        bare_paced, detail = run_bare(f"bare paho paced {args.rate:g}/s", args.count, args.rate, size, central,
                                      args.deadline)
        report(bare_paced, detail)
        bare_flat, detail = run_bare("bare paho flat out", args.count, None, size, central, args.deadline)
        report(bare_flat, detail)
    finally:
        for broker in brokers:
            broker.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    target_rate = flat.rate >= 2000 and paced.rate >= 0.98 * args.rate
    target_p99 = paced.p(0.99) < 50
    print()
    print(f"== same run, same brokers, payload {size} B, QoS 1, loopback; load average {load_start:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end ==")
    for figures in (paced, flat, low, bare_paced, bare_flat):
        if figures is not None:
            print(figures.line())
    print(f"ratio flat out: sitewarden {flat.rate:.0f} alerts/s / bare paho {bare_flat.rate:.0f} msgs/s = "
          f"{flat.rate / bare_flat.rate:.3f}")
    print(f"ratio paced {args.rate:g}/s latency, sitewarden / bare paho: p50 {paced.p(0.5) / bare_paced.p(0.5):.0f}x, "
          f"p99 {paced.p(0.99) / bare_paced.p(0.99):.0f}x")
    print(f"target >= 2000 alerts/s sustained: {'PASS' if target_rate else 'FAIL'} ({flat.rate:.0f} flat out, "
          f"{paced.rate:.0f} offered {args.rate:g}/s); p99 < 50 ms at {args.rate:g}/s: "
          f"{'PASS' if target_p99 else 'FAIL'} ({paced.p(0.99):.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
