"""Stopping child processes (brokers, services) the same way everywhere: politely, then firmly."""

from __future__ import annotations

import signal
import subprocess


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
