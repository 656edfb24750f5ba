"""Settings of the vision service: cameras, their door zones, the detector and the evidence it keeps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edge.config_base import DoorId, Section
from edge.topics import NAME_PATTERN

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
FracPoint = tuple[Fraction, Fraction]
CameraId = Annotated[str, Field(pattern=NAME_PATTERN)]

ON_LINE_FRACTION = 0.02  # an inside point nearer the door line than this (in frame fractions) names no side


def line_cross(p1: tuple[float, float], p2: tuple[float, float], point: tuple[float, float]) -> float:
    """Cross product of p1 -> p2 and p1 -> point: negative on the left of p1 -> p2 as seen on screen (y grows
    downward), positive on the right. Its sign does not change when x and y are scaled (fractions or pixels)."""
    return (p2[0] - p1[0]) * (point[1] - p1[1]) - (p2[1] - p1[1]) * (point[0] - p1[0])


def inside_side(p1: tuple[float, float], p2: tuple[float, float],
                inside: Literal["left", "right"] | tuple[float, float]) -> Literal["left", "right"]:
    """The side of p1 -> p2 that `inside` names: "left"/"right" as given, or the side a point lies on.

    A point within ON_LINE_FRACTION of the (infinite) line names no side: ValueError.
    """
    if isinstance(inside, str):
        return inside
    distance = line_cross(p1, p2, inside) / math.dist(p1, p2)
    if abs(distance) < ON_LINE_FRACTION:
        raise ValueError(f"the inside point ({inside[0]:g}, {inside[1]:g}) lies on the door line "
                         f"({p1[0]:g}, {p1[1]:g})->({p2[0]:g}, {p2[1]:g}); give a point well inside the room")
    return "left" if distance < 0 else "right"


class CameraSettings(Section):
    """One camera watching one door. Positions are fractions of the frame (0-1, from the top left corner)."""

    url: str = Field(description="`rtsp://...` or `http://...` stream, a V4L2 device (`/dev/video0`), or a video "
                     "file (with `loop` for tests and the demo).")
    door: DoorId = Field(description="Door id (as in the badge config) whose grants this camera's entries are "
                         "held against.")
    loop: bool = Field(default=False, description="Start a video file again at its end.")
    width: int | None = Field(default=None, ge=64, le=4096, description="Resize frames to this width (height "
                              "follows the aspect ratio); null keeps the camera's size.")
    rotate: Literal[0, 90, 180, 270] = Field(default=0, description="Turn frames clockwise by this many degrees "
                                             "first (the detector fails on upside-down people).")
    fps: float = Field(default=10.0, gt=0, le=60, description="Most frames per second to process; the reader "
                       "keeps only the newest frame, so a slow detector never builds up a delay.")
    line: tuple[FracPoint, FracPoint] = Field(description="The door line from p1 to p2, e.g. [[0.5, 0], [0.5, 1]].")
    inside: Literal["left", "right"] | FracPoint = Field(description="Where inside is: best a point on the "
                                                         "picture in the room, e.g. [0.8, 0.5] (fractions of the "
                                                         "frame, not on the line); or `left`/`right`, your hand "
                                                         "walking from p1 to p2 on the picture (so for a line drawn "
                                                         "top to bottom `left` is the picture's right). The "
                                                         "service logs at start which side that is, in words.")
    band_px: float = Field(default=20.0, ge=0, description="Within this many pixels of the line a person's side is "
                           "undecided, so jitter on the line never counts twice.")
    roi: tuple[Fraction, Fraction, Fraction, Fraction] | None = Field(default=None, description="Region of "
                                                                     "interest x1, y1, x2, y2 for the motion gate; "
                                                                     "null is the whole frame.")
    anchor: Literal["foot", "center"] = Field(default="foot", description="Which point of a person's box is "
                                              "counted on the line: the feet (camera sees the floor) or the "
                                              "middle.")

    @field_validator("line")
    @classmethod
    def _two_points(cls, value: tuple[FracPoint, FracPoint]) -> tuple[FracPoint, FracPoint]:
        if value[0] == value[1]:
            raise ValueError("the door line needs two different points")
        return value

    @field_validator("inside")
    @classmethod
    def _inside_off_the_line(cls, value: str | FracPoint, info: ValidationInfo) -> str | FracPoint:
        line = info.data.get("line")
        if line is not None and not isinstance(value, str):
            inside_side(line[0], line[1], value)  # a ValueError saying the point lies on the line
        return value

    @field_validator("roi")
    @classmethod
    def _roi_ordered(cls, value: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if value is not None and (value[0] >= value[2] or value[1] >= value[3]):
            raise ValueError("roi is x1, y1, x2, y2 with x1 < x2 and y1 < y2")
        return value


class VisionSettings(Section):
    """The vision service: cameras, the person detector, tracking and the evidence it keeps."""

    cameras: dict[CameraId, CameraSettings] = Field(default_factory=dict, description="Cameras, by camera id.")
    model: str = Field(default="pedestrian-ssdlite", description="A model name from `sitewarden models list` "
                       "(loaded from the model cache after its sha256 is checked), or the path of a site's own "
                       "SSD .tflite with TFLite_Detection_PostProcess outputs.")
    model_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$", description="sha256 of a site's own "
                                     "model file; it is refused when it does not match.")
    person_class: int = Field(default=0, ge=0, description="Class id of `person` in a site's own model (0 in the "
                              "TF zoo's COCO label map).")
    threshold: float | None = Field(default=None, gt=0, lt=1, description="Person score threshold; null takes "
                                    "the model's own default.")
    threads: int = Field(default=2, ge=1, le=8, description="CPU threads for the detector (XNNPACK).")
    normalize_contrast: bool = Field(default=True, description="Stretch each frame's contrast before detection "
                                     "(dark corridors).")
    idle_detect_s: float = Field(default=2.0, gt=0, description="While nothing moves, run the detector only this "
                                 "often (a heartbeat check).")
    motion_threshold: int = Field(default=25, ge=1, le=255, description="Grey-level change that counts as motion.")
    motion_min_fraction: float = Field(default=0.002, gt=0, lt=1, description="Share of the region that must "
                                       "change to count as motion.")
    max_missed_s: float = Field(default=1.0, gt=0, description="A person hidden this long loses their track.")
    reconnect_min_s: float = Field(default=1.0, gt=0, description="First wait before opening a lost stream again.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest wait between attempts (it doubles).")
    offline_after_s: float = Field(default=5.0, gt=0, description="A camera with no frame for this long is offline.")
    snapshots: bool = Field(default=True, description="Save a JPEG with boxes and track ids for each entry.")
    blur_people: bool = Field(default=False, description="Blur the people in snapshots (privacy).")
    snapshot_dir: Path | None = Field(default=None, description="Where snapshots go; default `<data_dir>/vision/"
                                      "snapshots`.")
    snapshot_retention_days: float = Field(default=30.0, gt=0, description="Snapshots older than this are deleted.")
    snapshot_max_mb: float = Field(default=500.0, gt=0, description="When snapshots take more room, the oldest go.")

    @model_validator(mode="after")
    def _backoff_order(self) -> VisionSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must not be below reconnect_min_s")
        if ("/" in self.model or self.model.endswith(".tflite")) and not self.model_sha256:
            raise ValueError("a site's own model file needs model_sha256 (sha256sum of the file): only a checked "
                             "model is loaded")
        return self
