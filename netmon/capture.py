"""Where frames come from: live AF_PACKET sockets behind a kernel BPF filter, and captures played as if live.

A live source is a raw AF_PACKET socket bound to one interface, in promiscuous mode, with a receive buffer
of `netmon.receive_buffer_bytes` (forced past the system limit when the process may) and a BPF program that
libpcap compiles (through scapy) from what the enabled detectors need, so frames no detector wants never
reach Python. scapy's own `sniff()` would dissect every frame (about 2,500 per second); this reads raw
bytes for the fast parser. The kernel's received/dropped counters come from PACKET_STATISTICS.

A replay source plays a pcap/pcapng file in real time (or faster), stamping each frame with the wall-clock
time it is played at: for drills and the demo.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge.config_netmon import NetmonSettings
from netmon.packets import DLT_EN10MB, DLT_IEEE802_11_RADIO

logger = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
SNAPLEN = 65535
ARPHRD_ETHER, ARPHRD_IEEE80211_RADIOTAP = 1, 803
LINK_NAMES = {DLT_EN10MB: "ethernet", DLT_IEEE802_11_RADIO: "radiotap"}
READ_BURST = 512  # frames read from a socket before looking at the others

# 802.11 management frames the Wi-Fi detectors read; everything else (data frames above all) stays in the kernel
WIFI_FILTER = "type mgt and (subtype beacon or subtype probe-resp or subtype deauth or subtype disassoc)"


class CaptureError(RuntimeError):
    """A source that cannot be opened or read; the message names the setting and what to do."""


def filter_expression(settings: NetmonSettings, linktype: int) -> str | None:
    """The pcap filter for a source of `linktype` from the enabled detectors; None when none wants its frames."""
    if linktype == DLT_IEEE802_11_RADIO:
        return WIFI_FILTER if settings.wifi.enabled else None
    parts = []
    if settings.lan.enabled:
        parts.append("arp or (udp and (port 67 or port 68))")
    vpn = settings.vpn
    if vpn.enabled and vpn.agent_subnets:
        parts.append("ip and (" + " or ".join(f"net {net}" for net in vpn.agent_subnets) + ")")
    if not parts:
        return None
    core = " or ".join(f"({p})" for p in parts)
    return f"{core} or (vlan and ({core}))"  # a mirror port may carry tagged frames


def compile_filter(expression: str, linktype: int) -> bytes:
    """The classic BPF program libpcap makes of `expression`, as the kernel's sock_filter array (8 bytes per
    instruction). Raises CaptureError when libpcap is missing or the expression does not compile."""
    try:
        from scapy.arch.common import compile_filter as pcap_compile
        from scapy.arch.common import free_filter
        from scapy.error import Scapy_Exception
    except ImportError as err:  # scapy's Linux arch module imports libpcap lazily, but be sure
        raise CaptureError(f"scapy cannot compile capture filters here: {err}") from err
    try:
        program = pcap_compile(expression, linktype=linktype)
    except ImportError as err:
        raise CaptureError("compiling the capture filter needs libpcap: apt-get install libpcap0.8") from err
    except Scapy_Exception as err:
        raise CaptureError(f"capture filter {expression!r} does not compile: {err}") from err
    try:
        size = program.bf_len * 8
        return ctypes.string_at(program.bf_insns, size)
    finally:
        free_filter(program)


def attach_filter(sock: socket.socket, code: bytes) -> None:
    """Attach a compiled BPF program (see compile_filter) to a socket."""
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))  # struct sock_fprog {u16 len; filter *}
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def link_type(interface: str) -> int:
    """The pcap link type of an interface from its ARPHRD type: Ethernet, or radiotap for a monitor-mode radio."""
    path = Path("/sys/class/net") / interface / "type"
    try:
        arphrd = int(path.read_text().strip())
    except FileNotFoundError:
        raise CaptureError(f"there is no network interface named {interface!r} (`ip link` lists them)") from None
    except (OSError, ValueError) as err:
        raise CaptureError(f"cannot read the link type of {interface!r}: {err}") from err
    if arphrd == ARPHRD_ETHER:
        return DLT_EN10MB
    if arphrd == ARPHRD_IEEE80211_RADIOTAP:
        return DLT_IEEE802_11_RADIO
    raise CaptureError(f"{interface!r} has link type {arphrd}, neither Ethernet (1) nor a monitor-mode radio "
                       f"with radiotap headers (803)")


@dataclass
class SourceStats:
    """What one source saw: frames read into Python, and the kernel's count of frames that passed the filter
    and of those it dropped (its buffer full)."""

    received: int = 0
    kernel_received: int = 0
    kernel_dropped: int = 0
    read_errors: int = 0
    reopened: int = 0
    open: bool = False
    last_error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class LiveSource:
    """One interface: an AF_PACKET socket with the filter attached, read in non-blocking bursts."""

    def __init__(self, interface: str, linktype: int, expression: str, buffer_bytes: int,
                 promiscuous: bool = True) -> None:
        self.name = interface
        self.label = interface
        self.linktype = linktype
        self.expression = expression
        self.buffer_bytes = buffer_bytes
        self.promiscuous = promiscuous
        self.stats = SourceStats()
        self.sock: socket.socket | None = None
        self.buffer_granted = 0
        self._code = compile_filter(expression, linktype)
        self._error: OSError | None = None  # raised by the next read(), after the frames read before it

    def is_up(self) -> bool:
        """The interface exists and is administratively up (a bound socket on a down one only errs)."""
        try:
            return bool(int((Path("/sys/class/net") / self.name / "flags").read_text(), 16) & 1)
        except (OSError, ValueError):
            return False

    def open(self) -> None:
        """Open the socket: filter first (no unwanted frame is ever queued), then bind, buffer, promiscuous."""
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: nothing queued before bind
        except PermissionError:
            raise CaptureError("opening a raw packet socket needs CAP_NET_RAW (run as root, or give the service "
                               "the capability as its systemd unit does)") from None
        except OSError as err:
            raise CaptureError(f"cannot open a raw packet socket: {err}") from err
        try:
            attach_filter(sock, self._code)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.buffer_bytes)
            except PermissionError:  # without CAP_NET_ADMIN the kernel caps it at net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.buffer_bytes)
            self.buffer_granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
            if self.buffer_granted < self.buffer_bytes:
                logger.warning("%s: receive buffer is %d bytes, not the %d asked for (no CAP_NET_ADMIN; raise "
                               "net.core.rmem_max); bursts may be dropped", self.name, self.buffer_granted,
                               self.buffer_bytes)
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:  # kernels before 4.20: outgoing frames are skipped by their packet type instead
                pass
            sock.bind((self.name, ETH_P_ALL))
            if self.promiscuous:
                ifindex = socket.if_nametoindex(self.name)
                mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except OSError as err:
            sock.close()
            if err.errno == errno.ENODEV:
                raise CaptureError(f"there is no network interface named {self.name!r}") from None
            raise CaptureError(f"cannot capture on {self.name!r}: {err}") from err
        self.sock = sock  # a new socket's kernel counters start at zero; the totals carry on across reopens
        self.stats.open = True
        self.stats.last_error = None

    def fileno(self) -> int:
        """For select()."""
        return self.sock.fileno() if self.sock is not None else -1

    def read(self, limit: int = READ_BURST) -> list[tuple[float, bytes]]:
        """Frames waiting in the kernel, up to `limit`, each stamped with the time it was read. Raises OSError
        when the interface went away or down."""
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        sock = self.sock
        if sock is None:
            return []
        out: list[tuple[float, bytes]] = []
        recv = sock.recvfrom
        now = time.time
        for _ in range(limit):
            try:
                frame, address = recv(SNAPLEN)
            except BlockingIOError:
                break
            except OSError as err:  # hand over what was read first; the error comes with the next call
                if not out:
                    raise
                self._error = err
                break
            if address[2] == PACKET_OUTGOING:
                continue
            out.append((now(), frame))
        self.stats.received += len(out)
        return out

    def _poll_kernel(self, sock: socket.socket) -> None:
        raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        packets, drops = struct.unpack("II", raw)  # reading resets them; tp_packets includes the drops
        self.stats.kernel_received += packets
        self.stats.kernel_dropped += drops

    def poll_kernel(self) -> None:
        """Add the kernel's counters since the last poll to the stats."""
        if self.sock is not None:
            try:
                self._poll_kernel(self.sock)
            except OSError as err:
                logger.warning("%s: reading the kernel's packet statistics failed: %s", self.name, err)

    def close(self) -> None:
        """Close the socket (its promiscuous membership goes with it)."""
        if self.sock is not None:
            self.poll_kernel()
            self.sock.close()
            self.sock = None
        self._error = None
        self.stats.open = False


class ReplaySource:
    """A capture file played as if live: each frame released when its offset from the first (divided by
    `speed`) has passed, stamped with that wall-clock time; from the start again when `loop` is set."""

    def __init__(self, path: Path, speed: float = 1.0, loop: bool = False) -> None:
        self.path = path
        self.name = "replay-" + path.stem
        self.label = f"replay:{path.name}"
        self.speed = speed
        self.loop = loop
        self.stats = SourceStats(open=True)
        self.linktype = DLT_EN10MB
        self._frames: Iterator[tuple[int, float, bytes]] | None = None
        self._pending: tuple[int, float, bytes] | None = None
        self._first = 0.0
        self._start = 0.0
        self.done = False

    def _rewind(self) -> None:
        from netmon.engine import read_capture

        self._frames = read_capture(self.path)
        self._pending = next(self._frames, None)
        if self._pending is None:
            raise CaptureError(f"{self.path}: the capture holds no frames")
        self._first = self._pending[1]
        self._start = time.time()

    def check(self) -> None:
        """Read the first frame now: raises CaptureError or ValueError for a file that is not a capture."""
        self._rewind()

    def due_in(self) -> float:
        """Seconds until the next frame is due (0 when one is due now; a day when the file is done)."""
        if self.done:
            return 86400.0
        if self._pending is None:
            return 0.0  # read() rewinds
        return max(0.0, self._start + (self._pending[1] - self._first) / self.speed - time.time())

    def read(self, limit: int = READ_BURST) -> list[tuple[int, float, bytes]]:
        """Frames due by now: (link type, wall-clock time, frame). A file that turns unreadable (corrupt
        further on, deleted, emptied) ends this source: logged once, counted, the frames before it kept."""
        out: list[tuple[int, float, bytes]] = []
        if self.done:
            return out
        try:
            if self._pending is None:
                self._rewind()
            now = time.time()
            while self._pending is not None and len(out) < limit:
                linktype, ts, frame = self._pending
                at = self._start + (ts - self._first) / self.speed
                if at > now:
                    break
                out.append((linktype, at, frame))
                self._pending = next(self._frames, None) if self._frames is not None else None
                if self._pending is None:
                    if self.loop:
                        self.stats.extra["loops"] = int(self.stats.extra.get("loops", 0)) + 1  # type: ignore[call-overload]
                        self._rewind()
                        break
                    self.done = True
        except (CaptureError, ValueError, OSError) as err:
            self.done = True
            self.stats.open = False
            self.stats.read_errors += 1
            self.stats.last_error = str(err)
            logger.error("%s: replay stopped: %s", self.path, err)
        self.stats.received += len(out)
        return out
