"""Person detection with LiteRT: preprocessing, one invoke, decoding the model's outputs into boxes.

Three output styles are decoded here (DESIGN.md, "Person detection models"):
- raw SSD (`pedestrian-ssdlite`, `oidv4-ssd`): box encodings against TF object detection API anchors, one
  logit per class; score = sigmoid(logit of the person class); then NMS in numpy;
- BlazePose's detector: MediaPipe anchors, the box is the face, the body is the circle around the mid-hip
  keypoint through the shoulder-centre keypoint;
- `TFLite_Detection_PostProcess` (the SSD models sites bring: Coral / TF zoo): boxes, classes, scores and
  count come out decoded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from vision.anchors import blazepose_anchors, ssd_anchors
from vision.boxes import Detection, nms

logger = logging.getLogger(__name__)

Decoder = Literal["ssd", "blazepose", "postprocess"]


def load_interpreter(path: Path, threads: int) -> Any:
    """A LiteRT interpreter (ai-edge-litert, or tflite-runtime on older images) with XNNPACK on `threads`."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older Pi images: tflite-runtime 2.14 (needs NumPy < 2)
        from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


@dataclass(frozen=True)
class DecodeParams:
    """How to read one model: its input and where the person score is."""

    decoder: Decoder
    input_size: int = 300
    letterbox: bool = False  # keep the aspect ratio and pad (BlazePose); else stretch (SSD)
    person_class: int = 1  # raw SSD: index into the class logits; postprocess: the class id of "person"
    threshold: float = 0.5
    nms_iou: float = 0.45
    box_scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)


@dataclass
class StageTimes:
    """Seconds spent in each stage, summed over every call, for the benchmark."""

    totals: dict[str, float] = field(default_factory=lambda: {"preprocess": 0.0, "invoke": 0.0, "decode": 0.0})

    def add(self, preprocess: float, invoke: float, decode: float) -> None:
        """Record one call."""
        self.totals["preprocess"] += preprocess
        self.totals["invoke"] += invoke
        self.totals["decode"] += decode


IDENTITY_LEVELS = np.arange(256, dtype=np.float32)


def contrast_levels(image: np.ndarray) -> np.ndarray:
    """256 output levels (float) that stretch the image's 1st to 99th percentile grey level, read off every
    4th pixel, to the full range; the identity when it is flat or already full range. The default model
    loses dark-clothed people below ~40 % brightness, and this restores them."""
    sample = image[::4, ::4].ravel()
    k_low, k_high = len(sample) // 100, len(sample) - 1 - len(sample) // 100
    part = np.partition(sample, (k_low, k_high))
    low, high = int(part[k_low]), int(part[k_high])
    if high - low < 8 or (low <= 2 and high >= 253):
        return IDENTITY_LEVELS
    return np.clip((IDENTITY_LEVELS - low) * (255.0 / (high - low)), 0, 255)


def stretch_contrast(image: np.ndarray) -> np.ndarray:
    """The image with its contrast stretched (see `contrast_levels`)."""
    return cv2.LUT(image, contrast_levels(image).astype(np.uint8))


def shrink(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to (width, height): halve by pixel averaging first when the frame is twice as large (INTER_AREA
    at an exact factor of 2 is fast, at 640x480 -> 300x300 it took 1.5 ms), then bilinear the rest."""
    h, w = frame.shape[:2]
    while w >= 2 * width and h >= 2 * height:  # 1080p: halve until near the target, never skip detail
        frame = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = frame.shape[:2]
    if w >= 2 * width and h >= height:  # wide frames (640x480 -> 300x300): once more, then stretch the height
        frame = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)


class PersonDetector:
    """One model, one interpreter: `detect(frame_bgr)` gives the people in the frame, in frame pixels."""

    def __init__(self, model_path: Path, params: DecodeParams, threads: int = 2, normalize_contrast: bool = True
                 ) -> None:
        self.params = params
        self.normalize_contrast = normalize_contrast
        self.interpreter = load_interpreter(model_path, threads)
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        self.input_size = int(self.input["shape"][1])
        self.quantized = self.input["dtype"] == np.uint8
        self.times = StageTimes()
        if params.decoder == "ssd":
            self.anchors = ssd_anchors(self.input_size)
        elif params.decoder == "blazepose":
            self.anchors = blazepose_anchors(self.input_size)
        else:
            self.anchors = np.zeros((0, 4), np.float32)
        if params.decoder != "postprocess":
            self._check_anchor_count()

    def _check_anchor_count(self) -> None:
        counts = {int(np.prod(o["shape"][1:-1])) for o in self.outputs}
        if len(self.anchors) not in counts:
            raise ValueError(f"model outputs {sorted(counts)} boxes but the {self.params.decoder} decoder made "
                             f"{len(self.anchors)} anchors: wrong decoder for this model?")

    def preprocess(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """The input tensor, and how to map its [0, 1] coordinates back to the frame (sx, sy, ox, oy)."""
        h, w = frame_bgr.shape[:2]
        size = self.input_size
        if self.params.letterbox:
            scale = size / max(h, w)
            nh, nw = round(h * scale), round(w * scale)
            image = np.zeros((size, size, 3), np.uint8)
            top, left = (size - nh) // 2, (size - nw) // 2
            image[top:top + nh, left:left + nw] = cv2.cvtColor(shrink(frame_bgr, nw, nh), cv2.COLOR_BGR2RGB)
            # input fraction f -> frame pixel: (f * size - offset) / scale
            mapping = (size / scale, size / scale, -left / scale, -top / scale)
        else:
            image = cv2.cvtColor(shrink(frame_bgr, size, size), cv2.COLOR_BGR2RGB)
            mapping = (float(w), float(h), 0.0, 0.0)
        levels = contrast_levels(image) if self.normalize_contrast else IDENTITY_LEVELS
        if self.quantized:
            tensor = cv2.LUT(image, levels.astype(np.uint8))[None]
        else:
            # One lookup does the stretch and the model's scaling to [-1, 1]; letterbox padding (0) becomes -1.
            tensor = cv2.LUT(image, (levels / 127.5 - 1.0).astype(np.float32))[None]
        return tensor, mapping

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """People in the frame, best first."""
        t0 = time.perf_counter()
        tensor, mapping = self.preprocess(frame_bgr)
        t1 = time.perf_counter()
        self.interpreter.set_tensor(self.input["index"], tensor)
        self.interpreter.invoke()
        t2 = time.perf_counter()
        found = self.decode(mapping, frame_bgr.shape[1], frame_bgr.shape[0])
        self.times.add(t1 - t0, t2 - t1, time.perf_counter() - t2)
        return found

    def decode(self, mapping: tuple[float, float, float, float], width: int, height: int) -> list[Detection]:
        """The last invoke's outputs as detections in frame pixels."""
        p = self.params
        if p.decoder == "postprocess":
            boxes, scores = self._postprocess_outputs()
        else:
            outs = [self.interpreter.get_tensor(o["index"]) for o in self.outputs]
            enc = next(o for o in outs if o.shape[-1] in (4, 12)).reshape(len(self.anchors), -1)
            logits = next(o for o in outs if o.shape[-1] not in (4, 12)).reshape(len(self.anchors), -1)
            # sigmoid(x) >= t exactly when x >= logit(t): compare logits, take the sigmoid of the few kept
            column = logits[:, p.person_class if p.decoder == "ssd" else 0]
            keep = np.flatnonzero(column >= np.log(p.threshold / (1.0 - p.threshold)))
            scores = 1.0 / (1.0 + np.exp(-np.clip(column[keep], -80, 80)))
            if p.decoder == "ssd":
                boxes = _decode_ssd(enc[keep, :4], self.anchors[keep], p.box_scales)
            else:
                boxes = _decode_blazepose_body(enc[keep], self.anchors[keep], self.input_size)
        if len(scores) == 0:
            return []
        sx, sy, ox, oy = mapping
        px = np.empty_like(boxes)
        px[:, 0] = np.clip(boxes[:, 1] * sx + ox, 0, width)  # x1
        px[:, 1] = np.clip(boxes[:, 0] * sy + oy, 0, height)  # y1
        px[:, 2] = np.clip(boxes[:, 3] * sx + ox, 0, width)  # x2
        px[:, 3] = np.clip(boxes[:, 2] * sy + oy, 0, height)  # y2
        ok = (px[:, 2] - px[:, 0] > 2) & (px[:, 3] - px[:, 1] > 2)
        px, scores = px[ok], scores[ok]
        kept = nms(px, scores, p.nms_iou)
        return [Detection(*map(float, px[i]), score=float(scores[i])) for i in kept]

    def _postprocess_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (ymin, xmin, ymax, xmax in [0, 1]) and scores of the person class from a PostProcess op."""
        named = {o["name"]: self.interpreter.get_tensor(o["index"]) for o in self.outputs}
        arrays = list(named.values())
        boxes = next(a for a in arrays if a.ndim == 3 and a.shape[-1] == 4)[0]
        count_arr = next((a for a in arrays if a.size == 1), None)
        rest = [a[0] for a in arrays if a.ndim == 2 and a.shape[-1] == boxes.shape[0]]
        # classes hold whole numbers, scores do not (TF1 and TF2 exports order the outputs differently)
        classes = next((a for a in rest if np.allclose(a, np.round(a))), rest[0])
        scores = next((a for a in rest if a is not classes), rest[-1])
        n = int(count_arr.ravel()[0]) if count_arr is not None else len(scores)
        boxes, classes, scores = boxes[:n], classes[:n], scores[:n]
        keep = (np.round(classes).astype(int) == self.params.person_class) & (scores >= self.params.threshold)
        return boxes[keep].astype(np.float32), scores[keep].astype(np.float32)


def _decode_ssd(enc: np.ndarray, anchors: np.ndarray, scales: tuple[float, float, float, float]) -> np.ndarray:
    """Faster R-CNN box coder: (ty, tx, th, tw) against (yc, xc, h, w) anchors -> (ymin, xmin, ymax, xmax)."""
    ya, xa, ha, wa = anchors.T
    ty, tx, th, tw = enc.T
    yc = ty / scales[0] * ha + ya
    xc = tx / scales[1] * wa + xa
    h = np.exp(np.clip(th / scales[2], -10, 10)) * ha
    w = np.exp(np.clip(tw / scales[3], -10, 10)) * wa
    return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)


def _decode_blazepose_body(enc: np.ndarray, anchors: np.ndarray, size: int) -> np.ndarray:
    """The body box: a square around keypoint 0 (mid-hip) with the distance to keypoint 1 as its radius."""
    ya, xa = anchors[:, 0], anchors[:, 1]
    hip_x = enc[:, 4] / size + xa
    hip_y = enc[:, 5] / size + ya
    top_x = enc[:, 6] / size + xa
    top_y = enc[:, 7] / size + ya
    radius = np.hypot(top_x - hip_x, top_y - hip_y)
    return np.stack([hip_y - radius, hip_x - radius, hip_y + radius, hip_x + radius], axis=1)
