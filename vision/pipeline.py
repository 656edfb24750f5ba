"""One camera's counting: motion gate, detector, tracker and door line, frame by frame.

The detector, the costly stage, runs only while something moves in the door zone, while people are being
tracked, or every `idle_detect_s` as a heartbeat; an idle door costs one motion check per frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge.config_vision import CameraSettings, VisionSettings
from edge.retention import prune_files
from vision.boxes import Detection
from vision.doorline import Crossing, DoorLine, LineCounter
from vision.motion import MotionGate
from vision.overlay import draw_door
from vision.tracking import Track, Tracker


class Detects(Protocol):
    """What the pipeline needs of a detector (vision.detector.PersonDetector)."""

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """People in the frame."""


@dataclass
class Counted:
    """A crossing, with the frame and tracks it was seen in (for the snapshot)."""

    crossing: Crossing
    image: np.ndarray
    tracks: list[Track]


@dataclass
class PipelineStats:
    """Frames seen, detector runs, and seconds per stage (summed), for status and the benchmark."""

    frames: int = 0
    detector_runs: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {"motion": 0.0, "detect": 0.0, "track": 0.0})


class DoorWatch:
    """Counts people crossing one camera's door line."""

    def __init__(self, camera: CameraSettings, vision: VisionSettings, detector: Detects) -> None:
        self.camera = camera
        self.vision = vision
        self.detector = detector
        self.tracker = Tracker(max_missed_s=vision.max_missed_s)
        self.stats = PipelineStats()
        self.gate: MotionGate | None = None
        self.counter: LineCounter | None = None
        self.line: DoorLine | None = None
        self._size: tuple[int, int] | None = None
        self._last_detect = -1e9
        self._tracks: list[Track] = []

    def _setup(self, width: int, height: int) -> None:
        cam = self.camera
        self.line = DoorLine.from_fractions(cam.line[0], cam.line[1], cam.inside, width, height, band=cam.band_px)
        self.counter = LineCounter(self.line, anchor=cam.anchor)
        roi = None
        if cam.roi is not None:
            roi = (round(cam.roi[0] * width), round(cam.roi[1] * height), round(cam.roi[2] * width),
                   round(cam.roi[3] * height))
        self.gate = MotionGate(roi=roi, threshold=self.vision.motion_threshold,
                               min_fraction=self.vision.motion_min_fraction)
        self._size = (width, height)

    def process(self, image: np.ndarray, t: float) -> list[Counted]:
        """One frame (BGR) read at monotonic time `t`; returns the crossings it completed."""
        height, width = image.shape[:2]
        if self._size != (width, height):
            self._setup(width, height)
        assert self.gate is not None and self.counter is not None
        self.stats.frames += 1
        t0 = time.perf_counter()
        # While people are tracked the detector runs anyway: the gate is skipped, and its background keeps
        # the empty door instead of learning the people.
        moving = bool(self._tracks) or self.gate.update(image)
        t1 = time.perf_counter()
        self.stats.seconds["motion"] += t1 - t0
        if not (moving or self._tracks or t - self._last_detect >= self.vision.idle_detect_s):
            return []
        detections = self.detector.detect(image)
        t2 = time.perf_counter()
        self._last_detect = t
        self.stats.detector_runs += 1
        self._tracks = self.tracker.update(detections, t)
        crossings = self.counter.update(self._tracks, t)
        self.stats.seconds["detect"] += t2 - t1
        self.stats.seconds["track"] += time.perf_counter() - t2
        return [Counted(c, image, list(self._tracks)) for c in crossings]


def annotate(counted: Counted, line: DoorLine, blur: bool, stamp: str | None = None) -> np.ndarray:
    """The frame with the door line and its inside shaded, every tracked box and id, the crossing person in red;
    people blurred; stamped with `stamp` (default: now, in UTC)."""
    image = counted.image.copy()
    h, w = image.shape[:2]
    if blur:
        for track in counted.tracks:
            b = track.box
            x1, y1, x2, y2 = max(0, int(b.x1)), max(0, int(b.y1)), min(w, int(b.x2)), min(h, int(b.y2))
            if x2 > x1 and y2 > y1:
                image[y1:y2, x1:x2] = cv2.GaussianBlur(image[y1:y2, x1:x2], (0, 0), 12)
    draw_door(image, line)
    for track in counted.tracks:
        b = track.box
        colour = (0, 0, 255) if track.id == counted.crossing.track_id else (0, 200, 0)
        cv2.rectangle(image, (int(b.x1), int(b.y1)), (int(b.x2), int(b.y2)), colour, 2)
        cv2.putText(image, f"#{track.id}", (int(b.x1) + 4, max(14, int(b.y1) - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    colour, 2)
    stamp = stamp or datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    cv2.putText(image, f"{counted.crossing.direction} #{counted.crossing.track_id}  {stamp}", (8, h - 10),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return image


def save_snapshot(image: np.ndarray, folder: Path, camera: str, track_id: int) -> Path:
    """Write a JPEG (quality 85) under folder/camera/; returns its path."""
    now = datetime.now(UTC)
    path = folder / camera / f"{now:%Y%m%d-%H%M%S-%f}-{track_id}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise OSError(f"JPEG encoding failed for {path}")
    path.write_bytes(data.tobytes())
    return path


def prune_snapshots(folder: Path, max_age_s: float, max_bytes: float, now: float | None = None) -> int:
    """Delete snapshots older than `max_age_s`, then the oldest until they fit in `max_bytes`; returns count."""
    return prune_files(folder, "*.jpg", max_age_s, max_bytes, now)
