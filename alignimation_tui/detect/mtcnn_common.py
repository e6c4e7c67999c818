"""What both MTCNN implementations share, with no torch: facenet-pytorch's settings and weights
folder, its pyramid and its last non-maximum suppression. The torch one (``mtcnn_nets``,
``mtcnn_batch``) runs on a GPU; the OpenCV one (``cv_nets``, ``mtcnn_cpu``) on a CPU.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

FACTOR = 0.709  # facenet-pytorch's pyramid factor


def package_dir(name: str) -> Path | None:
    """Where an installed package lives, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def weights_dir() -> Path | None:
    """facenet-pytorch's folder of MTCNN weights; None when it is not installed."""
    folder = package_dir("facenet_pytorch")
    if folder is None or not (folder / "data" / "pnet.pt").is_file():
        return None
    return folder / "data"


def pyramid(short_side: int, min_face_size: float, factor: float) -> list[float]:
    """facenet's scales, computed the same way (so the floats are identical)."""
    m = 12.0 / min_face_size
    minl = short_side * m
    scales, s = [], m
    while minl >= 12:
        scales.append(s)
        s *= factor
        minl *= factor
    return scales


def pnet_out(n: int) -> int:
    """P-Net's output length for an input of length n (3x3 conv, 2x2 ceil pool, 3x3, 3x3)."""
    return -(-(n - 2) // 2) - 4


def nms_min(boxes, scores, threshold: float):
    """facenet-pytorch's ``nms_numpy(..., "Min")``: overlap as intersection over the smaller box
    (pixel-inclusive areas); indices kept, most probable first."""
    if boxes.size == 0:
        return np.empty((0,), np.int64)
    x1, y1, x2, y2 = (boxes[:, k].copy() for k in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)
    pick = []
    while order.size > 0:
        i = order[-1]
        pick.append(i)
        rest = order[0:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        order = rest[np.where(w * h / np.minimum(area[i], area[rest]) <= threshold)]
    return np.asarray(pick, np.int64)
