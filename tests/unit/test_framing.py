"""Framing geometry on synthetic landmarks, and colour matching on a synthetic exposure ramp."""
import math

import numpy as np
import pytest
from PIL import Image

from alignimation_tui.colour import ColourGain, plan_gains, region_means, to_linear, to_srgb
from alignimation_tui.config import ConfigError, load_config
from alignimation_tui.framing import (SIZE_PRESETS, FramingSettings, SubjectOnCanvas, output_matrix, parse_size,
                                      plan_framing)
from alignimation_tui.register import apply

# A tilted, off-centre face on a 1080x810 registration canvas (eyes, as registered).
LEFT, RIGHT = np.array([380.0, 300.0]), np.array([470.0, 330.0])
CANVAS = (1080, 810)


@pytest.mark.parametrize("size", [*SIZE_PRESETS, "1280x720", "auto"])
def test_eyes_land_exactly_on_their_goal_for_every_size(size):
    settings = FramingSettings(style="auto", size=size, eye_x=0.5, eye_y=0.4, eye_distance=0.22)
    framing = plan_framing(settings, "square", CANVAS, SubjectOnCanvas.from_eyes(LEFT, RIGHT))
    w, h = parse_size(size) or SIZE_PRESETS["square"]
    assert framing.size == (w, h)
    # any registration: the frame's own eyes go to the canvas's eyes, then to the goal
    registration = np.array([[0.8, -0.1, 40.0], [0.1, 0.8, -25.0], [0, 0, 1]])
    photo_eyes = apply(np.linalg.inv(registration), np.stack([LEFT, RIGHT]))
    out = apply(output_matrix(registration, framing), photo_eyes)
    iod = 0.22 * w
    assert np.allclose(out, [[0.5 * w - iod / 2, 0.4 * h], [0.5 * w + iod / 2, 0.4 * h]], atol=1e-6)
    assert framing.anchor == pytest.approx((0.5 * w, 0.4 * h)) and framing.unit == pytest.approx(iod)


def test_body_box_is_centred_at_its_height_fraction():
    settings = FramingSettings(style="auto", size="portrait", body_height=0.8)
    framing = plan_framing(settings, "portrait", CANVAS, SubjectOnCanvas.from_box(300, 100, 500, 700))
    corners = apply(framing.matrix, np.array([[300.0, 100], [500, 700]]))
    assert framing.size == (1080, 1350)
    assert np.allclose(corners.mean(0), (540, 675)) and corners[1, 1] - corners[0, 1] == pytest.approx(0.8 * 1350)


def test_reference_framing_is_the_canvas_itself():
    framing = plan_framing(FramingSettings(style="reference"), "square", CANVAS, SubjectOnCanvas.from_eyes(LEFT, RIGHT))
    assert framing.size == CANVAS and np.array_equal(framing.matrix, np.eye(3))


@pytest.mark.parametrize("text, words", [
    ('[render]\nsize = "1081x1080"', "even"),
    ('[render]\nsize = "huge"', "'square'"),
    ('[render]\nframing = "eyes"', "'reference'"),
    ('[render]\nmatch_colour = "yes"', "'trend'"),
    ('[render]\neye_distance = 1.5', "between"),
])
def test_framing_config_errors_name_the_key(tmp_path, text, words):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key.startswith("render.") and words in str(err.value)


# -- colour ------------------------------------------------------------------------------------

BOX = (60.0, 40.0, 180.0, 200.0)  # the "face" in every photo


def photo(exposure: float, seed: int = 0) -> Image.Image:
    """A textured picture whose light is ``exposure`` times the first's (in linear light)."""
    rng = np.random.default_rng(seed)
    base = to_linear(rng.integers(40, 200, (240, 240, 3)).astype(np.float64))
    base[40:200, 60:180] *= [1.0, 0.8, 0.65]  # skin-ish
    return Image.fromarray(np.round(to_srgb(base * exposure)).astype(np.uint8))


def test_reference_matching_removes_an_exposure_ramp_and_leaves_the_reference():
    exposures = np.linspace(0.55, 1.6, 8) * np.array([1, 1.15, 0.9, 1.1, 0.95, 1.2, 0.85, 1.0])
    photos = [photo(e) for e in exposures]
    means = [region_means(p, BOX, (1.0, 1.0)) for p in photos]
    ref = 3
    gains = plan_gains(means, ref, "reference")
    assert gains[ref].is_identity and gains[ref].apply(photos[ref]) is photos[ref]
    after = np.array([region_means(g.apply(p), BOX, (1.0, 1.0)) for g, p in zip(gains, photos)])
    before = np.array(means)
    assert np.abs(before[:, 1] / before[ref, 1] - 1).max() > 0.4  # there was a ramp...
    assert np.abs(after / after[ref] - 1).max() < 0.03  # ...and it is gone (8-bit rounding left)


def test_trend_matching_removes_flicker_and_keeps_a_slow_change():
    n = 24
    slow = np.linspace(1.0, 1.8, n)  # a real change (a tan, the seasons): kept
    flicker = np.where(np.arange(n) % 2, 1.3, 1 / 1.3)  # frame-to-frame exposure jumps: removed
    means = [[float(v)] * 3 for v in 0.2 * slow * flicker]
    gains = plan_gains(means, 0, "trend")
    corrected = np.array([m[0] * g.gains[0] for m, g in zip(means, gains)])
    steps = np.abs(np.diff(np.log(corrected)))
    assert steps.mean() < 0.2 * np.abs(np.diff(np.log(0.2 * slow * flicker))).mean()
    assert gains[0].is_identity
    # the slow change survives: the last frames are still brighter than the first, by most of it
    assert corrected[-4:].mean() / corrected[0] > 1.5


def test_colour_gain_table_is_identity_at_one():
    table = ColourGain((1.0, 1.0, 1.0)).table()
    assert table == list(range(256)) * 3
    assert ColourGain((2.0, 1.0, 0.5)).table()[128] > 128 and ColourGain((2.0, 1.0, 0.5)).table()[512 + 128] < 128
    assert math.isclose(plan_gains([None, [0.2] * 3], 1, "trend")[0].gains[0], 1.0)


def test_shared_crop_never_shrinks_to_a_sliver(tmp_path):
    """Two photos that share a thin strip of the frame: the whole frame is kept (blur behind), and
    the notice names the photo that limits it."""
    from alignimation_tui.render import RenderSettings, write_animation
    from tests.unit.test_render import CANVAS, make_items

    items = make_items(tmp_path, [(0, 1.0, 0, 0), (0, 1.0, 250, 0)])
    result = write_animation(items, CANVAS, tmp_path / "x.mp4", RenderSettings(crop="shared", fill="blur"),
                             frames_dir=tmp_path / "f")
    assert result.size == CANVAS
    assert any("p01.jpg limits it most" in n and "whole frame is kept" in n for n in result.notices)
    for path in sorted((tmp_path / "f").glob("*.jpg")):
        assert np.asarray(Image.open(path)).max(axis=-1).min() > 40  # blur, not black, where it does not reach
