"""A video file through one camera's counting pipeline offline, as fast as it decodes: crossings and totals.

The same stages as the service (frames prepared as the camera's `rotate`/`width` say, at most the camera's
`fps` of them per second of video, motion gate, detector, tracker, door line), timed by the video's own clock
instead of the wall clock. Nothing is published or stored as a fact; an annotated snapshot of each crossing
(both directions) goes to the folder given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.config_vision import CameraSettings, VisionSettings
from vision.camera import prepare
from vision.doorline import Direction
from vision.pipeline import Detects, DoorWatch, annotate, save_snapshot

logger = logging.getLogger(__name__)

FALLBACK_FPS = 25.0  # when a file does not say its frame rate


class VideoUnreadable(Exception):
    """The file cannot be opened or decoded as a video."""


@dataclass(frozen=True)
class ReplayedCrossing:
    """A crossing in the video: seconds from its start, the direction, the track and the snapshot written."""

    video_s: float
    direction: Direction
    track_id: int
    snapshot: Path


@dataclass(frozen=True)
class ReplayTotals:
    """What a replay saw: frames in the file, frames counted, detector runs, the video's length in seconds, and
    the crossings each way."""

    frames: int
    processed: int
    detector_runs: int
    video_s: float
    entered: int
    exited: int


def video_clock(seconds: float) -> str:
    """A time in a video as MM:SS.mmm."""
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:06.3f}"


def open_video(video: Path) -> tuple[cv2.VideoCapture, float]:
    """An opened capture of a video file and its frame rate; VideoUnreadable when it is missing or no video."""
    if not video.is_file():
        raise VideoUnreadable(f"{video}: no such file")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        cap.release()
        raise VideoUnreadable(f"{video}: not a video OpenCV can open")
    fps = cap.get(cv2.CAP_PROP_FPS)
    return cap, fps if 0 < fps < 1000 else FALLBACK_FPS


def check_video(video: Path) -> None:
    """Raise VideoUnreadable unless at least one frame of `video` decodes."""
    cap, _ = open_video(video)
    try:
        ok, image = cap.read()
    finally:
        cap.release()
    if not ok or image is None:
        raise VideoUnreadable(f"{video}: no frame could be decoded")


def video_frames(video: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds from the start, BGR image) of each frame of a file, then (seconds in all, an empty image)."""
    cap, fps = open_video(video)
    k = 0
    try:
        while True:
            ok, image = cap.read()
            if not ok or image is None:
                break
            yield k / fps, image
            k += 1
    finally:
        cap.release()
    if k == 0:
        raise VideoUnreadable(f"{video}: no frame could be decoded")
    yield k / fps, np.empty((0, 0, 3), np.uint8)


def replay(video: Path, camera: str, cam: CameraSettings, vision: VisionSettings, detector: Detects, out: Path,
           on_crossing: Callable[[ReplayedCrossing], None] | None = None) -> ReplayTotals:
    """Count the people crossing `cam`'s door line in `video`, writing a snapshot of each crossing under
    `out/<camera>/`; `on_crossing` hears each as it is found."""
    watch = DoorWatch(cam, vision, detector)
    period = 1.0 / cam.fps
    next_s, frames, last_s = 0.0, 0, 0.0
    entered = exited = 0
    for video_s, image in video_frames(video):
        if image.size == 0:  # the end: its time is the video's length
            last_s = video_s
            break
        frames += 1
        if video_s + 1e-6 < next_s:  # the live service takes at most `fps` frames a second too
            continue
        next_s = max(next_s + period, video_s)
        for counted in watch.process(prepare(image, cam.rotate, cam.width), video_s):
            crossing = counted.crossing
            assert watch.line is not None  # set up by the frame just processed
            stamp = f"{video.name} at {video_clock(video_s)}"
            path = save_snapshot(annotate(counted, watch.line, vision.blur_people, stamp), out, camera,
                                 crossing.track_id)
            found = ReplayedCrossing(video_s, crossing.direction, crossing.track_id, path)
            entered += found.direction == "in"
            exited += found.direction == "out"
            if on_crossing is not None:
                on_crossing(found)
    return ReplayTotals(frames, watch.stats.frames, watch.stats.detector_runs, last_s, entered, exited)
