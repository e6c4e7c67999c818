"""Colour matching never changes a photo's character (colour.py): exposure apart from colour, a
cast corrected within a bound and in proportion to the photo's own saturation."""
import numpy as np
import pytest
from PIL import Image

from alignimation_tui.colour import CAST_BOUND, LUMA, plan_gains, region_means, to_linear, to_srgb

BOX = (0.0, 0.0, 64.0, 64.0)


def skin(cast=(1.0, 1.0, 1.0), exposure=1.0, seed=0) -> np.ndarray:
    """Linear means of a skin-toned region under a white-balance ``cast`` and an ``exposure``."""
    rng = np.random.default_rng(seed)
    return np.array([0.45, 0.30, 0.22]) * cast * exposure * (1 + rng.uniform(-0.02, 0.02, 3))


def series(n=12):
    """Colour frames with a flickering exposure and a drifting white balance."""
    out = []
    for k in range(n):
        cast = (1 + 0.06 * np.sin(k), 1.0, 1 - 0.06 * np.sin(k))
        out.append(list(skin(cast, 1.3 if k % 2 else 0.8, seed=k)))
    return out


def chroma(rgb_linear) -> float:
    srgb = to_srgb(np.asarray(rgb_linear, np.float64))
    return float(srgb.max() - srgb.min())


def test_a_greyscale_photo_among_colour_ones_stays_grey():
    means = series()
    for k in (3, 8):
        y = float(np.asarray(means[k]) @ LUMA)
        means[k] = [y, y, y]  # black and white
    for how in ("trend", "reference", "brightness"):
        gains = plan_gains(means, 0, how)
        for k in (3, 8):
            g = gains[k].gains
            assert max(g) - min(g) < 1e-9, (how, g)  # one gain for all three channels: grey stays grey
            img = Image.fromarray(np.full((8, 8, 3), 117, np.uint8))
            px = np.asarray(gains[k].apply(img), np.int16)
            assert (px.max(axis=2) - px.min(axis=2)).max() == 0


def test_a_cast_is_corrected_only_within_the_bound():
    means = series()
    means[5] = list(skin((1.6, 1.0, 0.6), 1.0))  # a strong warm filter
    gains = plan_gains(means, 0, "trend")
    g = np.array(gains[5].gains)
    ratios = g / g[1]
    bound = (1 + CAST_BOUND) / (1 - CAST_BOUND)  # two channels bounded in opposite directions
    assert np.all(ratios <= bound + 1e-9) and np.all(ratios >= 1 / bound - 1e-9)
    after = np.asarray(means[5]) * g
    assert after[0] / after[2] > 0.8 * (means[5][0] / means[5][2])  # still warm: not pushed to the trend


def test_sepia_stays_sepia():
    means = series()
    y = float(np.asarray(means[4]) @ LUMA)
    sepia = to_linear(np.array([160.0, 125.0, 85.0]))
    means[4] = list(sepia / float(sepia @ LUMA) * y)
    g = np.array(plan_gains(means, 0, "trend")[4].gains)
    before, after = np.asarray(means[4]), np.asarray(means[4]) * g
    assert after[0] > after[1] > after[2]  # the same order of channels: still sepia
    assert after[0] / after[2] == pytest.approx(before[0] / before[2], rel=0.25)


def test_the_correction_scales_with_the_photos_own_saturation():
    """The same cast on a saturated and on a pale photo: the pale one's correction is its share of
    the saturated one's (its saturation over FULL_SATURATION)."""
    from alignimation_tui.colour import saturation_weight
    base = series()
    warm = np.array([1.25, 1.0, 0.8])
    full, pale = skin(warm), (skin(warm) ** 0.15) * 0.3  # pale: nearly grey, the same hue
    spreads = []
    for photo in (full, pale):
        means = list(base)
        means[6] = list(photo)
        g = np.log(plan_gains(means, 0, "trend")[6].gains)
        spreads.append(np.ptp(g))
    w = saturation_weight(np.array([pale]))[0]
    assert 0 < w < 0.5 and saturation_weight(np.array([full]))[0] == 1.0
    assert spreads[1] == pytest.approx(w * spreads[0], rel=0.15) and spreads[0] > 0.01  # a cast was corrected


def test_exposure_is_matched_and_colour_is_steadied_within_its_bound():
    means = series(24)
    before = np.array(means)
    gains = np.array([g.gains for g in plan_gains(means, 0, "trend")])
    after = before * gains
    y_before, y_after = before @ LUMA, after @ LUMA
    assert np.abs(np.diff(np.log(y_after))).mean() < 0.25 * np.abs(np.diff(np.log(y_before))).mean()
    rb_before, rb_after = before[:, 0] / before[:, 2], after[:, 0] / after[:, 2]
    assert np.abs(np.diff(np.log(rb_after))).mean() < np.abs(np.diff(np.log(rb_before))).mean()
    brightness = np.array([g.gains for g in plan_gains(means, 0, "brightness")])
    assert np.allclose(brightness.max(axis=1), brightness.min(axis=1))  # exposure alone: no colour change
    y_bright = (before * brightness) @ LUMA  # ...and the exposure is matched all the same
    assert np.abs(np.diff(np.log(y_bright))).mean() < 0.25 * np.abs(np.diff(np.log(y_before))).mean()


def test_region_means_of_a_grey_photo_are_grey(tmp_path):
    img = Image.fromarray(np.full((64, 64, 3), 90, np.uint8))
    m = region_means(img, BOX, (1.0, 1.0))
    assert max(m) - min(m) < 1e-12


# -- what is neutral stays neutral (body mode) ------------------------------------------------------

def wall_photo(wall_rgb, person_rgb=(205, 130, 95), size=(120, 160)):
    """A wall of ``wall_rgb`` with a skin-coloured person standing in the middle third."""
    from PIL import Image

    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[:] = wall_rgb
    a[:, size[0] // 3: 2 * size[0] // 3] = person_rgb
    return Image.fromarray(a)


def test_neutral_means_read_the_wall_not_the_person():
    from alignimation_tui.colour import neutral_means, to_linear

    means = neutral_means(wall_photo((232, 219, 235)))
    assert np.allclose(means, to_linear(np.array([232, 219, 235])), atol=1e-6)
    assert neutral_means(wall_photo((200, 60, 60))) is None  # a red wall: no grey to judge the cast by


def test_a_tinted_wall_is_made_grey_in_every_frame_the_reference_too():
    from alignimation_tui.colour import ColourGain, neutral_means, plan_gains

    walls = [(232, 219, 235), (240, 236, 226), (228, 228, 229)]  # magenta, warm, grey
    photos = [wall_photo(w) for w in walls]
    means = [[0.5, 0.3, 0.2]] * 3  # the person's region (exposure only is taken from it here)
    gains = plan_gains(means, 0, "trend", neutral=[neutral_means(p) for p in photos])
    for photo, gain in zip(photos, gains):
        assert isinstance(gain, ColourGain)
        wall = np.asarray(gain.apply(photo))[0, 0].astype(int)
        assert wall.max() - wall.min() <= 2, (wall, gain)
    # without grey pixels a photo keeps its cast (exposure only)
    gains = plan_gains(means, 0, "trend", neutral=[None, None, None])
    assert all(g.is_identity for g in gains)
