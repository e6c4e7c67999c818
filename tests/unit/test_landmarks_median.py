"""The second pass's median (``landmarks.nanmedian``) gives numpy's ``nanmedian`` floats exactly, so
refined landmarks are what they were with numpy's (a faster median, not another one)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from alignimation_tui.config import Config
from alignimation_tui.detect import face as face_mod
from alignimation_tui.detect import landmarks as L
from alignimation_tui.detect.cv_nets import load_cv_mtcnn
from alignimation_tui.detect.mtcnn_common import weights_dir
from alignimation_tui.photos import open_photo


def _numpys(a, axis):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice: NaN, as ours
        return np.nanmedian(a, axis=axis, keepdims=True)


@pytest.mark.parametrize("shape", [(3, 14, 5, 2), (4, 14, 5), (2, 1, 5), (4, 2, 5), (5, 7, 3, 2), (2, 0, 5)])
def test_the_median_is_numpys_to_the_bit(shape):
    rng = np.random.default_rng(sum(shape))
    for trial in range(40):
        a = rng.normal(0, 50, shape).round(trial % 3)  # ties too
        a[rng.random(shape) < trial / 60] = np.nan  # none to most of them missing
        want, got = _numpys(a, 1), L.nanmedian(a, axis=1)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)  # (NaN where numpy's is NaN, every other float the same)


def test_the_second_pass_is_the_same_as_with_numpys_median(samples, monkeypatch):
    d = Config().detect
    cv = load_cv_mtcnn(weights_dir(), d.min_face_size, d.thresholds)
    photos = [open_photo(p, max_side=d.size) for p in sorted((samples / "faces_jerry").glob("*.jpg"))[:10]]
    dets = face_mod.FaceDetector(cv, batch_size=1, workers=1).detect(photos)
    settings = L.LandmarkSettings()
    ours = L.second_pass(cv.onet, photos, dets, settings, "cpu")
    monkeypatch.setattr(L, "nanmedian", _numpys)
    theirs = L.second_pass(cv.onet, photos, dets, settings, "cpu")
    assert sum(len(lm) for lm in ours) >= 10
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
