"""Boxes of detected people, in frame pixels, and the two operations every stage needs: overlap and NMS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One person the detector saw: a box in frame pixels (x1, y1, x2, y2) and its score (0-1)."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    @property
    def center(self) -> tuple[float, float]:
        """Middle of the box."""
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    @property
    def foot(self) -> tuple[float, float]:
        """Middle of the box's bottom edge: where a standing person touches the floor."""
        return (self.x1 + self.x2) / 2, self.y2

    @property
    def area(self) -> float:
        """Area in square pixels."""
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `a` (N x 4, x1 y1 x2 y2) with every box in `b` (M x 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def nms(boxes: Sequence[Sequence[float]], scores: Sequence[float], iou_threshold: float, max_out: int = 50
        ) -> list[int]:
    """Indices of the boxes (x1, y1, x2, y2) kept by greedy non-maximum suppression, best score first: a box is
    kept when it overlaps no better kept box by more than `iou_threshold`. Plain Python: a frame has a few dozen
    candidates at most, where numpy's per-call cost would be most of the time."""
    keep: list[int] = []
    kept: list[tuple[float, float, float, float, float]] = []
    for i in sorted(range(len(scores)), key=lambda k: -scores[k]):
        x1, y1, x2, y2 = boxes[i]
        area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        for kx1, ky1, kx2, ky2, karea in kept:
            inter = max(0.0, min(x2, kx2) - max(x1, kx1)) * max(0.0, min(y2, ky2) - max(y1, ky1))
            union = area + karea - inter
            if union > 0 and inter / union > iou_threshold:
                break
        else:
            keep.append(i)
            kept.append((x1, y1, x2, y2, area))
            if len(keep) == max_out:
                break
    return keep
