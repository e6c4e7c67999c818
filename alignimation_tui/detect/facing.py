"""Is the face looking at the camera? Scores from the 5 MTCNN landmarks.

* ``eye_ratio``: min/max of the nose-to-eye distances (plain distances, 1.0 = symmetric).
* ``mouth_ratio``: min/max of the nose-to-mouth-corner distances.
* ``yaw_deg``: head turn estimated from where the nose sits between the eyes, after undoing the
  in-plane roll. With the eyes at +-a and the nose tip a depth d in front of them, a turn by
  ``yaw`` moves the nose by d*sin(yaw) while the half eye distance shrinks to a*cos(yaw), so
  ``tan(yaw) = (offset / half_eye_distance) * a / d``. Adult faces have d close to a (the nose tip
  stands about as far in front of the eyes as each eye is from the middle), so we take a/d = 1.

The original recipe kept a photo only when both ratios, on squared distances, were above 0.7;
that rejects most ordinary photos (smiles move the mouth corners). The default rule here is the
yaw alone (``facing.max_yaw_deg``), with optional ratio floors.
"""
from __future__ import annotations

import math

from ..domain import FacingScores

NOSE_DEPTH_OVER_HALF_EYE_DISTANCE = 1.0


def facing_scores(landmarks) -> FacingScores:
    # Plain floats, not numpy: the selection scores every photo's face again whenever one photo
    # arrives, and five 2-vectors cost more in numpy's per-call overhead than in arithmetic.
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = landmarks
    lx, ly, rx, ry, nx, ny = float(lx), float(ly), float(rx), float(ry), float(nx), float(ny)
    mlx, mly, mrx, mry = float(mlx), float(mly), float(mrx), float(mry)
    d_eyes = math.hypot(lx - nx, ly - ny), math.hypot(rx - nx, ry - ny)
    d_mouth = math.hypot(mlx - nx, mly - ny), math.hypot(mrx - nx, mry - ny)
    eye_ratio = min(d_eyes) / max(max(d_eyes), 1e-9)
    mouth_ratio = min(d_mouth) / max(max(d_mouth), 1e-9)

    ex, ey = rx - lx, ry - ly
    half = math.hypot(ex, ey) / 2
    if half < 1e-9:
        return FacingScores(eye_ratio, mouth_ratio, 90.0)
    offset = ((nx - (lx + rx) / 2) * ex + (ny - (ly + ry) / 2) * ey) / (2 * half)
    yaw = math.degrees(math.atan(offset / half / NOSE_DEPTH_OVER_HALF_EYE_DISTANCE))
    return FacingScores(eye_ratio, mouth_ratio, yaw)


def is_turned(scores: FacingScores, max_yaw_deg: float, min_eye_ratio: float = 0.0,
              min_mouth_ratio: float = 0.0) -> bool:
    return (abs(scores.yaw_deg) > max_yaw_deg or scores.eye_ratio < min_eye_ratio
            or scores.mouth_ratio < min_mouth_ratio)
