"""Fixtures that start the real thing: mosquitto brokers on free ports and SiteWarden service processes."""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge import topics
from edge.brokers import MosquittoBroker, find_mosquitto, free_port
from edge.bus import Bus, Inbound
from edge.config import load_settings
from edge.processes import kill_process, stop_process
from firmware_bridge.sim_controller import SerialPair

SITE = "test-site"
START_DEADLINE_S = 20.0


def wait_until(predicate: Callable[[], Any], deadline_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy; fail the test with `what` at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s:g} s waiting for {what}")
        time.sleep(interval_s)


def wait_online(config: Path, service: str) -> None:
    """Wait for a service's retained `online` on the broker it uses, watched as a client with the same broker
    settings (TLS, account). The service's "connected" log line comes before its subscriptions reach the
    broker; `online` is published after them on the same connection, so once it is seen, a fact published by
    anyone reaches the service."""
    settings = load_settings(config)
    broker = settings.console.broker if service == "console" else settings.mqtt
    watcher = Bus(broker, client_id=f"test-watch-{service}-{time.monotonic_ns()}", site=settings.site.id,
                  service=None)
    watcher.subscribe(topics.status_topic(settings.site.id, service))
    watcher.start()
    end = time.monotonic() + START_DEADLINE_S
    try:
        while True:
            try:
                item = watcher.inbox.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"timed out after {START_DEADLINE_S:g} s waiting for {service} online at {watcher.where}")
            if isinstance(item, Inbound) and item.payload == b"online":
                return
    finally:
        watcher.stop()


@pytest.fixture(scope="session", autouse=True)
def _need_mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: `make test` installs it when run as root "
                    "(apt-get install mosquitto)")


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """The box's local broker: a real mosquitto on a free loopback port."""
    broker = MosquittoBroker(tmp_path / "local-broker")
    yield broker
    broker.stop()


@pytest.fixture
def central_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """The central console's broker: another real mosquitto (no persistence, like the default)."""
    broker = MosquittoBroker(tmp_path / "central-broker")
    yield broker
    broker.stop()


def write_config(path: Path, data_dir: Path, local_port: int, central_port: int | None,
                 rules: dict[str, Any] | None = None, forwarder: dict[str, Any] | None = None,
                 console: dict[str, Any] | None = None, badge: dict[str, Any] | None = None,
                 kiosk: dict[str, Any] | None = None, vision: dict[str, Any] | None = None) -> Path:
    """A config file for the test site."""
    fwd: dict[str, Any] = {"enabled": central_port is not None, "ack_timeout_s": 5}
    if central_port is not None:
        fwd["broker"] = {"host": "127.0.0.1", "port": central_port, "reconnect_max_delay_s": 1}
    fwd |= forwarder or {}
    config = {
        "site": {"id": SITE},
        "data_dir": str(data_dir),
        "mqtt": {"host": "127.0.0.1", "port": local_port, "reconnect_max_delay_s": 1},
        "edge": {"rules": {"late_grant_grace_s": 0, "max_open_s": 3, **(rules or {})}, "forwarder": fwd,
                 "stats_interval_s": 0.5},
        "console": {"broker": {"host": "127.0.0.1", "port": central_port or local_port,
                               "reconnect_max_delay_s": 1}, **(console or {})},
        "log": {"level": "INFO"},
    }
    if badge is not None:
        config["badge"] = badge
    if kiosk is not None:
        config["kiosk"] = kiosk
    if vision is not None:
        config["vision"] = vision
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def serial_pty(tmp_path: Path) -> Iterator[Callable[[str], SerialPair]]:
    """pty pairs standing in for USB serial adapters, each under a stable symlink like /dev/serial/by-id."""
    pairs: list[SerialPair] = []

    def make(name: str) -> SerialPair:
        pair = SerialPair(tmp_path / "dev" / name)
        pairs.append(pair)
        return pair

    yield make
    for pair in pairs:
        pair.close()


class ServiceProcess:
    """`sitewarden run SERVICE` as a child process, its output in a log file shown when a test fails."""

    def __init__(self, config: Path, service: str, log: Path) -> None:
        self.config = config
        self.service = service
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0

    def start(self) -> ServiceProcess:
        """Start, and wait until the service is connected to each broker it uses."""
        self._offset = len(self.output())
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "--config", str(self.config), "run", self.service],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        config = yaml.safe_load(self.config.read_text())
        links = 2 if self.service == "edge" and config["edge"]["forwarder"]["enabled"] else 1
        wait_until(lambda: self._connected() >= links, START_DEADLINE_S, f"{self.service} to connect")
        wait_online(self.config, self.service)
        return self

    def _connected(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"{self.service} exited with {self.proc.returncode}:\n{self.output()}")
        return self.output()[self._offset:].count("connected to broker")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as a power cut or OOM kill would."""
        kill_process(self.proc)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Callable[[Path, str], ServiceProcess]]:
    """Start SiteWarden services as real processes; all are stopped at the end of the test."""
    started: list[ServiceProcess] = []

    def start(config: Path, service: str) -> ServiceProcess:
        proc = ServiceProcess(config, service, tmp_path / f"{service}-{len(started)}.log")
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


class MqttClient:
    """A plain paho client for tests: publish facts and collect messages, like any third party would."""

    def __init__(self, port: int, client_id: str = "") -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(message)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *args: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(5), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes | str, wait: bool = True) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(10)
        return info

    def payloads(self, prefix: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(m.payload) for m in self.messages if m.topic.startswith(prefix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def client_factory() -> Iterator[Callable[[int], MqttClient]]:
    clients: list[MqttClient] = []

    def make(port: int) -> MqttClient:
        client = MqttClient(port)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read a service database the way an operator would, while the service runs."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


KIOSK_HOSTS = {
    "anna": {"name": "Anna de Vries", "department": "Facilities", "email": "anna@example.invalid"},
    "ravi": {"name": "Ravi Kumar", "department": "Finance"},
    "jose": {"name": "José Álvarez", "department": "IT"},
}


def kiosk_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """A kiosk section for tests: three hosts, a watchlist file, house rules version 1."""
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text("# test list\nMallory Example\nJosé  van der Berg\n", encoding="utf-8")
    return {
        "port": free_port(),
        "default_language": "en",
        "watchlist_file": str(watchlist),
        "hosts": KIOSK_HOSTS,
        "house_rules": {"version": "1", "valid_days": 30,
                        "text": {"nl": "Draag uw pas zichtbaar.", "en": "Wear your badge where it can be seen."}},
        **extra,
    }


class KioskSite:
    """A kiosk service built from a real config (not serving): its app under TestClient, its desk and auth."""

    def __init__(self, tmp_path: Path, broker_port: int, start_producer: bool = True, **kiosk: Any) -> None:
        from fastapi.testclient import TestClient

        from edge.config import load_settings
        from kiosk.service import KioskService

        self.data_dir = tmp_path / "data"
        self.config = write_config(tmp_path / "config.yaml", self.data_dir, broker_port, None,
                                   kiosk=kiosk_config(tmp_path, **kiosk))
        self.settings = load_settings(self.config)
        self.service = KioskService(self.settings)
        if start_producer:
            self.service.producer.start()
        self.desk = self.service.desk
        self.auth = self.service.auth
        # https: the cookies are Secure, and a client only sends those over https.
        self.client = TestClient(self.service.app, base_url="https://testserver")
        self.db_path = self.data_dir / "kiosk.db"

    def csrf(self, path: str = "/checkin") -> str:
        import re

        page = self.client.get(path)
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found, f"no CSRF field on {path}"
        return found.group(1)

    def close(self) -> None:
        self.client.close()
        self.service.producer.stop()


@pytest.fixture
def kiosk_site(tmp_path: Path, mqtt_broker: MosquittoBroker) -> Iterator[KioskSite]:
    site = KioskSite(tmp_path, mqtt_broker.port)
    yield site
    site.close()


@pytest.fixture(scope="session")
def person_detector() -> Any:
    """The default person detector on the real model from the verified cache (`make test` builds it first)."""
    from vision.detector import PersonDetector
    from vision.models import DEFAULT_MODEL, MODELS, ModelError, verified

    try:
        path = verified(DEFAULT_MODEL)
    except ModelError as err:
        pytest.fail(f"{err} (make test builds it before pytest)")
    return PersonDetector(path, MODELS[DEFAULT_MODEL].params, threads=2)
