"""render.morph: in-between frames that move features instead of dissolving them (real OpenCV flow)."""
from datetime import datetime, timedelta

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image, ImageDraw

from alignimation_tui.config import ConfigError, RenderConfig, load_config
from alignimation_tui.render import CaptionStyle, RenderItem, RenderSettings, read_sidecar, sidecar_path, write_animation
from alignimation_tui.render.morph import correspond, inbetweens

cv2 = pytest.importorskip("cv2")

SIZE = 320


def texture(seed: int, size: int = SIZE, blur: float = 2.0, amplitude: float = 60.0) -> np.ndarray:
    """Smooth random texture around mid grey (RGB uint8): something for the flow to hold on to."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (size, size, 3)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), blur)
    noise *= amplitude / noise.std()
    return np.clip(128 + noise, 0, 255).astype(np.uint8)


def feature_pair(d: tuple[float, float]):
    """A textured disc with a dark ring on a static textured background, moved by ``d`` pixels."""
    background = texture(0)
    patch = texture(1, 96, blur=1.5, amplitude=70)
    mask = np.zeros((96, 96), np.uint8)
    cv2.circle(mask, (48, 48), 40, 255, -1)
    cv2.circle(patch, (48, 48), 40, (20, 20, 40), 3)

    def place(x: float, y: float) -> np.ndarray:
        shift = np.float32([[1, 0, x - 48], [0, 1, y - 48]])
        p = cv2.warpAffine(patch, shift, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        m = cv2.warpAffine(mask, shift, (SIZE, SIZE), flags=cv2.INTER_LINEAR)[..., None] / 255.0
        return (background * (1 - m) + p * m).round().astype(np.uint8)

    start = (150.0, 160.0)
    return place(*start), place(start[0] + d[0], start[1] + d[1]), patch, start


def locate(frame: np.ndarray, patch: np.ndarray) -> tuple[float, float, float]:
    """Where the disc's centre is in ``frame`` (sub-pixel), and how well it matches there."""
    template = cv2.cvtColor(patch[28:68, 28:68], cv2.COLOR_RGB2GRAY)  # the disc's inside, 40 px
    score = cv2.matchTemplate(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(score)

    def vertex(lo, mid, hi):
        den = lo - 2 * mid + hi
        return 0.0 if den == 0 else 0.5 * (lo - hi) / den

    dx = vertex(score[y, x - 1], score[y, x], score[y, x + 1])
    dy = vertex(score[y - 1, x], score[y, x], score[y + 1, x])
    return x + dx + 20, y + dy + 20, best


@pytest.mark.parametrize("d", [(12.0, 0.0), (8.0, -6.0)])
def test_midpoint_frame_has_the_feature_half_way(d):
    a, b, patch, (x0, y0) = feature_pair(d)
    assert np.hypot(*(np.array(locate(a, patch)[:2]) - (x0, y0))) < 0.5  # the ruler itself
    mid = np.asarray(inbetweens(a, b, 1)[0])
    x, y, match = locate(mid, patch)
    assert abs(x - (x0 + d[0] / 2)) < 1.0 and abs(y - (y0 + d[1] / 2)) < 1.0, (x, y)
    assert match > 0.9  # one sharp disc, not two faint ones
    # the plain blend, for contrast: two half-strength discs, neither half way
    blend = np.asarray(Image.blend(Image.fromarray(a), Image.fromarray(b), 0.5))
    bx, by, blend_match = locate(blend, patch)
    assert abs(bx - (x0 + d[0] / 2)) > 2 or abs(by - (y0 + d[1] / 2)) > 2 or blend_match < match - 0.1


def test_in_betweens_move_steadily():
    a, b, patch, (x0, _) = feature_pair((12.0, 0.0))
    xs = [locate(np.asarray(f), patch)[0] - x0 for f in inbetweens(a, b, 3)]
    assert xs == pytest.approx([3.0, 6.0, 9.0], abs=1.0)


def test_identical_photos_give_identical_in_betweens():
    a = texture(3)
    for frame in inbetweens(a, a.copy(), 3):
        assert np.abs(np.asarray(frame).astype(int) - a).max() <= 1


def test_nearly_identical_photos_stay_put():
    """Noise alone (a re-saved photo) must not set anything moving."""
    a = texture(4)
    rng = np.random.default_rng(5)
    b = np.clip(a + rng.normal(0, 2, a.shape), 0, 255).astype(np.uint8)
    mid = np.asarray(inbetweens(a, b, 1)[0]).astype(float)
    assert np.abs(mid - (a.astype(float) + b) / 2).mean() < 1.0


@pytest.mark.parametrize("kind", ["flat", "gradient"])
def test_textureless_pair_falls_back_to_a_blend(kind):
    """Nothing to match: a flat colour, or a smooth gradient whose brightness changed (the flow
    would otherwise explain the change of light as a slide)."""
    x = np.linspace(0, 1, SIZE, dtype=np.float32)[None, :, None]
    if kind == "flat":
        a, b = np.full((SIZE, SIZE, 3), 90, np.uint8), np.full((SIZE, SIZE, 3), 170, np.uint8)
    else:
        a = np.broadcast_to(60 + 80 * x, (SIZE, SIZE, 3)).astype(np.uint8)
        b = np.broadcast_to(110 + 80 * x, (SIZE, SIZE, 3)).astype(np.uint8)
    pair = correspond(a, b)
    assert pair.trust is None or float(pair.trust.max()) < 0.05
    for t in (0.25, 0.5, 0.75):
        blend = (1 - t) * a.astype(float) + t * b
        assert np.abs(np.asarray(pair.frame(t)).astype(float) - blend).max() <= 1.5


@pytest.mark.parametrize("occluder", ["hand", "new background"])
def test_occlusion_falls_back_locally(occluder):
    """Where the second photo shows something the first does not (a hand in front, a new
    background), the morph blends there instead of dragging the first photo over it, and still
    moves what matches elsewhere."""
    a, b, patch, (x0, y0) = feature_pair((10.0, 0.0))
    b = b.copy()
    region = (slice(30, 110), slice(200, 300))
    if occluder == "hand":  # smooth, skin-coloured, shaded
        yy, xx = np.mgrid[0:80, 0:100].astype(np.float32)
        shade = 1 - 0.3 * xx / 100 - 0.2 * yy / 80
        b[region] = np.clip(np.array([225, 170, 140], np.float32) * shade[..., None], 0, 255).astype(np.uint8)
    else:  # a bookshelf where there was a plain textured wall
        shelf = np.full((80, 100, 3), 60, np.uint8)
        for k, x in enumerate(range(0, 100, 9)):
            cv2.rectangle(shelf, (x, 5 + 7 * (k % 3)), (x + 6, 78), tuple(int(v) for v in (80 + 25 * (k % 5), 150 - 20 * (k % 4), 90 + 30 * (k % 3))), -1)
        b[region] = shelf
    pair = correspond(a, b)
    inner = (slice(40, 100), slice(210, 290))
    assert float(pair.trust[inner].mean()) < 0.5
    moved = np.hypot(*np.moveaxis(pair.flow_ab[inner], -1, 0))
    assert float(moved.mean()) < 2.0  # nothing dragged across (the disc moves 10 px): a blend there
    mid = np.asarray(pair.frame(0.5)).astype(float)
    blend = (a.astype(float) + b) / 2
    assert np.abs(mid[inner] - blend[inner]).mean() < 10.0
    x, _, match = locate(np.asarray(pair.frame(0.5)), patch)
    assert abs(x - (x0 + 5)) < 1.0 and match > 0.9  # the disc: still moved


def test_different_sizes_refused():
    with pytest.raises(ValueError, match="different sizes"):
        correspond(texture(0, 64), texture(0, 32))


# --- config -------------------------------------------------------------------------------------

def test_morph_config(tmp_path):
    assert RenderConfig().morph == 0
    path = tmp_path / "c.toml"
    path.write_text("[render]\nmorph = 3\n")
    assert load_config(path).render.morph == 3
    assert RenderSettings.from_config(load_config(path)).morph == 3
    path.write_text("[render]\nmorph = -1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "render.morph"
    path.write_text("[render]\nmorph = 2.5\n")
    with pytest.raises(ConfigError, match="render.morph"):
        load_config(path)


def test_morph_and_crossfade_are_exclusive(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[render]\nmorph = 3\ncrossfade = 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "render.morph" and "render.crossfade" in str(err.value)
    with pytest.raises(ConfigError, match="render.crossfade"):
        RenderSettings(crossfade=1, morph=1)
    path.write_text("[render]\nmorph = 3\ncrossfade = 0\n")
    assert load_config(path).render.morph == 3


# --- in the render ------------------------------------------------------------------------------

def test_render_with_morph_and_caption(tmp_path):
    """N in-betweens per pair; the caption is drawn on them, not morphed: an in-between shows the
    nearer photo's caption exactly where that photo shows it, and none of the other's."""
    d = 10.0
    a, b, _, _ = feature_pair((d, 0.0))
    items = []
    for k, img in enumerate((a, b)):
        path = tmp_path / f"p{k}.png"
        Image.fromarray(img).save(path)
        items.append(RenderItem(path, path.name, np.eye(3), hash=f"h{k}", taken_at=datetime(2024, 1, 1) + timedelta(weeks=k),
                                size=(SIZE, SIZE)))
    style = CaptionStyle("week {weeks}", "top-left", 0.12)
    out = tmp_path / "m.mp4"
    result = write_animation(items, (SIZE, SIZE), out, RenderSettings(fps=10, morph=3, quality=0, caption=style))
    reader = imageio.get_reader(out)
    frames = [np.asarray(f).astype(int) for f in reader]
    reader.close()
    assert len(frames) == result.frames == 2 + 3
    for k in range(4):
        assert np.abs(frames[k] - frames[k + 1]).mean() > 0.5  # every frame differs from its neighbour
    band = (slice(0, 80), slice(0, 200))  # where the caption is
    white = lambda f: f[band].min(axis=-1) > 225  # noqa: E731  the caption's letters
    first, last = white(frames[0]), white(frames[4])
    assert first.sum() > 100 and (first != last).sum() > 50  # "week 0" and "week 1" differ
    for k, own in ((1, first), (2, last), (3, last)):  # t = 0.25: the first's; 0.5 and 0.75: the second's
        here = white(frames[k])
        assert (here & own).sum() > 0.9 * own.sum()
        assert (here & ~own).sum() < 0.05 * own.sum()  # no other caption showing through
    data = read_sidecar(sidecar_path(out))
    assert data["settings"]["morph"] == 3 and data["frames_total"] == 5


@pytest.mark.parametrize("suffix, crop, fill", [(".mp4", "canvas", "blur"), (".gif", "shared", "black")])
def test_morph_follows_fill_crop_colour_and_nudge(tmp_path, suffix, crop, fill):
    """The morph works on the frames as rendered: after the fill, the crop, the colour gains and
    the nudge; the in-betweens lead from one rendered photo to the next."""
    from alignimation_tui.colour import ColourGain
    from alignimation_tui.nudge import Nudge
    from tests.conftest import similarity

    items = []
    for k, (angle, scale, tx, ty) in enumerate([(0, 1.0, 0, 0), (6, 1.08, 10, -6), (-5, 0.95, -8, 6)]):
        path = tmp_path / f"p{k}.jpg"
        Image.fromarray(feature_pair((4.0 * k, 0.0))[1]).save(path, quality=95)
        items.append(RenderItem(path, path.name, similarity(angle, scale, tx, ty, centre=(160, 160)), hash=f"h{k}",
                                size=(SIZE, SIZE), colour=ColourGain((1.0, 1.1, 0.9)) if k == 1 else None,
                                nudge=Nudge(dx=0.05) if k == 2 else None,
                                anchor=np.array([[130.0, 140.0], [190.0, 140.0]])))
    out = tmp_path / f"m{suffix}"
    frames_dir = tmp_path / "frames"
    result = write_animation(items, (SIZE, SIZE), out, RenderSettings(fps=10, morph=2, crop=crop, fill=fill,
                                                                     gif_max_width=SIZE), frames_dir=frames_dir)
    assert result.frames == 3 + 2 * 2
    photos = [np.asarray(Image.open(p)).astype(float) for p in sorted(frames_dir.glob("*.jpg"))]
    assert len(photos) == 3  # the aligned frames are the photos, not the in-betweens
    if suffix == ".mp4":
        reader = imageio.get_reader(out)
        frames = [np.asarray(f).astype(float) for f in reader]
        reader.close()
    else:
        with Image.open(out) as im:
            frames = []
            for k in range(im.n_frames):
                im.seek(k)
                frames.append(np.asarray(im.convert("RGB")).astype(float))
    assert len(frames) == 7 and frames[0].shape == photos[0].shape
    for k in range(2):  # the first in-between is nearer its own photo, the second nearer the next
        a, first, second, b = photos[k], frames[3 * k + 1], frames[3 * k + 2], photos[k + 1]
        assert np.abs(first - a).mean() < np.abs(first - b).mean()
        assert np.abs(second - b).mean() < np.abs(second - a).mean()


def test_in_betweens_get_x264s_sharper_mode_decision_on_a_fast_preset():
    """The morph's frames stay as sharp in the MP4 as in memory (bench/bench_morph.py: 0.80 -> 0.83
    of their photos' sharpness on faces_jerry): on veryfast and faster, a render with in-betweens
    adds subme=6 and trellis; the photos-only render and the slower presets are left alone."""
    from alignimation_tui.render.writers import x264_params

    assert "subme=6:trellis=1" in x264_params("veryfast", in_betweens=True)
    assert "subme" not in x264_params("veryfast") and "subme" not in x264_params("medium", in_betweens=True)
    assert "bframes=0" in x264_params("veryfast", b_frames=False, in_betweens=True)
