"""Brokers for the demo (and the tests): mosquitto when installed, else an embedded amqtt broker."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Protocol

from edge.processes import kill_process, start_group, stop_groups

logger = logging.getLogger(__name__)

START_DEADLINE_S = 10.0


class BrokerError(RuntimeError):
    """A broker could not be started."""


class Broker(Protocol):
    """A running broker on 127.0.0.1."""

    port: int

    def stop(self) -> None:
        """Stop it."""


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, deadline_s: float = START_DEADLINE_S, host: str = "127.0.0.1") -> bool:
    """True once something accepts connections on the port, False at the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def find_mosquitto() -> str | None:
    """mosquitto's path: Debian installs it in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


MOSQUITTO_CONF = """\
# Run as whoever started it: as root mosquitto would switch to `mosquitto` and lose its own files.
user {user}
listener {port} 127.0.0.1
allow_anonymous true
# Queue for disconnected persistent sessions without the default 1,000-message cap.
max_queued_messages 0
max_inflight_messages 1000
# Without it each small QoS 1 message or ack can sit ~40 ms in Nagle's algorithm.
set_tcp_nodelay true
persistence false
log_dest stderr
log_type error
log_type warning
"""


class MosquittoBroker:
    """A mosquitto process on a loopback port, with its own config file."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        exe = find_mosquitto()
        if exe is None:
            raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.exe = exe
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / f"mosquitto-{self.port}.conf"
        self.conf.write_text(MOSQUITTO_CONF.format(port=self.port, user=pwd.getpwuid(os.getuid()).pw_name) + extra_conf)
        self.log = workdir / f"mosquitto-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start (or start again after kill())."""
        with open(self.log, "ab") as log:
            self.proc = start_group([self.exe, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        if not wait_for_port(self.port):
            self.stop()
            raise BrokerError(f"mosquitto did not listen on {self.port}; see {self.log}:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: the broker loses everything it held in memory."""
        kill_process(self.proc)

    def stop(self) -> None:
        """Stop it cleanly."""
        if self.proc is not None:
            stop_groups([self.proc], 5.0)


class EmbeddedBroker:
    """amqtt's broker on its own event loop in a thread (used when mosquitto is not installed)."""

    def __init__(self, port: int | None = None, log_file: Path | None = None) -> None:
        if log_file is not None:
            log_to_file("amqtt", log_file)
        try:
            from amqtt.broker import Broker as AmqttBroker
        except ImportError as err:
            raise BrokerError("neither mosquitto nor amqtt is installed: pip install 'sitewarden[demo]'") from err
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = AmqttBroker(config, loop=self._loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"amqtt-{self.port}", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._broker.start(), self._loop).result(START_DEADLINE_S)
        if not wait_for_port(self.port):
            raise BrokerError(f"embedded broker did not listen on {self.port}")

    def stop(self) -> None:
        """Shut the broker and its loop down."""
        # amqtt reports its own cancelled tasks as errors while shutting down: not ours to show.
        for name in ("amqtt", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(START_DEADLINE_S)
        except Exception:  # shutting down anyway
            logger.debug("embedded broker shutdown raised", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def log_to_file(name: str, path: Path) -> None:
    """Send logger `name` (and its children) to `path` only, not to the console: amqtt reports every client
    that connects and says nothing (a port probe, a health check) as an ERROR, which is noise to a reader of
    the demo's alerts. The file keeps it for whoever looks into the broker."""
    target = logging.getLogger(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path.resolve() for h in target.handlers):
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        target.addHandler(handler)
    target.setLevel(logging.INFO)
    target.propagate = False


def start_broker(kind: str, workdir: Path) -> tuple[Broker, str]:
    """Start a broker of `kind` (auto, mosquitto, embedded); returns it and a description."""
    if kind in ("auto", "mosquitto") and find_mosquitto():
        broker = MosquittoBroker(workdir)
        return broker, f"mosquitto ({broker.exe}) on 127.0.0.1:{broker.port}"
    if kind == "mosquitto":
        raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    os.environ.setdefault("AMQTT_NO_BANNER", "1")
    embedded = EmbeddedBroker(log_file=workdir / "amqtt.log")
    return embedded, f"embedded amqtt broker on 127.0.0.1:{embedded.port}"
