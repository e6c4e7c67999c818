"""Similarity registration of every frame onto the reference's canvas.

Transforms are 3x3 matrices from upright original pixels to output canvas pixels, so rendering is
one warp per frame straight from the original to the output size.

Closed form: a weighted least-squares similarity (rotation, uniform scale, shift; no reflection)
from a frame's keypoints to the reference's keypoints on the canvas. In complex numbers, with
weighted centroids removed, ``z = sum(w * conj(src) * dst) / sum(w * |src|^2)``; that is Umeyama's
solution for 2-D. Landmark weights favour the eyes (see ``register.landmark_weights``): smiles and
slight turns move the mouth and nose, and a uniform fit drags the eyes off with them.
"""
from __future__ import annotations

import numpy as np


def canvas_for(width: int, height: int, long_side: int) -> tuple[tuple[int, int], float]:
    """The output canvas for a reference photo of ``width`` x ``height``: its framing, ``long_side``
    pixels on the long side, even dimensions. Returns (canvas size, scale from reference pixels)."""
    scale = long_side / max(width, height)
    even = lambda v: max(2, int(round(v * scale)) // 2 * 2)  # noqa: E731
    return (even(width), even(height)), scale


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Batched weighted least-squares similarity.

    src: (N, K, 2) keypoints per frame; dst: (K, 2) or (N, K, 2) targets; weights: (K,) or (N, K),
    zero for a missing keypoint. Returns (N, 3, 3) matrices mapping src onto dst. A frame with fewer
    than two weighted keypoints gets the identity.
    """
    src = np.asarray(src, np.float64)
    n, k, _ = src.shape
    dst = np.broadcast_to(np.asarray(dst, np.float64), (n, k, 2))
    w = np.broadcast_to(np.asarray(weights, np.float64), (n, k)).copy()
    w[~np.isfinite(src).all(-1) | ~np.isfinite(dst).all(-1)] = 0.0
    s = np.nan_to_num(src[..., 0] + 1j * src[..., 1])
    d = np.nan_to_num(dst[..., 0] + 1j * dst[..., 1])
    wsum = w.sum(1, keepdims=True)
    safe = np.where(wsum > 0, wsum, 1.0)
    mu_s, mu_d = (w * s).sum(1, keepdims=True) / safe, (w * d).sum(1, keepdims=True) / safe
    sc, dc = s - mu_s, d - mu_d
    denom = (w * np.abs(sc) ** 2).sum(1)
    ok = (np.count_nonzero(w > 0, axis=1) >= 2) & (denom > 1e-12)
    z = np.where(ok, (w * np.conj(sc) * dc).sum(1) / np.where(ok, denom, 1.0), 1.0)
    t = np.where(ok, mu_d[:, 0] - z * mu_s[:, 0], 0.0)
    m = np.zeros((n, 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = z.real, -z.imag, t.real
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = z.imag, z.real, t.imag
    m[:, 2, 2] = 1.0
    return m


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (..., K, 2) points through (..., 3, 3) matrices."""
    pts = np.asarray(points, np.float64)
    return pts @ matrix[..., :2, :2].swapaxes(-1, -2) + matrix[..., None, :2, 2]


def residual_pct(matrix: np.ndarray, src: np.ndarray, dst: np.ndarray, canvas_height: int) -> np.ndarray:
    """Root-mean-square keypoint error after alignment, in % of the canvas height, per frame."""
    err = np.linalg.norm(apply(matrix, src) - np.asarray(dst, np.float64), axis=-1)
    return np.sqrt(np.nanmean(err ** 2, axis=-1)) / canvas_height * 100.0
