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

import functools
import logging
import math
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


def contrast_range(image: np.ndarray) -> tuple[int, int]:
    """The grey levels to stretch to the full range: the image's 1st and 99th percentile, read off every 4th
    pixel or so; (0, 255), no stretch, when it is flat or already full range. The default model loses dark-clothed
    people below ~40 % brightness, and this restores them."""
    # Every 4th pixel by a nearest-neighbour resize and the k-th smallest as the first level whose cumulative
    # count exceeds k: a third of the time of a strided copy and np.partition right after an invoke.
    h, w = image.shape[:2]
    sample = cv2.resize(image, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_NEAREST)
    cumulative = np.cumsum(np.bincount(sample.ravel(), minlength=256))
    n = int(cumulative[-1])
    k = n // 100
    low, high = (int(v) for v in np.searchsorted(cumulative, (k, n - 1 - k), side="right"))
    if high - low < 8 or (low <= 2 and high >= 253):
        return 0, 255
    return low, high


@functools.lru_cache(maxsize=4096)
def input_table(low: int, high: int, quantized: bool) -> np.ndarray:
    """The 256-entry lookup that stretches [low, high] to the full range and scales to the model's input: uint8
    for a quantized model, else float32 in [-1, 1] (letterbox padding, level 0, becomes -1). Kept per range:
    a camera's range changes little from frame to frame."""
    levels = np.clip((np.arange(256, dtype=np.float32) - low) * (255.0 / (high - low)), 0, 255)
    table = levels.astype(np.uint8) if quantized else (levels / 127.5 - 1.0).astype(np.float32)
    table.flags.writeable = False
    return table


def stretch_contrast(image: np.ndarray) -> np.ndarray:
    """The image with its contrast stretched (see `contrast_range`)."""
    return cv2.LUT(image, input_table(*contrast_range(image), quantized=True))


def shrink(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to (width, height): halve by pixel averaging while the frame is twice as large (INTER_AREA at an
    exact factor of 2 is fast, at 640x480 -> 300x300 it took 1.5 ms), then bilinear the rest. Bilinear alone
    skips detail beyond ~2.5x (a 1080p person scored 0.00), and halving a 640x480 frame's width as well would
    throw away half its height (scores were lower)."""
    h, w = frame.shape[:2]
    while w >= 2 * width and h >= 2 * height:  # 1080p: halve until near the target, never skip detail
        frame = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = frame.shape[:2]
    if w >= 2.5 * width and h >= height:  # wide frames (960x540 -> 300x300): once more, then stretch the height
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
        self._threshold_logit = float(np.log(params.threshold / (1.0 - params.threshold)))
        if params.decoder == "ssd":
            self.anchors = ssd_anchors(self.input_size)
        elif params.decoder == "blazepose":
            self.anchors = blazepose_anchors(self.input_size)
        else:
            self.anchors = np.zeros((0, 4), np.float32)
        if params.decoder != "postprocess":
            self._check_anchor_count()
            # which output holds the box encodings (4 or 12 per anchor) and which the class logits
            enc = next(o["index"] for o in self.outputs if o["shape"][-1] in (4, 12))
            self._raw_indices = (enc, next(o["index"] for o in self.outputs if o["index"] != enc))

    def _check_anchor_count(self) -> None:
        counts = {int(np.prod(o["shape"][1:-1])) for o in self.outputs}
        if len(self.anchors) not in counts:
            raise ValueError(f"model outputs {sorted(counts)} boxes but the {self.params.decoder} decoder made "
                             f"{len(self.anchors)} anchors: wrong decoder for this model?")

    def preprocess(self, frame_bgr: np.ndarray, out: np.ndarray) -> tuple[float, float, float, float]:
        """Write the input tensor into `out` (1 x size x size x 3); returns how to map its [0, 1] coordinates
        back to the frame (sx, sy, ox, oy)."""
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
        # one lookup does the stretch and the model's input scaling
        table = input_table(*(contrast_range(image) if self.normalize_contrast else (0, 255)), self.quantized)
        cv2.LUT(image, table, dst=out[0])
        return mapping

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        """People in the frame, best first."""
        t0 = time.perf_counter()
        # The lookup writes straight into the interpreter's input tensor (no set_tensor copy); the view must be
        # gone before invoke(), which refuses to run while Python holds one.
        view = self.interpreter.tensor(self.input["index"])()
        mapping = self.preprocess(frame_bgr, view)
        del view
        t1 = time.perf_counter()
        self.interpreter.invoke()
        t2 = time.perf_counter()
        found = self.decode(mapping, frame_bgr.shape[1], frame_bgr.shape[0])
        self.times.add(t1 - t0, t2 - t1, time.perf_counter() - t2)
        return found

    def decode(self, mapping: tuple[float, float, float, float], width: int, height: int) -> list[Detection]:
        """The last invoke's outputs as detections in frame pixels."""
        p = self.params
        if p.decoder == "postprocess":
            found, scores = self._postprocess_outputs()
            boxes = found.tolist()
        else:
            enc, logits = self._raw_outputs()
            # sigmoid(x) >= t exactly when x >= logit(t): compare logits, take the sigmoid of the few kept
            column = logits[:, p.person_class if p.decoder == "ssd" else 0]
            keep = np.flatnonzero(column >= self._threshold_logit)
            if len(keep) == 0:
                return []
            scores = [1.0 / (1.0 + math.exp(-min(max(x, -80.0), 80.0))) for x in column[keep].tolist()]
            if p.decoder == "ssd":
                boxes = _decode_ssd(enc[keep, :4].tolist(), self.anchors[keep].tolist(), p.box_scales)
            else:
                boxes = _decode_blazepose_body(enc[keep], self.anchors[keep], self.input_size).tolist()
        # From here on plain Python over the few candidates (a dozen on a busy frame): per box it beats numpy's
        # per-call cost, which right after an invoke (caches flushed) was most of the decoding time.
        sx, sy, ox, oy = mapping
        pixels: list[tuple[float, float, float, float]] = []
        kept_scores: list[float] = []
        for (ymin, xmin, ymax, xmax), score in zip(boxes, scores, strict=True):
            x1 = min(max(xmin * sx + ox, 0.0), width)
            y1 = min(max(ymin * sy + oy, 0.0), height)
            x2 = min(max(xmax * sx + ox, 0.0), width)
            y2 = min(max(ymax * sy + oy, 0.0), height)
            if x2 - x1 > 2 and y2 - y1 > 2:
                pixels.append((x1, y1, x2, y2))
                kept_scores.append(float(score))
        return [Detection(*pixels[i], score=kept_scores[i]) for i in nms(pixels, kept_scores, p.nms_iou)]

    def _raw_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """Box encodings and class logits of the last invoke, one row per anchor."""
        n = len(self.anchors)
        return (self.interpreter.get_tensor(self._raw_indices[0]).reshape(n, -1),
                self.interpreter.get_tensor(self._raw_indices[1]).reshape(n, -1))

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


def _decode_ssd(enc: list[list[float]], anchors: list[list[float]], scales: tuple[float, float, float, float]
                ) -> list[tuple[float, float, float, float]]:
    """Faster R-CNN box coder: (ty, tx, th, tw) against (yc, xc, h, w) anchors -> (ymin, xmin, ymax, xmax)."""
    out = []
    for (ty, tx, th, tw), (ya, xa, ha, wa) in zip(enc, anchors, strict=True):
        yc = ty / scales[0] * ha + ya
        xc = tx / scales[1] * wa + xa
        half_h = math.exp(min(max(th / scales[2], -10.0), 10.0)) * ha / 2
        half_w = math.exp(min(max(tw / scales[3], -10.0), 10.0)) * wa / 2
        out.append((yc - half_h, xc - half_w, yc + half_h, xc + half_w))
    return out


def _decode_blazepose_body(enc: np.ndarray, anchors: np.ndarray, size: int) -> np.ndarray:
    """The body box: a square around keypoint 0 (mid-hip) with the distance to keypoint 1 as its radius."""
    ya, xa = anchors[:, 0], anchors[:, 1]
    hip_x = enc[:, 4] / size + xa
    hip_y = enc[:, 5] / size + ya
    top_x = enc[:, 6] / size + xa
    top_y = enc[:, 7] / size + ya
    radius = np.hypot(top_x - hip_x, top_y - hip_y)
    return np.stack([hip_y - radius, hip_x - radius, hip_y + radius, hip_x + radius], axis=1)
