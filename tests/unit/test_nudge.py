"""The nudge: an output-space similarity anchored on the aligned eyes, stored as user data."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from alignimation_tui.nudge import Nudge, nudged
from alignimation_tui.store import Decisions
from tests.conftest import similarity

EYES = np.array([[200.0, 240.0], [300.0, 250.0]])  # in the upright original


def mapped(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (np.c_[points, np.ones(len(points))] @ matrix.T)[:, :2]


def eye_frame(matrix: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Where ``matrix`` puts the eye midpoint, the inter-ocular distance and the eye line's angle."""
    a, b = mapped(matrix, EYES)
    return (a + b) / 2, float(np.linalg.norm(b - a)), math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))


def test_shift_rotation_and_scale_are_about_the_aligned_eyes():
    m = similarity(7, 1.3, 40, -20)
    mid, iod, angle = eye_frame(m)
    n = Nudge(dx=0.1, dy=-0.2, angle_deg=3.0, scale=1.1)
    mid2, iod2, angle2 = eye_frame(nudged(m, n, EYES))
    assert mid2 == pytest.approx(mid + np.array([0.1, -0.2]) * iod, abs=1e-6)
    assert iod2 == pytest.approx(iod * 1.1, rel=1e-9)
    assert angle2 == pytest.approx(angle + 3.0, abs=1e-9)


def test_the_same_nudge_means_the_same_correction_under_any_framing():
    """Framing (canvas size, crop, where the eyes land) left-multiplies the registration; the nudge
    is anchored on the face, so nudging before or after a framing (scale and translation: canvas
    size, crop, where the eyes land) gives the same picture."""
    registration = similarity(-12, 0.8, 15, 30)
    n = Nudge(dx=0.05, dy=0.02, angle_deg=-1.5, scale=0.97)
    for framing in (similarity(0, 1.0, -120, -64), similarity(0, 0.5, 10, 10), similarity(0, 1.7, 3, -8)):
        after = nudged(framing @ registration, n, EYES)
        before = framing @ nudged(registration, n, EYES)
        assert after == pytest.approx(before, abs=1e-6)


def test_identity_and_missing_anchor_leave_the_matrix_alone():
    m = similarity(5, 1.2, 3, 4)
    assert nudged(m, Nudge(), EYES) == pytest.approx(m)
    assert nudged(m, None, EYES) == pytest.approx(m)
    assert nudged(m, Nudge(dx=1.0), None) == pytest.approx(m)


def test_steps_coarse_fine_and_limits():
    n = Nudge().stepped("x", 1).stepped("x", 1).stepped("y", -1, "fine")
    assert (n.dx, n.dy) == pytest.approx((0.1, -0.01))
    assert Nudge().stepped("angle", -1).angle_deg == pytest.approx(-1.0)
    assert Nudge().stepped("scale", 1).stepped("scale", -1).scale == pytest.approx(1.0, abs=1e-5)
    far = Nudge()
    for _ in range(200):
        far = far.stepped("x", 1)
    assert far.dx == 2.0
    with pytest.raises(ValueError):
        Nudge().stepped("shear", 1)


def test_decisions_store_nudges_atomically_and_drop_only_a_damaged_entry(tmp_path):
    path = tmp_path / "decisions.json"
    d = Decisions(path)
    d.set_nudge("abc", Nudge(dx=0.1, angle_deg=2.0))
    d.set_nudge("def", Nudge(scale=1.05))
    assert Decisions(path).nudge("abc") == Nudge(dx=0.1, angle_deg=2.0)
    d.set_nudge("def", Nudge())  # back to nothing: forgotten
    assert Decisions(path).nudge("def") is None
    assert not list(tmp_path.glob(".decisions-*"))  # no temporary file left behind
    data = json.loads(path.read_text())
    data["nudges"]["bad"] = {"dx": "x"}
    data["verdicts"]["abc"] = "accepted"
    path.write_text(json.dumps(data))
    again = Decisions(path)
    assert again.nudge("abc") == Nudge(dx=0.1, angle_deg=2.0) and again.nudge("bad") is None
    assert again.verdict("abc").value == "accepted"
