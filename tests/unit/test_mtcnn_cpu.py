"""The CPU detector's numpy steps give exactly the numbers of their plain formulas (their speed-ups
must not move a single float: detections are cached and compared across runs)."""
import warnings

import numpy as np
import pytest

from alignimation_tui.detect import mtcnn_cpu as mc


def _plain_area_resize(table, h, w, oh, ow):
    ys, ye = mc._bins(np.int64(0), np.int64(h), oh)
    xs, xe = mc._bins(np.int64(0), np.int64(w), ow)
    rows = table[ye] - table[ys]
    total = (rows[:, xe] - rows[:, xs]).astype(np.float32)
    return total / (ye - ys).astype(np.float32)[:, None, None] / (xe - xs).astype(np.float32)[None, :, None]


@pytest.mark.parametrize("h, w", [(97, 131), (300, 225), (16, 16)])
def test_area_resize_is_the_plain_formulas(h, w):
    pixels = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    table = mc.integral(pixels)
    for oh, ow in [(h // 3 + 1, w // 3 + 1), (12, 12), (h, w), (h // 7 + 1, w // 5 + 1)]:
        got = mc.area_resize(table, h, w, oh, ow)
        assert got.dtype == np.float32 and np.array_equal(got, _plain_area_resize(table, h, w, oh, ow))


def test_nms_by_the_pairs_matrix_keeps_what_one_box_at_a_time_keeps():
    """Random boxes, tied scores, zero-size and coincident boxes: the same indices in the same order."""
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (0/0 overlaps of zero-size boxes, in both)
        for trial in range(600):
            n = int(rng.integers(1, 90))
            xy = rng.uniform(0, 100, (n, 2)).astype(np.float32)
            wh = rng.uniform(0, 40, (n, 2)).astype(np.float32)
            if trial % 5 == 0:
                wh[rng.random(n) < 0.2] = 0
            boxes = np.concatenate([xy, xy + wh], 1)
            if trial % 7 == 0:
                boxes = np.round(boxes / 10) * 10
            scores = rng.random(n).astype(np.float32)
            if trial % 3 == 0:
                scores = np.round(scores * 4) / 4
            for threshold in (0.3, 0.5, 0.7):
                got = mc.nms(boxes, scores, threshold)
                want = mc._nms_rows(boxes, np.argsort(-scores, kind="stable"), threshold)
                assert got.dtype == want.dtype == np.int64 and np.array_equal(got, want)
    assert len(mc.nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)) == 0


def test_nms_of_many_boxes_goes_one_box_at_a_time(monkeypatch):
    monkeypatch.setattr(mc, "NMS_MATRIX_UP_TO", 3)
    used = []
    original = mc._nms_rows
    monkeypatch.setattr(mc, "_nms_rows", lambda *a: used.append(1) or original(*a))
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 9, 9]], np.float32)
    assert mc.nms(boxes, np.array([0.9, 0.8, 0.7, 0.95], np.float32), 0.5).tolist() == [3, 2]
    assert used
