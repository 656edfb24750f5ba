"""Child processes (brokers, services) started in their own process groups and stopped the same way everywhere:
politely, then firmly, the whole group; and leftovers of an earlier run found and stopped by what they run."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

POLL_S = 0.05


def start_group(args: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start `args` as the leader of a new session and process group: a Ctrl-C at the terminal reaches only
    whoever started it, and stopping the group also stops anything the child started."""
    return subprocess.Popen(args, start_new_session=True, **popen)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def stop_groups(procs: Iterable[subprocess.Popen[bytes]], deadline_s: float = 10.0) -> None:
    """SIGTERM to every group at once, SIGKILL to what is left at the deadline; each leader reaped."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    end = time.monotonic() + deadline_s
    for proc in procs:
        try:
            proc.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("pid %d did not stop within %.0f s of SIGTERM; killing it", proc.pid, deadline_s)
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)  # the leader and anything it left behind in its group
        proc.wait()


def stop_process(proc: subprocess.Popen[bytes] | None, deadline_s: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if it has not exited by the deadline."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(deadline_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL at once, as a power cut or the OOM killer would."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    """The command line `pid` runs, words joined by spaces; "" when it cannot be read (gone, not ours)."""
    try:
        return (Path(f"/proc/{pid}") / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def processes_mentioning(markers: Iterable[str]) -> dict[int, str]:
    """This user's running processes (not this one) whose command line contains one of `markers`, with it."""
    markers = [m for m in markers if m]
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
        except OSError:
            continue
        command = cmdline(int(entry.name))
        if command and any(m in command for m in markers) and alive(int(entry.name)):
            found[int(entry.name)] = command
    return found


def stop_pids(pids: Iterable[int], deadline_s: float = 10.0) -> list[int]:
    """SIGTERM each pid, SIGKILL those still running at the deadline; returns the pids that were running."""
    pids = [p for p in pids if alive(p)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _wait_gone(pids, deadline_s)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _wait_gone(pids, deadline_s)
    return pids


def _wait_gone(pids: list[int], deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while any(alive(p) for p in pids) and time.monotonic() < end:
        time.sleep(POLL_S)
