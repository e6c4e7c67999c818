"""MTCNN's three stages for one photo in numpy and OpenCV (``cv_nets``): the CPU's detector.

The same steps and the same floats as ``mtcnn_batch.detect_batch`` for a batch of one (the torch
implementation a GPU runs): facenet-pytorch's pyramid, thresholds, box regressions and
non-maximum suppressions; each pyramid level and each R-/O-Net crop is the "area" resize of
``adaptive_avg_pool2d``, read from the photo's summed-area table. A CPU detects photo by photo
(one per worker thread), so there is no letterboxing here.
"""
from __future__ import annotations

import cv2
import numpy as np

from .mtcnn_common import nms_min, pyramid

_NORM = np.float32(0.0078125)  # facenet's (x - 127.5) / 128
_HALF = np.float32(127.5)


def integral(pixels: np.ndarray) -> np.ndarray:
    """(h+1, w+1, 3) exact sums of the 8-bit pixels, a zero row and column first."""
    h, w = pixels.shape[:2]
    if 255 * w * h < 2**31:
        return cv2.integral(pixels, sdepth=cv2.CV_32S)
    return cv2.integral(pixels, sdepth=cv2.CV_64F).astype(np.int64)  # float64 sums are exact here


def _bins(start: np.ndarray, stop: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """adaptive_avg_pool2d's bins of [start, stop) into ``out``: [floor(i*n/o), ceil((i+1)*n/o))."""
    k = np.arange(out)
    n = (stop - start)[..., None]
    return start[..., None] + (k * n) // out, start[..., None] + ((k + 1) * n + out - 1) // out


def area_resize(table: np.ndarray, h: int, w: int, oh: int, ow: int) -> np.ndarray:
    """The photo's h x w pixels area-resized to (oh, ow, 3) float32, from its summed-area table;
    each bin's exact sum divided by its height and then its width, as torch's CPU kernel does."""
    ys, ye = _bins(np.int64(0), np.int64(h), oh)
    xs, xe = _bins(np.int64(0), np.int64(w), ow)
    rows = table.take(ye, 0)  # (``take`` and in-place steps: 1.5x as fast as indexing, the same numbers)
    rows -= table.take(ys, 0)
    total = rows.take(xe, 1)
    total -= rows.take(xs, 1)
    out = total.astype(np.float32)
    out /= (ye - ys).astype(np.float32)[:, None, None]
    out /= (xe - xs).astype(np.float32)[None, :, None]
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision's ``nms``: greedy by score, overlap as intersection over union of the boxes'
    areas (x2 - x1) * (y2 - y1), a box dropped when its overlap is above ``threshold``."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    if len(boxes) > NMS_MATRIX_UP_TO:
        return _nms_rows(boxes, order, threshold)
    # Every pair's overlap at once (the same float operations, pair by pair, as ``_nms_rows``), in
    # score order; the greedy pass then only reads rows (a photo's ~11 calls: 2.6 -> 1 ms).
    b = boxes[order]
    x1, y1, x2, y2 = (b[:, k] for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    w = np.maximum(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0)
    h = np.maximum(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0)
    inter = w * h
    over = inter / (area[:, None] + area[None] - inter) > threshold
    keep = []
    suppressed = np.zeros(len(b), bool)
    for pos in range(len(b)):
        if suppressed[pos]:
            continue
        keep.append(pos)
        suppressed |= over[pos]
    return order[np.asarray(keep, np.int64)]


NMS_MATRIX_UP_TO = 1000  # boxes: above, the pairs' matrix would take more memory than it saves time


def _nms_rows(boxes: np.ndarray, order: np.ndarray, threshold: float) -> np.ndarray:
    """``nms`` one kept box at a time, against the boxes not suppressed yet."""
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    keep = []
    suppressed = np.zeros(len(boxes), bool)
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[pos + 1:]
        rest = rest[~suppressed[rest]]
        if not len(rest):
            break
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        suppressed[rest[inter / (area[i] + area[rest] - inter) > threshold]] = True
    return np.asarray(keep, np.int64)


def _stage1(table: np.ndarray, h: int, w: int, mtcnn) -> np.ndarray:
    """P-Net over the photo's pyramid: (N, 9) boxes [x1, y1, x2, y2, score, 4 regressions]."""
    found = []
    for s in pyramid(min(w, h), mtcnn.min_face_size, mtcnn.factor):
        lh, lw = int(h * s + 1), int(w * s + 1)
        data = area_resize(table, h, w, lh, lw)
        data -= _HALF  # (in place: the same floats as ``(x - 127.5) * 0.0078125``)
        data *= _NORM
        reg, probs = mtcnn.pnet.run(data.transpose(2, 0, 1)[None])
        mask = probs[0, 1] >= mtcnn.thresholds[0]
        rows, cols = np.nonzero(mask)
        score = probs[0, 1][mask]
        r = reg[0].transpose(1, 2, 0)[mask]
        bb = np.stack([cols, rows], 1).astype(np.float32)
        s32 = np.float32(s)
        q1 = np.floor((2 * bb + 1) / s32)
        q2 = np.floor((2 * bb + 12) / s32)
        b = np.concatenate([q1, q2, score[:, None], r], 1).astype(np.float32)
        found.append(b[nms(b[:, :4], b[:, 4], 0.5)])
    return np.concatenate(found) if found else np.zeros((0, 9), np.float32)


def _rerec(b: np.ndarray) -> np.ndarray:
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    side = np.maximum(w, h)
    b = b.copy()
    b[:, 0] = b[:, 0] + w * np.float32(0.5) - side * np.float32(0.5)
    b[:, 1] = b[:, 1] + h * np.float32(0.5) - side * np.float32(0.5)
    b[:, 2:4] = b[:, :2] + side[:, None]
    return b


def _bbreg(b: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    out = b.copy()
    out[:, :4] = b[:, :4] + reg[:, :4] * np.stack([w, h, w, h], 1)
    return out


def _crops(table: np.ndarray, boxes: np.ndarray, h: int, w: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Every box cut from the photo (clipped to it, as facenet's ``pad`` does) and area-resized to
    out x out: (n, 3, out, out) float32 and a mask of the boxes that had any pixels."""
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x0 = np.maximum(b[:, 0], 1) - 1
    y0 = np.maximum(b[:, 1], 1) - 1
    x1 = np.minimum(b[:, 2], w)
    y1 = np.minimum(b[:, 3], h)
    ok = (x1 > x0) & (y1 > y0)
    ys, ye = _bins(y0[ok], y1[ok], out)
    xs, xe = _bins(x0[ok], x1[ok], out)
    # The table's four corners of every bin, as flat indices into its rows of 3 (one ``take`` each:
    # 3-4x faster than indexing the table with two broadcast index arrays, the same integers).
    flat, stride = table.reshape(-1, 3), table.shape[1]
    rows_s, rows_e = (ys * stride)[:, :, None], (ye * stride)[:, :, None]
    cols_s, cols_e = xs[:, None, :], xe[:, None, :]
    total = (flat.take(rows_e + cols_e, 0) - flat.take(rows_s + cols_e, 0)
             - flat.take(rows_e + cols_s, 0) + flat.take(rows_s + cols_s, 0))  # (n, out, out, 3)
    area = ((ye - ys)[:, :, None] * (xe - xs)[:, None, :]).astype(np.float32)
    crops = total.astype(np.float32) / area[..., None]
    return crops.transpose(0, 3, 1, 2), ok


def _run(net, crops: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, ...]:
    outs = [net.run((crops[i:i + chunk] - _HALF) * _NORM) for i in range(0, len(crops), chunk)]
    return tuple(np.concatenate(v) for v in zip(*outs))


def detect_photo(pixels: np.ndarray, mtcnn) -> tuple[np.ndarray, np.ndarray]:
    """Faces in one photo: ``pixels`` (h, w, 3) uint8 RGB; ``mtcnn`` a ``cv_nets.CvMtcnn``. Returns
    (boxes (n, 5) with probability last, landmarks (n, 5, 2)) in its pixels, most probable first."""
    h, w = pixels.shape[:2]
    t1, t2, t3 = mtcnn.thresholds
    empty = np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    table = integral(np.ascontiguousarray(pixels))
    boxes = _stage1(table, h, w, mtcnn)
    if len(boxes) == 0:
        return empty
    boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
    regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = np.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                      boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4]], 1)
    boxes = _rerec(boxes)

    crops, ok = _crops(table, boxes, h, w, 24)
    boxes = boxes[ok]
    if len(boxes):
        reg, prob = _run(mtcnn.rnet, crops)
        passed = prob[:, 1] > t2
        boxes = np.concatenate([boxes[passed, :4], prob[passed, 1:2]], 1)
        reg = reg[passed]
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _rerec(_bbreg(boxes[keep], reg[keep]))
    if not len(boxes):
        return empty
    crops, ok = _crops(table, boxes, h, w, 48)
    boxes = boxes[ok]
    if not len(boxes):
        return empty
    reg, pts, prob = _run(mtcnn.onet, crops)
    passed = prob[:, 1] > t3
    boxes = np.concatenate([boxes[passed, :4], prob[passed, 1:2]], 1)
    reg, pts = reg[passed], pts[passed]
    bw = boxes[:, 2] - boxes[:, 0] + 1
    bh = boxes[:, 3] - boxes[:, 1] + 1
    points = np.stack([bw[:, None] * pts[:, :5] + boxes[:, 0:1] - 1,
                       bh[:, None] * pts[:, 5:10] + boxes[:, 1:2] - 1], 2)
    boxes = _bbreg(boxes, reg)
    keep = np.sort(nms_min(boxes[:, :4], boxes[:, 4], 0.7))
    boxes, points = boxes[keep], points[keep]
    order = np.argsort(-boxes[:, 4], kind="stable")
    return boxes[order].astype(np.float32), points[order].astype(np.float32)
