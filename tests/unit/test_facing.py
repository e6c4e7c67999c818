import math

import numpy as np
import pytest

from alignimation_tui.detect.facing import facing_scores, is_turned

# A generic head in millimetres: eyes 63 mm apart, nose tip 30 mm in front of the eye plane.
FACE_3D = np.array([[-31.5, 0, 0], [31.5, 0, 0], [0, 35, 30], [-25, 70, 5], [25, 70, 5]])


def project(yaw_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    a, r = math.radians(yaw_deg), math.radians(roll_deg)
    yaw = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    pts = FACE_3D @ yaw.T
    xy = pts[:, :2]
    roll = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    return xy @ roll.T * 3 + [500, 400]


def test_frontal_face_scores_one():
    s = facing_scores(project(0))
    assert s.eye_ratio == pytest.approx(1) and s.mouth_ratio == pytest.approx(1)
    assert s.yaw_deg == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("yaw", [-60, -30, -10, 10, 30, 60])
def test_yaw_estimate_follows_the_turn_whatever_the_roll(yaw):
    for roll in (0, 25, -40):
        est = facing_scores(project(yaw, roll)).yaw_deg
        assert np.sign(est) == np.sign(yaw)
        assert abs(est - yaw) < 0.35 * abs(yaw) + 3


def test_default_rule_marks_profiles_and_keeps_slight_turns():
    from alignimation_tui.config import Config

    f = Config().facing
    rule = lambda y: is_turned(facing_scores(project(y)), f.max_yaw_deg, f.min_eye_ratio, f.min_mouth_ratio)  # noqa
    assert not rule(0) and not rule(15) and not rule(-20)
    assert rule(60) and rule(-75)
