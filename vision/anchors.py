"""Anchor boxes for the raw-SSD person detectors, generated the way their graphs were trained.

Both SSD models (`pedestrian-ssdlite`, `oidv4-ssd`) use TensorFlow's object detection API multiple-grid
anchor generator: 6 layers, scales 0.2-0.95, aspect ratios 1, 2, 1/2, 3 and 0.3333 (written so in the
training config; 1/3 is off by 8e-5) plus an interpolated scale at ratio 1, and only 3 boxes in the lowest
layer: 1917 anchors at 300x300, equal to the pedestrian graph's own `Concatenate/concat` to 2.4e-7.
BlazePose's detector uses MediaPipe's SSD anchor calculator with fixed-size anchors.
Anchors are (ycenter, xcenter, height, width), as fractions of the input.
"""

from __future__ import annotations

import math

import numpy as np


def ssd_anchors(input_size: int = 300, num_layers: int = 6, min_scale: float = 0.2, max_scale: float = 0.95,
                aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333),
                strides: tuple[int, ...] = (16, 32, 64, 128, 256, 512), interpolated_ratio: float = 1.0,
                reduce_lowest: bool = True) -> np.ndarray:
    """TF object detection API `ssd_anchor_generator` anchors, (N, 4) as (yc, xc, h, w)."""
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    out = []
    for layer in range(num_layers):
        scale, scale_next = scales[layer], scales[layer + 1]
        if layer == 0 and reduce_lowest:
            specs = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            specs = [(scale, ratio) for ratio in aspect_ratios]
            if interpolated_ratio > 0:
                specs.append((math.sqrt(scale * scale_next), interpolated_ratio))
        size = math.ceil(input_size / strides[layer])
        step = 1.0 / size  # the generator derives its stride from the feature map, offset half a step
        centers = (np.arange(size, dtype=np.float64) + 0.5) * step
        heights = np.array([s / math.sqrt(r) for s, r in specs])
        widths = np.array([s * math.sqrt(r) for s, r in specs])
        yc, xc, k = np.meshgrid(centers, centers, np.arange(len(specs)), indexing="ij")
        out.append(np.stack([yc.ravel(), xc.ravel(), heights[k.ravel()], widths[k.ravel()]], axis=1))
    return np.concatenate(out).astype(np.float32)


def blazepose_anchors(input_size: int = 224, strides: tuple[int, ...] = (8, 16, 32, 32, 32),
                      min_scale: float = 0.1484375, max_scale: float = 0.75) -> np.ndarray:
    """MediaPipe SSD anchors for the pose detector (fixed anchor size, 2 per location per layer): (N, 4)."""
    num_layers = len(strides)
    out = []
    layer = 0
    while layer < num_layers:
        # Layers with the same stride share one grid; each contributes two anchors per cell.
        count = 0
        last = layer
        while last < num_layers and strides[last] == strides[layer]:
            count += 2
            last += 1
        size = math.ceil(input_size / strides[layer])
        centers = (np.arange(size, dtype=np.float64) + 0.5) / size
        yc, xc = np.meshgrid(centers, centers, indexing="ij")
        cells = np.stack([yc.ravel(), xc.ravel()], axis=1)
        cells = np.repeat(cells, count, axis=0)
        out.append(np.concatenate([cells, np.ones((len(cells), 2))], axis=1))
        layer = last
    del min_scale, max_scale  # fixed anchor size: the scales only shape anchors the model does not use
    return np.concatenate(out).astype(np.float32)
