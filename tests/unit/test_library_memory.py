"""Memory flat in the number of photos: what runs over every frame of a library (10,000 photos)
holds a few values per frame, never a frame-by-frame matrix. Measured with tracemalloc (numpy
reports its buffers to it): deterministic, unlike a process's RSS."""
from __future__ import annotations

import tracemalloc

import numpy as np

from alignimation_tui import colour
from alignimation_tui.colour import plan_gains


def dense_target(values, weights, ref_index, sigma):
    """The trend as an N x N Gaussian weighting (as it was first written): the reference."""
    idx = np.arange(len(values))
    w = np.exp(-0.5 * ((idx[:, None] - idx[None, :]) / sigma) ** 2) * weights[None, :]
    trend = (w @ values) / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    return trend + (values[ref_index] - trend[ref_index])


def test_the_colour_trend_is_the_gaussian_trend():
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 40, 300):
        values = rng.normal(size=(n, 3))
        weights = rng.uniform(0, 1, n) * (rng.uniform(0, 1, n) > 0.3)  # some frames weigh nothing
        weights[0] = 1.0
        for sigma in (0.5, 3.0, 11.0):
            got = colour._target(values, weights, 0, "trend", sigma)
            assert np.allclose(got, dense_target(values, weights, 0, sigma), rtol=1e-9, atol=1e-12), (n, sigma)


def test_colour_gains_of_a_library_hold_no_frame_by_frame_matrix():
    n = 20_000
    rng = np.random.default_rng(2)
    means = [list(rng.uniform(0.05, 0.6, 3)) for _ in range(n)]
    tracemalloc.start()
    try:
        gains = plan_gains(means, 0, "trend")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(gains) == n
    # a few arrays of n x 3 floats (and the gains): ~10 MB; an n x n float64 matrix is 3.2 GB
    assert peak < 40e6, f"{peak / 1e6:.0f} MB at {n} frames"
