"""BlazePose (MediaPipe's body-pose models, Apache-2.0, shipped in ``assets/blazepose``) run with
Google's TFLite runtime (``ai-edge-litert``): a person detector, then per person a landmark model
that gives 39 points (x, y, z, visibility and presence logits) and a person-mask logit map.

The steps are MediaPipe's own (``pose_detection`` and ``pose_landmark`` graphs), written out:

1. the photo letterboxed into 224x224 (values in [-1, 1]); 2254 SSD anchors, boxes and 4
   keypoints decoded, scores through a sigmoid, weighted non-maximum suppression;
2. each detection's region: centred on its first keypoint (the hips' centre), twice the distance
   to its second keypoint (a point on the circle around the whole body), 1.25x that, turned so
   the body stands upright;
3. that region cut out at 256x256 (values in [0, 1]), the landmark model run on it, its points
   and mask taken back into the photo. A second pass on the region the first pass's own two
   alignment points give (33 and 34, as MediaPipe's tracking does) centres the body better.

Coordinates are upright original pixels, continuous (a pixel's centre is at +0.5).
"""
from __future__ import annotations

import functools
import math
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "blazepose"
DETECTOR_FILE = "pose_detection.tflite"
LANDMARK_FILE = "pose_landmark_full.tflite"

DETECT_SIZE = 224
LANDMARK_SIZE = 256
MIN_DETECTION_SCORE = 0.5
NMS_IOU = 0.3
ROI_SCALE = 1.25
N_POINTS = 33  # the named points; 33 and 34 are the region's alignment points, 35-38 unnamed

# BlazePose's names, in its own order (ears 7/8, shoulders 11/12, hips 23/24): not COCO's.
POINT_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index")


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))


def ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres in [0, 1] of the 224x224 input: MediaPipe's SsdAnchorsCalculator
    for pose detection (5 layers, strides 8, 16, 32, 32, 32, two anchors a cell, fixed size;
    layers of the same stride share one grid)."""
    strides = [8, 16, 32, 32, 32]
    out, layer = [], 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = 2 * (last - layer)
        cells = math.ceil(DETECT_SIZE / strides[layer])
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
        layer = last
    return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class Region:
    """A square region of the photo, turned by ``angle`` (radians): what the landmark model sees."""

    cx: float
    cy: float
    size: float
    angle: float

    def to_photo(self, n: int) -> np.ndarray:
        """2x3: continuous pixel coordinates of an ``n`` x ``n`` crop -> photo coordinates."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        k = self.size / n
        return np.array([[c * k, -s * k, self.cx - (c - s) * self.size / 2],
                         [s * k, c * k, self.cy - (s + c) * self.size / 2]])

    @classmethod
    def from_points(cls, centre: np.ndarray, edge: np.ndarray) -> "Region":
        """MediaPipe's AlignmentPointsRectsCalculator then RectTransformationCalculator: centred on
        ``centre``, 2x its distance to ``edge`` times ``ROI_SCALE``, turned so edge is straight up."""
        dx, dy = float(edge[0] - centre[0]), float(edge[1] - centre[1])
        angle = math.pi / 2 - math.atan2(-dy, dx)
        angle = (angle + math.pi) % (2 * math.pi) - math.pi
        return cls(float(centre[0]), float(centre[1]), 2 * math.hypot(dx, dy) * ROI_SCALE, angle)


@dataclass(frozen=True)
class Pose:
    """One person: ``points`` (39, 5): x, y (photo pixels), z (photo pixels, smaller is nearer the
    camera), visibility logit, presence logit; ``mask`` the person-mask probability over the
    photo at the mask grid given to ``BlazePose.detect``; ``score`` the detector's."""

    score: float
    points: np.ndarray
    mask: np.ndarray
    region: Region


@contextmanager
def _quiet_stderr():
    """The runtime's C++ logs "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." straight to
    file descriptor 2 while it loads: in the app that would land on the screen, in a log it is
    noise. Descriptor 2 goes to /dev/null for that moment (Python's own stderr is not touched)."""
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 at all
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _interpreter(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    with _quiet_stderr():
        it = Interpreter(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
    return it


def _outputs_by_shape(it) -> dict[tuple, int]:
    return {tuple(int(v) for v in d["shape"][1:]): d["index"] for d in it.get_output_details()}


@functools.lru_cache(maxsize=4)
def _models(model_dir: Path, threads: int) -> tuple:
    """Both interpreters and the lock that guards them, loaded once per process and thread count:
    ``mode = "auto"``'s look at a body folder and body mode's detection share them (allocating the
    interpreters' tensors took 70-85 ms, each time)."""
    return (_interpreter(model_dir / DETECTOR_FILE, threads), _interpreter(model_dir / LANDMARK_FILE, threads),
            threading.Lock())


class BlazePose:
    """Both models, loaded once per process (``_models``). An interpreter must not run on two
    threads at once; the lock the instances that share it share makes it so."""

    def __init__(self, model_dir: Path = MODEL_DIR, threads: int | None = None, max_persons: int = 4,
                 second_pass: bool = True):
        threads = threads or max(1, min(4, os.cpu_count() or 1))
        self.detector, self.landmarker, self._lock = _models(Path(model_dir), threads)
        self.anchors = ssd_anchors()
        d_out = _outputs_by_shape(self.detector)
        self._boxes, self._scores = d_out[(2254, 12)], d_out[(2254, 1)]
        l_out = _outputs_by_shape(self.landmarker)
        self._points, self._flag, self._seg = l_out[(195,)], l_out[(1,)], l_out[(256, 256, 1)]
        self._d_in = self.detector.get_input_details()[0]["index"]
        self._l_in = self.landmarker.get_input_details()[0]["index"]
        self.max_persons, self.second_pass = max_persons, second_pass

    # detection ------------------------------------------------------------------------------------
    def find_people(self, rgb: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """(score, (4, 2) keypoints in ``rgb``'s pixels) for each person the detector finds, surest
        first, after weighted non-maximum suppression."""
        import cv2

        h, w = rgb.shape[:2]
        s = DETECT_SIZE / max(w, h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        px, py = (DETECT_SIZE - nw) // 2, (DETECT_SIZE - nh) // 2
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        tensor = np.full((1, DETECT_SIZE, DETECT_SIZE, 3), -1.0, np.float32)
        tensor[0, py:py + nh, px:px + nw] = small.astype(np.float32) * (2 / 255.0) - 1.0
        self.detector.set_tensor(self._d_in, tensor)
        self.detector.invoke()
        raw = self.detector.get_tensor(self._boxes)[0]
        scores = _sigmoid(self.detector.get_tensor(self._scores)[0, :, 0])
        keep = np.nonzero(scores >= MIN_DETECTION_SCORE)[0]
        if len(keep) == 0:
            return []
        raw, scores = raw[keep].astype(np.float64), scores[keep]
        anchors = self.anchors[keep].astype(np.float64)
        centre = raw[:, 0:2] / DETECT_SIZE + anchors
        half = raw[:, 2:4] / DETECT_SIZE / 2
        boxes = np.concatenate([centre - half, centre + half], 1) * DETECT_SIZE
        kps = (raw[:, 4:12].reshape(-1, 4, 2) / DETECT_SIZE + anchors[:, None]) * DETECT_SIZE
        out = []
        for score, kp in _weighted_nms(boxes, kps, scores)[:self.max_persons]:
            out.append((score, (kp - [px, py]) / s))  # letterbox -> photo pixels
        return out

    # landmarks ----------------------------------------------------------------------------------
    def _landmarks(self, rgb: np.ndarray, region: Region) -> tuple[np.ndarray, float, np.ndarray]:
        """(39, 5) points in photo pixels, the pose flag (probability) and the 256x256 mask logits."""
        import cv2

        to_photo = region.to_photo(LANDMARK_SIZE)
        # cv2 samples at integer pixel indices: crop index u sits at continuous u + 0.5, likewise the photo
        shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
        m = np.linalg.inv(shift) @ np.vstack([to_photo, [0, 0, 1]]) @ shift
        crop = cv2.warpAffine(rgb, m[:2], (LANDMARK_SIZE, LANDMARK_SIZE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        self.landmarker.set_tensor(self._l_in, (crop.astype(np.float32) * (1 / 255.0))[None])
        self.landmarker.invoke()
        raw = self.landmarker.get_tensor(self._points)[0].reshape(39, 5).astype(np.float64)
        flag = float(self.landmarker.get_tensor(self._flag).ravel()[0])
        seg = self.landmarker.get_tensor(self._seg)[0, :, :, 0].copy()
        pts = raw.copy()
        pts[:, :2] = raw[:, :2] @ to_photo[:, :2].T + to_photo[:, 2]
        pts[:, 2] = raw[:, 2] * region.size / LANDMARK_SIZE
        return pts, flag, seg

    def detect(self, rgb: np.ndarray, mask_shape: tuple[int, int]) -> list[Pose]:
        """Every person in ``rgb`` (an upright RGB uint8 array), with points in its pixels and a
        mask of ``mask_shape`` (rows, cols) covering it."""
        import cv2

        with self._lock:
            people = self.find_people(rgb)
            poses = []
            for score, kp in people:
                region = Region.from_points(kp[0], kp[1])
                pts, flag, seg = self._landmarks(rgb, region)
                if self.second_pass:
                    region = Region.from_points(pts[33, :2], pts[34, :2])
                    pts, flag, seg = self._landmarks(rgb, region)
                if flag < 0.5:  # the landmark model says there is no person here
                    continue
                # mask grid pixel (i + 0.5) * photo / grid <- crop pixel (u + 0.5) * size / 256
                h, w = rgb.shape[:2]
                rows, cols = mask_shape
                to_grid = np.diag([cols / w, rows / h, 1.0]) @ np.vstack([region.to_photo(LANDMARK_SIZE), [0, 0, 1]])
                shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
                m = np.linalg.inv(shift) @ to_grid @ shift
                prob = _sigmoid(seg).astype(np.float32)
                mask = cv2.warpAffine(prob, m[:2], (cols, rows), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                poses.append(Pose(float(score), pts, mask, region))
            return poses


def _weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression: each cluster of boxes overlapping the surest
    by more than ``NMS_IOU`` becomes one, its keypoints the score-weighted mean of the cluster's."""
    order = np.argsort(-scores)
    out = []
    while len(order):
        top = order[0]
        iou = _iou(boxes[top], boxes[order])
        cluster = order[iou > NMS_IOU]
        w = scores[cluster][:, None, None]
        out.append((float(scores[top]), (kps[cluster] * w).sum(0) / w.sum()))
        order = order[iou <= NMS_IOU]
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:2], b[:, :2])
    rb = np.minimum(a[2:], b[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = lambda x: np.clip(x[..., 2:] - x[..., :2], 0, None).prod(-1)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
