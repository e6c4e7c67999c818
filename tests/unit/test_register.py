import math

import numpy as np
import pytest

from alignimation_tui.register import apply, canvas_for, fit_similarity, residual_pct
from tests.conftest import similarity

KEYPOINTS = np.array([[200.0, 180.0], [260.0, 182.0], [231.0, 215.0], [205.0, 245.0], [255.0, 247.0]])


def test_recovers_known_transforms_in_a_mixed_batch():
    rng = np.random.default_rng(0)
    truths = [similarity(rng.uniform(-15, 15), rng.uniform(0.8, 1.2), *rng.uniform(-40, 40, 2)) for _ in range(6)]
    src = np.stack([apply(np.linalg.inv(t), KEYPOINTS) for t in truths])  # frame i sees the face moved
    m = fit_similarity(src, KEYPOINTS, np.ones(5))
    for got, t in zip(m, truths):
        np.testing.assert_allclose(got, t, atol=1e-9)
    assert residual_pct(m, src, KEYPOINTS, 1000).max() < 1e-9


def test_missing_keypoint_is_ignored():
    t = similarity(10, 1.1, 5, -3)
    src = apply(np.linalg.inv(t), KEYPOINTS)
    src[2] = [np.nan, np.nan]
    src[4] = [9999.0, -9999.0]  # wildly wrong but weight zero
    w = np.array([[1, 1, 0.5, 0.25, 0.0]])
    np.testing.assert_allclose(fit_similarity(src[None], KEYPOINTS, w)[0], t, atol=1e-9)


def test_fewer_than_two_keypoints_gives_identity():
    w = np.array([[1.0, 0, 0, 0, 0]])
    np.testing.assert_allclose(fit_similarity(KEYPOINTS[None], KEYPOINTS + 5, w)[0], np.eye(3))


def test_weights_favour_the_eyes():
    moved = KEYPOINTS.copy()
    moved[3:] += [[-6, 4], [6, 4]]  # a smile: mouth corners move
    eyes_heavy = fit_similarity(moved[None], KEYPOINTS, np.array([1, 1, 0.5, 0.25, 0.25]))
    uniform = fit_similarity(moved[None], KEYPOINTS, np.ones(5))
    eye_err = lambda m: np.linalg.norm(apply(m[0], moved[:2]) - KEYPOINTS[:2], axis=1).max()  # noqa: E731
    assert eye_err(eyes_heavy) < eye_err(uniform)


def test_no_reflection():
    mirrored = KEYPOINTS * [-1, 1]
    m = fit_similarity(mirrored[None], KEYPOINTS, np.ones(5))[0]
    assert np.linalg.det(m[:2, :2]) > 0


@pytest.mark.parametrize("w, h, canvas", [(4032, 3024, (1080, 810)), (150, 150, (1080, 1080)),
                                          (3000, 4001, (810, 1080))])
def test_canvas_even_and_long_side(w, h, canvas):
    size, scale = canvas_for(w, h, 1080)
    assert size == canvas and all(v % 2 == 0 for v in size)
    assert math.isclose(scale, 1080 / max(w, h))


def test_transform_key_is_kept_until_the_subject_or_the_settings_change(tmp_path):
    """Every frame's key is asked for whenever one photo arrives; the one made last is reused
    only for the same photo, settings and subject points."""
    from alignimation_tui.config import Config
    from alignimation_tui.domain import Face, FacingScores, Subject
    from alignimation_tui.pipeline import Pipeline
    from alignimation_tui.store import fingerprint
    from tests.unit.test_triage import result

    pipeline = Pipeline(tmp_path, Config())
    try:
        mode, r = pipeline.mode, result(0)
        lm = ((130.0, 140.0), (170.0, 140.0), (150.0, 170.0), (135.0, 185.0), (165.0, 185.0))
        r.subject = Subject(0, Face((100.0, 100.0, 200.0, 220.0), 0.99, lm), FacingScores(1, 1, 0), None)
        fresh = lambda fp: f"transform:{r.frame.hash}:{fingerprint(fp=fp, face=r.subject.points)}"  # noqa: E731
        first = mode.transform_key(r, "fp1")
        assert first == fresh("fp1") and mode.transform_key(r, "fp1") == first
        assert mode.transform_key(r, "fp2") == fresh("fp2") != first
        second = mode.transform_key(r, "fp2")
        moved = (lm[0], (171.0, 140.0), *lm[2:])
        r.subject = Subject(0, Face((100.0, 100.0, 200.0, 220.0), 0.99, moved), FacingScores(1, 1, 0), None)
        assert mode.transform_key(r, "fp2") == fresh("fp2") != second
    finally:
        pipeline.close()
