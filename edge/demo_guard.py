"""What keeps demos apart: one demo per data directory (a lock naming its pid), what a crashed one left running
found and stopped, and stop signals turned into a request the demo's main loop sees."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

from edge.processes import alive, cmdline, processes_mentioning, stop_pids

STOP_DEADLINE_S = 10.0


class DemoFailed(RuntimeError):
    """The demo cannot go on; the message says what failed, in one line."""


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP ask the demo to stop (the first) and to hurry (a second), instead of raising
    wherever the main thread happens to be; the handlers they replace come back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.hurry = threading.Event()
        self.name = ""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.requested.is_set():
            self.hurry.set()
        self.name = self.name or signal.Signals(signum).name
        self.requested.set()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class DemoLock:
    """One demo per data directory: an flock held while it runs, naming its pid for whoever finds it held."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "demo.lock"
        self._fh: Any = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise DemoFailed(f"another demo is running in {self.path.parent} (pid {holder}): stop it "
                             f"(kill {holder}) or give this one its own --data-dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def pid_file(data_dir: Path) -> Path:
    """The processes a running demo started, by name (JSON), for whoever cleans up after a crashed one."""
    return data_dir / "demo-pids.json"


def stop_leftovers(data_dir: Path, config_path: Path) -> dict[int, str]:
    """Stop what an earlier demo in `data_dir` left running (it crashed, or was killed with -9): services
    reading its config, brokers reading their config under it, and every pid it recorded. Run with the demo
    lock held, so none of them belongs to a running demo. Returns what was stopped."""
    # As the demo starts them: `python -m edge.cli --config <config> run <service>`, `mosquitto -c <conf>`.
    found = processes_mentioning([f"--config {config_path} ", f"-c {data_dir / 'brokers'}/mosquitto-"])
    try:
        recorded = json.loads(pid_file(data_dir).read_text())
    except (OSError, ValueError):
        recorded = {}
    for name, pid in recorded.items() if isinstance(recorded, dict) else ():
        if isinstance(pid, int) and pid not in found and alive(pid) and str(data_dir) in cmdline(pid):
            found[pid] = name
    stop_pids(found, STOP_DEADLINE_S)
    return found
