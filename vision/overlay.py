"""Drawing the door on a picture: the line, its inside side shaded green and labelled INSIDE."""

from __future__ import annotations

import cv2
import numpy as np

from vision.doorline import DoorLine

INSIDE_BGR = (0, 200, 0)
LINE_BGR = (0, 255, 255)
INSIDE_ALPHA = 0.3  # how strongly the inside is tinted: the scene stays readable under it
LABEL_OFFSET_PX = 60
LABEL_ALONG = 0.2  # where along p1 -> p2 the INSIDE label sits


def inside_mask(line: DoorLine, height: int, width: int) -> np.ndarray:
    """True for each pixel of a `height` x `width` frame on the inside of the (infinite) door line."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.asarray(line.signed_distance((xs, ys)) > 0)  # type: ignore[arg-type]  # numpy broadcasts


def draw_door(image: np.ndarray, line: DoorLine) -> np.ndarray:
    """Shade the inside of the door line, label it INSIDE and draw the line as an arrow p1 -> p2, in place."""
    h, w = image.shape[:2]
    mask = inside_mask(line, h, w)
    tint = np.array(INSIDE_BGR, np.float32)
    image[mask] = (image[mask].astype(np.float32) * (1 - INSIDE_ALPHA) + tint * INSIDE_ALPHA).astype(np.uint8)
    p1 = (int(line.p1[0]), int(line.p1[1]))
    p2 = (int(line.p2[0]), int(line.p2[1]))
    cv2.arrowedLine(image, p1, p2, LINE_BGR, 2, tipLength=0.03)
    # The label: a step towards the inside from near the start of the line (off the middle, where people walk).
    dx, dy = line.p2[0] - line.p1[0], line.p2[1] - line.p1[1]
    nx, ny = (dy / line.length, -dx / line.length) if line.inside == "left" else (-dy / line.length, dx / line.length)
    mx, my = line.p1[0] + dx * LABEL_ALONG, line.p1[1] + dy * LABEL_ALONG
    (tw, th), _ = cv2.getTextSize("INSIDE", cv2.FONT_HERSHEY_SIMPLEX, 0.7, 2)
    cx, cy = mx + nx * LABEL_OFFSET_PX, my + ny * LABEL_OFFSET_PX
    x = int(min(max(cx - tw / 2, 2), w - tw - 2))
    y = int(min(max(cy + th / 2, th + 2), h - 4))
    cv2.putText(image, "INSIDE", (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4)
    cv2.putText(image, "INSIDE", (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return image
