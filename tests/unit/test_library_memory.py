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


def test_the_cache_keeps_a_few_megabytes_of_its_database_in_memory(tmp_path):
    """SQLite's page cache is 4 MB, not diskcache's 32 MB: a library's cache (33 MB at 10,000
    photos, each value read once at an open) would otherwise stay in the process's memory whole
    (peak RSS at 10,000 photos: 180 -> 151 MB; at 1,000 the whole cache is 3 MB either way)."""
    from alignimation_tui.store import SQLITE_CACHE_PAGES, Store

    store = Store(tmp_path / "photos", cache_dir=str(tmp_path / "cache"), data_dir=str(tmp_path / "data"))
    try:
        pages = store.cache._sql("PRAGMA cache_size").fetchone()[0]
        page_size = store.cache._sql("PRAGMA page_size").fetchone()[0]
        assert pages == SQLITE_CACHE_PAGES and pages * page_size <= 4 * 2**20
    finally:
        store.close()


def test_a_photos_descriptors_are_kept_once():
    """Each photo's stored face descriptors are used as they are when every face is kept (a copy
    per photo doubled them: 5 MB at 10,000 photos); only a photo with faces left out gets its own."""
    from types import SimpleNamespace

    from alignimation_tui.config import Config
    from alignimation_tui.domain import Face, FaceDetection
    from alignimation_tui.modes.face import FaceMode

    mode = FaceMode(SimpleNamespace(config=Config()))
    face = Face((0.0, 0.0, 10.0, 10.0), 0.99, ((1.0, 1.0),) * 5)
    faint = Face((20.0, 0.0, 30.0, 10.0), 0.2, ((21.0, 1.0),) * 5)
    stored = np.ones((2, 128), np.float32)
    kept = mode._kept_embeddings("a", FaceDetection(64, 48, (face, face)), stored)
    assert kept is stored
    fewer = mode._kept_embeddings("b", FaceDetection(64, 48, (face, faint)), stored)
    assert fewer.shape == (1, 128) and not np.shares_memory(fewer, stored)
