"""`sitewarden demo`: brokers, every installed service as its own process, simulated devices, live alerts."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import click
import yaml

from edge import topics
from edge.alerts import AlertMessage, ConsoleAck
from edge.brokers import Broker, start_broker
from edge.bus import Bus, Inbound
from edge.config import Settings, load_settings
from edge.demo_guard import STOP_DEADLINE_S, DemoFailed, DemoLock, StopSignals, pid_file, stop_leftovers
from edge.demo_story import STORY
from edge.events import AccessDenied, AccessGranted, Event, parse_fact
from edge.processes import start_group, stop_groups
from edge.services import discover

logger = logging.getLogger(__name__)

SITE = "demo"
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


class DemoRun:
    """One run of the demo: brokers, services, simulators and the printer, and stopping all of them."""

    def __init__(self, data_dir: Path, broker_kind: str, signals: StopSignals) -> None:
        self.data_dir = data_dir
        self.logs = data_dir / "logs"
        self.broker_kind = broker_kind
        self.signals = signals
        self.config_path = data_dir / "demo-config.yaml"
        self.brokers: list[Broker] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pids: dict[str, int] = {}
        self.stop = threading.Event()
        self.sims: list[threading.Thread] = []
        self.printer: AlertPrinter | None = None

    def _record(self, name: str, pid: int) -> None:
        self.pids[name] = pid
        pid_file(self.data_dir).write_text(json.dumps(self.pids))

    def _start_broker(self, role: str) -> Broker:
        broker, desc = start_broker(self.broker_kind, self.data_dir / "brokers")
        self.brokers.append(broker)
        proc = getattr(broker, "proc", None)
        if proc is not None:
            self._record(f"{role}-broker", proc.pid)
        click.echo(f"  {role + ' broker:':16}{desc}")
        return broker

    def start(self) -> None:
        """Brokers, config, printer, services (the edge first) and simulators."""
        self.logs.mkdir(parents=True, exist_ok=True)
        left = stop_leftovers(self.data_dir, self.config_path)
        if left:
            click.echo(f"SiteWarden demo: stopped {len(left)} processes an earlier demo in {self.data_dir} left "
                       f"running (pids {', '.join(str(p) for p in sorted(left))})")
        pid_file(self.data_dir).unlink(missing_ok=True)
        click.echo("SiteWarden demo: starting brokers")
        local = self._start_broker("local")
        central = self._start_broker("central")
        specs = discover()
        config = demo_config(self.data_dir, local.port, central.port)
        STORY.reset()
        for name, spec in specs.items():
            if spec.demo_settings is not None:
                config[name] = spec.demo_settings(self.data_dir)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        settings = load_settings(self.config_path)
        self.printer = AlertPrinter(settings)
        self.printer.start()
        # The edge first: on a fresh data directory it has no session on the broker yet, so facts published
        # before it subscribed would never reach its rules.
        for name in sorted(specs, key=lambda n: n != "edge"):
            with open(self.logs / f"{name}.log", "ab") as log:
                self.procs[name] = start_group(
                    [sys.executable, "-m", "edge.cli", "--config", str(self.config_path), "run", name],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            self._record(name, self.procs[name].pid)
            if name == "edge":
                self._wait_edge_online()
        click.echo(f"  services: {', '.join(self.procs)} (logs in {self.logs})")
        for name, spec in specs.items():
            if spec.simulate is not None:
                thread = threading.Thread(target=self._simulate, args=(name, spec.simulate, settings),
                                          name=f"sim-{name}", daemon=True)
                thread.start()
                self.sims.append(thread)
        click.echo(f"  simulators: {', '.join(n for n, s in specs.items() if s.simulate) or 'none'}")

    def _simulate(self, name: str, simulate: Any, settings: Settings) -> None:
        try:
            simulate(settings, self.stop)
        except Exception:  # a simulator's failure is the demo's: shown as one line, the details in the log
            logger.debug("simulator %s failed", name, exc_info=True)
            with open(self.logs / "demo.log", "a", encoding="utf-8") as log:
                log.write(f"simulator {name} failed:\n{traceback.format_exc()}\n")
            click.echo(f"demo: the {name} simulator failed: {sys.exc_info()[1]} (details in "
                       f"{self.logs / 'demo.log'})", err=True)

    def _wait_edge_online(self) -> None:
        assert self.printer is not None
        proc = self.procs["edge"]
        end = time.monotonic() + EDGE_START_S
        while not self.printer.edge_online.wait(0.2):
            self._check_services()
            if self.signals.requested.is_set():
                return
            if time.monotonic() > end:
                raise DemoFailed(f"the edge did not come online within {EDGE_START_S:g} s; see "
                                 f"{self.logs / 'edge.log'} (pid {proc.pid})")

    def _check_services(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise DemoFailed(f"service {name} exited with code {proc.returncode}: "
                                 f"{last_error(self.logs / f'{name}.log')} (log: {self.logs / f'{name}.log'})")

    def run(self, duration_s: float | None) -> None:
        """Until the duration is up, a stop signal comes or a service dies (DemoFailed)."""
        limit = f"for {duration_s:g} s" if duration_s else "until Ctrl-C"
        click.echo(f"Running {limit}. Alerts appear below as they happen:\n")
        end = None if duration_s is None else time.monotonic() + duration_s
        while not self.signals.requested.wait(0.2):
            self._check_services()
            if end is not None and time.monotonic() >= end:
                return

    def shutdown(self, wait_confirmations: bool) -> None:
        """Printer, services, simulators, brokers: each stopped with a deadline, whatever state they are in.

        The services go before the simulators, so the badge service does not see its controller unplugged and
        raise a device_offline alert as the demo's last word."""
        if self.printer is not None:
            # Let the console confirm what was raised last before the printer goes.
            end = time.monotonic() + STOP_DEADLINE_S
            while wait_confirmations and self.printer.pending() and time.monotonic() < end \
                    and not self.signals.hurry.wait(0.1):
                pass
            self.printer.stop()
        stop_groups(self.procs.values(), STOP_DEADLINE_S)
        self.stop.set()
        end = time.monotonic() + STOP_DEADLINE_S
        for thread in self.sims:
            thread.join(max(0.0, end - time.monotonic()))
        for broker in self.brokers:
            broker.stop()
        pid_file(self.data_dir).unlink(missing_ok=True)


def last_error(log: Path) -> str:
    """The line of a service's log that says why it stopped: its last `Error:` line, else its last line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("Error:")]
    return (errors or lines or ["empty log"])[-1]


def run_demo(duration_s: float | None, data_dir: Path, broker_kind: str) -> int:
    """Run the whole appliance with simulated devices; returns the exit code: 0 when it ran its course or was
    stopped by a signal (Ctrl-C, SIGTERM), 1 when something failed. Whatever happens, every process it started
    is stopped and the closing summary printed."""
    data_dir = data_dir.resolve()
    lock = DemoLock(data_dir)
    try:
        lock.acquire()
    except DemoFailed as err:
        click.echo(f"demo not started: {err}", err=True)
        return 1
    code = 0
    with StopSignals() as signals:
        demo = DemoRun(data_dir, broker_kind, signals)
        try:
            demo.start()
            if not signals.requested.is_set():
                demo.run(duration_s)
        except DemoFailed as err:
            click.echo(f"\ndemo failed: {err}", err=True)
            code = 1
        except Exception as err:
            (data_dir / "logs").mkdir(parents=True, exist_ok=True)
            with open(data_dir / "logs" / "demo.log", "a", encoding="utf-8") as log:
                log.write(traceback.format_exc())
            click.echo(f"\ndemo failed: {type(err).__name__}: {err} (details in {data_dir / 'logs' / 'demo.log'})",
                       err=True)
            code = 1
        finally:
            if signals.requested.is_set():
                click.echo(f"\nstopping ({signals.name})")
            demo.shutdown(wait_confirmations=code == 0)
            lock.release()
    printer = demo.printer
    seen = printer.seen if printer is not None else {}
    total = sum(seen.values())
    how = "Demo finished" if code == 0 else "Demo failed"
    click.echo(f"\n{how}: {total} alert messages on the local broker "
               f"({', '.join(f'{k} {v}' for k, v in sorted(seen.items())) or 'none'}); "
               f"{printer.confirmed if printer is not None else 0} confirmed by the console.")
    return code
