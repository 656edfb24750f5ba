"""`sitewarden demo`: brokers, every installed service as its own process, simulated devices, live alerts."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click
import yaml

from edge import topics
from edge.alerts import AlertMessage, ConsoleAck
from edge.brokers import Broker, start_broker
from edge.bus import Bus, Inbound
from edge.config import Settings, load_settings
from edge.events import AccessDenied, AccessGranted, Event, parse_fact
from edge.processes import stop_process
from edge.services import discover

logger = logging.getLogger(__name__)

SITE = "demo"
STOP_DEADLINE_S = 10.0
EDGE_START_S = 60.0


def demo_config(data_dir: Path, local_port: int, central_port: int) -> dict[str, Any]:
    """The settings the demo runs with: short rule windows so alerts show within seconds."""
    return {
        "site": {"id": SITE, "name": "SiteWarden demo", "timezone": "Europe/Amsterdam"},
        "data_dir": str(data_dir),
        "mqtt": {"host": "127.0.0.1", "port": local_port},
        "edge": {
            "rules": {"grant_window_s": 5, "late_grant_grace_s": 1, "max_open_s": 8, "silent_after_s": 20},
            "forwarder": {"broker": {"host": "127.0.0.1", "port": central_port}, "ack_timeout_s": 5},
            "stats_interval_s": 5,
        },
        "console": {"broker": {"host": "127.0.0.1", "port": central_port}},
        "log": {"level": "INFO"},
    }


class AlertPrinter:
    """Prints alert lifecycle messages and console confirmations as they happen."""

    def __init__(self, settings: Settings, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.seen: dict[str, int] = {}
        self._shown_ids: set[str] = set()
        self._confirmed_ids: set[str] = set()
        self._lock = threading.Lock()
        self.local = Bus(settings.mqtt, client_id=f"sitewarden-{SITE}-demo-tail", site=SITE, service=None)
        self.central = Bus(settings.edge.forwarder.broker, client_id=f"sitewarden-{SITE}-demo-watch",
                           site=SITE, service=None)
        self.local.subscribe(topics.alerts_filter(SITE))
        self.local.subscribe(topics.facts_filter(SITE))
        self.local.subscribe(topics.status_topic(SITE, "edge"))
        self.edge_online = threading.Event()
        self.central.subscribe(topics.console_ack_topic(SITE))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-printer", daemon=True)

    def pending(self) -> bool:
        """Alert messages shown that the console has not confirmed yet."""
        with self._lock:
            return not self._shown_ids <= self._confirmed_ids

    @property
    def confirmed(self) -> int:
        """Shown alert messages the console confirmed (repeats counted once)."""
        with self._lock:
            return len(self._shown_ids & self._confirmed_ids)

    def start(self) -> None:
        self.local.start()
        self.central.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.local.stop()
        self.central.stop()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for bus in (self.local, self.central):
                while not bus.inbox.empty():
                    item = bus.inbox.get()
                    if isinstance(item, Inbound):
                        self._show(item)
            self._stop.wait(0.1)

    def _show(self, item: Inbound) -> None:
        topic = topics.parse_topic(item.topic)
        if topic is None:
            return
        if topic.kind == "status" and topic.service == "edge":
            if item.payload == b"online":
                self.edge_online.set()
            return
        if topic.kind == "console_ack":
            with self._lock:
                self._confirmed_ids.update(ConsoleAck.model_validate_json(item.payload).message_ids)
            return
        if topic.kind == "fact" and topic.name in SHOWN_FACTS:
            print(format_fact(parse_fact(item.payload)), file=self.out, flush=True)
            return
        if topic.kind == "alert":
            message = AlertMessage.model_validate_json(item.payload)
            print(format_alert_message(message), file=self.out, flush=True)
            with self._lock:
                self.seen[topic.name or ""] = self.seen.get(topic.name or "", 0) + 1
                self._shown_ids.add(message.message_id)


SHOWN_FACTS = frozenset({"access_granted", "access_denied"})


def format_fact(fact: Event) -> str:
    """One readable line for a door decision."""
    when = fact.occurred_at.astimezone()
    if isinstance(fact, AccessGranted):
        return f"{when:%H:%M:%S}  {'GRANT':6} {'':8} {'access_granted':18} {fact.door:14} {fact.credential} " \
               f"({fact.cardholder or 'unknown holder'})"
    if isinstance(fact, AccessDenied):
        return (f"{when:%H:%M:%S}  {'DENY':6} {'':8} {'access_denied':18} {fact.door:14} {fact.credential}: "
                f"{fact.reason}")
    return f"{when:%H:%M:%S}  {fact.kind}"  # type: ignore[attr-defined]


def format_alert_message(message: AlertMessage) -> str:
    """One readable line per lifecycle message."""
    a = message.alert
    if message.type == "new":
        when = a.raised_at
    elif message.type == "end":
        when = a.resolved_at or a.last_seen_at
    else:
        when = a.acknowledged_at if a.state.value == "acknowledged" and a.acknowledged_at else a.last_seen_at
    when = when.astimezone()
    where = a.door or a.device or a.zone or "-"
    extra = ""
    if a.count > 1:
        extra += f" x{a.count}"
    if message.type == "end" and a.resolved_by:
        extra += f" resolved by {a.resolved_by}"
    elif a.state.value == "acknowledged":
        extra += f" acknowledged by {a.acknowledged_by}"
    if a.note and message.type != "new":
        extra += f" ({a.note})"
    snapshots = [e.ref for e in a.evidence if e.kind == "snapshot"]
    if snapshots and message.type == "new":
        extra += f" snapshot {snapshots[-1]}"
    return (f"{when:%H:%M:%S}  {message.type.upper():6} {a.severity.value:8} {a.kind:18} {where:14} "
            f"{a.title}{extra}  [{a.alert_id}]")


def _wait_online(printer: AlertPrinter, proc: subprocess.Popen[bytes]) -> bool:
    end = time.monotonic() + EDGE_START_S
    while time.monotonic() < end and proc.poll() is None:
        if printer.edge_online.wait(0.2):
            return True
    return False


def run_demo(duration_s: float | None, data_dir: Path, broker_kind: str) -> int:
    """Run the whole appliance with simulated devices; returns the exit code."""
    data_dir = data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    click.echo("SiteWarden demo: starting brokers")
    local, local_desc = start_broker(broker_kind, data_dir / "brokers")
    central, central_desc = start_broker(broker_kind, data_dir / "brokers")
    brokers: list[Broker] = [local, central]
    click.echo(f"  local broker:   {local_desc}")
    click.echo(f"  central broker: {central_desc}")
    specs = discover()
    config = demo_config(data_dir, local.port, central.port)
    for name, spec in specs.items():
        if spec.demo_settings is not None:
            config[name] = spec.demo_settings(data_dir)
    config_path = data_dir / "demo-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    settings = load_settings(config_path)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stop = threading.Event()
    sims: list[threading.Thread] = []
    printer = AlertPrinter(settings)
    code = 0
    try:
        printer.start()
        # The edge first: on a fresh data directory it has no session on the broker yet, so facts published
        # before it subscribed would never reach its rules.
        order = sorted(specs, key=lambda n: n != "edge")
        for name in order:
            log = open(logs / f"{name}.log", "ab")
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "--config", str(config_path), "run", name],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            if name == "edge" and not _wait_online(printer, procs[name]):
                click.echo(f"the edge did not come online within {EDGE_START_S:g} s; see {logs / 'edge.log'}",
                           err=True)
                code = 1
                break
        click.echo(f"  services: {', '.join(procs)} (logs in {logs})")
        for name, spec in specs.items():
            if spec.simulate is not None and code == 0:
                thread = threading.Thread(target=spec.simulate, args=(settings, stop), name=f"sim-{name}",
                                          daemon=True)
                thread.start()
                sims.append(thread)
        if code == 0:
            click.echo(f"  simulators: {', '.join(n for n, s in specs.items() if s.simulate) or 'none'}")
            limit = f"for {duration_s:g} s" if duration_s else "until Ctrl-C"
            click.echo(f"Running {limit}. Alerts appear below as they happen:\n")
        started = time.monotonic()
        while code == 0 and (duration_s is None or time.monotonic() - started < duration_s):
            dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
            if dead:
                for name, rc in dead.items():
                    tail = (logs / f"{name}.log").read_text(errors="replace").splitlines()[-20:]
                    click.echo(f"\nservice {name} exited with code {rc}; last log lines:", err=True)
                    click.echo("\n".join(f"  {line}" for line in tail), err=True)
                code = 1
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        click.echo("\nstopping")
    finally:
        stop.set()
        for thread in sims:
            thread.join(STOP_DEADLINE_S)
        # Let the console confirm what was raised last before the printer goes.
        end = time.monotonic() + STOP_DEADLINE_S
        while code == 0 and printer.pending() and time.monotonic() < end:
            time.sleep(0.1)
        printer.stop()
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()  # all at once, then wait for each
        for proc in procs.values():
            stop_process(proc, STOP_DEADLINE_S)
        for broker in brokers:
            broker.stop()
    total = sum(printer.seen.values())
    click.echo(f"\nDemo finished: {total} alert messages on the local broker "
               f"({', '.join(f'{k} {v}' for k, v in sorted(printer.seen.items())) or 'none'}); "
               f"{printer.confirmed} confirmed by the console.")
    return code
