"""A capture lab for the live tests and the benchmark: a veth pair whose far end lives in a network namespace
made for it, and a sender that plays frames into that far end at a set rate. The capture end stays in the
host's namespace, where netmon listens as it would on a mirror port.

The netmon service never transmits; only this lab does, and only into a namespace it created (the frames
cross the veth pair and go nowhere else). Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for the namespace).
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

CLONE_NEWNET = 0x40000000
_counter = 0


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class VethLab:
    """`with VethLab() as lab:` a namespace `lab.namespace` holding `lab.far`, peered with `lab.capture` here."""

    def __init__(self) -> None:
        global _counter
        _counter += 1
        tag = f"{os.getpid() % 100000}x{_counter}"
        self.namespace = f"swlab-{tag}"
        self.capture = f"swc{tag}"[:15]
        self.far = f"swf{tag}"[:15]

    def __enter__(self) -> VethLab:
        _ip("netns", "add", self.namespace)
        try:
            _ip("link", "add", "name", self.capture, "type", "veth", "peer", "name", self.far, "netns",
                self.namespace)
            # no IPv6 link-local chatter (router solicitations, MLD) on either end: only the lab's frames
            Path(f"/proc/sys/net/ipv6/conf/{self.capture}/disable_ipv6").write_text("1")
            _ip("netns", "exec", self.namespace, "sh", "-c",
                f"echo 1 > /proc/sys/net/ipv6/conf/{self.far}/disable_ipv6")
            _ip("link", "set", self.capture, "up")
            _ip("-n", self.namespace, "link", "set", self.far, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Delete the namespace (its veth end with it, and so the pair)."""
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.capture], capture_output=True)

    def sender(self) -> socket.socket:
        """A raw packet socket bound to the far end, opened inside the namespace (by a thread that joins it)."""
        out: list[socket.socket | BaseException] = []

        def opener() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(f"/var/run/netns/{self.namespace}", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {self.namespace}")
                finally:
                    os.close(fd)
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: sends, receives nothing
                sock.bind((self.far, 0))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
                out.append(sock)
            except BaseException as err:  # handed to the caller's thread
                out.append(err)

        thread = threading.Thread(target=opener, name="lab-setns")
        thread.start()
        thread.join()
        if isinstance(out[0], BaseException):
            raise out[0]
        return out[0]

    def interface_counters(self) -> dict[str, int]:
        """The capture end's receive counters from sysfs (rx_packets, rx_dropped)."""
        base = Path("/sys/class/net") / self.capture / "statistics"
        return {name: int((base / name).read_text()) for name in ("rx_packets", "rx_dropped")}


def send(sock: socket.socket, frames: Sequence[bytes], rate: float | None = None) -> tuple[int, float]:
    """Send every frame, at `rate` frames per second (as fast as possible when None); returns (sent, seconds).
    A frame the kernel refuses with ENOBUFS is retried after a pause, so every frame goes out once."""
    started = time.perf_counter()
    step = 64  # frames between pacing checks
    sent = 0
    out = sock.send
    for i, frame in enumerate(frames):
        while True:
            try:
                out(frame)
                break
            except OSError as err:
                if err.errno != 105:  # ENOBUFS
                    raise
                time.sleep(0.0005)
        sent += 1
        if rate is not None and i % step == step - 1:
            ahead = started + sent / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    return sent, time.perf_counter() - started
