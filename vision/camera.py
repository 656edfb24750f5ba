"""Frames from a camera through OpenCV: a reader thread keeps only the newest one, and reconnects with backoff.

Sources: `rtsp://` and `http://` streams (FFmpeg), V4L2 devices (`/dev/videoN`), and video files, played at
their own frame rate (optionally looping) so a file behaves like a camera. The reader decodes every frame the
source sends and keeps only the last: a slow consumer drops frames instead of falling behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

logger = logging.getLogger(__name__)

ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass(frozen=True)
class Frame:
    """One frame: its pixels (BGR), when it was read (monotonic seconds) and its number since start."""

    image: np.ndarray
    t: float
    seq: int


SourceKind = Literal["device", "stream", "file"]


def source_kind(url: str) -> SourceKind:
    """What a camera URL names: a V4L2 device (`/dev/...`, including udev's stable names, or an index), a
    network stream (`scheme://`), or a video file."""
    if url.startswith("/dev/") or url.isdigit():
        return "device"
    return "stream" if "://" in url else "file"


def open_capture(url: str, timeout_s: float = 5.0) -> cv2.VideoCapture:
    """A VideoCapture for a stream URL, a V4L2 device path or index, or a file.

    Streams get FFmpeg's open and read timeouts, so a stream that stops sending makes `read()` fail after
    `timeout_s` instead of blocking for ever.
    """
    kind = source_kind(url)
    if kind == "device":
        index = url.removeprefix("/dev/video")
        return cv2.VideoCapture(int(index) if index.isdigit() else url, cv2.CAP_V4L2)
    if kind == "stream":
        ms = int(timeout_s * 1000)
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG,
                                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    return cv2.VideoCapture(url)


def prepare(image: np.ndarray, rotate: int = 0, width: int | None = None) -> np.ndarray:
    """A frame as the camera's settings want it: turned clockwise by `rotate` degrees, then resized to `width`."""
    if rotate:
        image = cv2.rotate(image, ROTATIONS[rotate])
    if width and image.shape[1] != width:
        height = round(image.shape[0] * width / image.shape[1])
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image


class Camera:
    """Reads one source in a thread; `latest()` gives the newest frame, `online` says whether frames come.

    `on_state(online, reason)` hears each change; when a file that does not loop ends, `ended` is already True
    as it hears the last one (offline, "end of file"), so it can tell an ending from a failure.
    """

    def __init__(self, url: str, *, loop: bool = False, width: int | None = None, rotate: int = 0,
                 reconnect_min_s: float = 1.0, reconnect_max_s: float = 30.0, offline_after_s: float = 5.0,
                 on_state: Callable[[bool, str], None] | None = None) -> None:
        self.url = url
        self.loop = loop
        self.width = width
        self.rotate = rotate
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.offline_after_s = offline_after_s
        self.on_state = on_state or (lambda online, reason: None)
        self.is_file = source_kind(url) == "file"
        self.frames_read = 0
        self.reconnects = 0
        self.online: bool | None = None  # unknown until the first frame or the first failure
        self.ended = False  # a file that does not loop came to its end: not a fault, and it stays off
        self._latest: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{url}", daemon=True)

    def start(self) -> None:
        """Start reading."""
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and release the source."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(5)

    def latest(self, after_seq: int = -1, timeout: float = 1.0) -> Frame | None:
        """The newest frame newer than `after_seq`, waiting up to `timeout` for one; None if none came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._latest is None or self._latest.seq <= after_seq) and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._latest if self._latest is not None and self._latest.seq > after_seq else None

    def _set_online(self, online: bool, reason: str) -> None:
        if online != self.online:
            self.online = online
            if self.ended:
                logger.info("camera %s ended: %s (a file played once; not a fault)", self.url, reason)
            else:
                logger.log(logging.INFO if online else logging.WARNING, "camera %s %s%s", self.url,
                           "online" if online else "offline", f": {reason}" if reason else "")
            try:
                self.on_state(online, reason)
            except Exception:  # e.g. the fact store failing: logged, and the camera goes on
                logger.exception("camera %s: reporting %s failed", self.url, "online" if online else "offline")

    def _run(self) -> None:
        wait = self.reconnect_min_s
        while not self._stop.is_set():
            try:
                cap = open_capture(self.url, self.offline_after_s)
                opened = cap.isOpened()
                got_any = self._read_until_lost(cap) if opened else False
                cap.release()
                reason = "end of file" if self.is_file and opened else "stream lost" if opened else \
                    f"cannot open {self.url}"
            except Exception as err:  # a decoder or callback failure must not end the reader for good
                logger.exception("camera %s: reading failed", self.url)
                got_any, reason = False, f"reading failed: {err}"
            if got_any:
                wait = self.reconnect_min_s
            if self.is_file and got_any:
                if self.loop:
                    continue  # at the end of a looping file: open it again at once
                self.ended = True
                self._set_online(False, reason)
                return  # a file that does not loop is played once
            if not self._stop.is_set():
                self._set_online(False, reason)
                self._stop.wait(wait)
                wait = min(wait * 2, self.reconnect_max_s)
                self.reconnects += 1

    def _read_until_lost(self, cap: cv2.VideoCapture) -> bool:
        """Read frames until the source fails or ends; True when at least one frame came."""
        fps = cap.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        period = 1.0 / fps if 0 < fps < 240 else 0.0
        next_at = time.monotonic()
        got_any = False
        while not self._stop.is_set():
            ok, image = cap.read()
            if not ok or image is None:
                return got_any
            got_any = True
            frame_image = prepare(image, self.rotate, self.width)
            with self._cond:
                self.frames_read += 1
                self._latest = Frame(frame_image, time.monotonic(), self.frames_read)
                self._cond.notify_all()
            self._set_online(True, "")
            if period:  # a file plays at its own speed, like a camera
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()
        return got_any

def snapshot_frame(url: str, timeout_s: float = 10.0) -> np.ndarray:
    """One frame from a source, for `sitewarden vision snapshot`; raises RuntimeError when none comes."""
    cam = Camera(url, reconnect_min_s=0.5, reconnect_max_s=1.0)
    cam.start()
    try:
        frame = cam.latest(timeout=timeout_s)
    finally:
        cam.stop()
    if frame is None:
        raise RuntimeError(f"no frame from {url} within {timeout_s:g} s" +
                           (" (the file does not exist)" if source_kind(url) == "file" and not Path(url).exists()
                            else ""))
    return frame.image
