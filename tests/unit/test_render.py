"""Rendering on real files with real encoders (ffmpeg through imageio-ffmpeg, Pillow's GIF)."""
import os
import re
from datetime import datetime, timedelta

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image, ImageFilter

from alignimation_tui.config import ConfigError
from alignimation_tui.render import (CaptionStyle, RenderError, RenderItem, RenderSettings, read_sidecar,
                                     sidecar_path, write_animation)
from alignimation_tui.render.frame import caption_text
from alignimation_tui.render.geometry import coverage, coverages, shared_crop, smooth_matrices
from alignimation_tui.render.timing import plan_timing
from tests.conftest import similarity

CANVAS = (320, 240)
START = datetime(2024, 3, 1, 10, 0)


def bright_photo(seed: int, size=(320, 240)) -> Image.Image:
    """A photo with no dark pixel anywhere: a gradient plus a little texture, all values >= 70."""
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    rng = np.random.default_rng(seed)
    rgb = np.stack([120 + 100 * x, 120 + 100 * y, 200 - 60 * x * y], -1) + rng.uniform(-30, 30, (h, w, 3))
    return Image.fromarray(rgb.clip(70, 255).astype(np.uint8))


def make_items(tmp_path, warps, size=(320, 240)):
    items = []
    for i, (angle, scale, tx, ty) in enumerate(warps):
        path = tmp_path / f"p{i:02d}.jpg"
        bright_photo(i, size).save(path, quality=95)
        m = similarity(angle, scale, tx, ty, centre=(size[0] / 2, size[1] / 2))
        items.append(RenderItem(path, path.name, m, hash=f"h{i}", taken_at=START + timedelta(weeks=i),
                                size=size, info={"verdict": "auto", "status": "aligned"}))
    return items


WARPS = [(0, 1.0, 0, 0), (8, 1.1, 12, -6), (-10, 0.95, -10, 8), (5, 1.05, 6, 10), (-4, 1.0, -8, -8)]


def frames_of_mp4(path):
    reader = imageio.get_reader(path)
    try:
        return [np.asarray(f) for f in reader]
    finally:
        reader.close()


def test_timing_counts():
    t = plan_timing(5, fps=10, hold_first=0.5, hold_last=1.0, crossfade=3)
    assert (t.distinct, t.hold_first, t.hold_last, t.frames) == (5 + 4 * 3, 5, 10, 17 + 15)
    steps = list(t.steps())
    assert len(steps) == t.distinct and sum(s.repeat for s in steps) == t.frames
    assert steps[0].repeat == 6 and steps[-1].repeat == 11
    assert [round(s.alpha, 2) for s in steps[1:4]] == [0.25, 0.5, 0.75]
    # duration sets the rate: 17 moving frames in 4 - 1.5 s of movement
    d = plan_timing(5, fps=8, duration=4.0, hold_first=0.5, hold_last=1.0, crossfade=3)
    assert d.fps == pytest.approx(17 / 2.5) and d.seconds == pytest.approx(4.0, abs=0.1)
    with pytest.raises(ConfigError, match="render.duration"):
        plan_timing(5, fps=8, duration=1.0, hold_first=0.5, hold_last=0.5)
    with pytest.raises(ConfigError, match="too short"):
        plan_timing(500, fps=8, duration=2.0)


@pytest.mark.parametrize("suffix", [".mp4", ".gif", ".webp"])
def test_frame_counts_with_crossfade_and_holds(tmp_path, suffix):
    items = make_items(tmp_path, WARPS)
    out = tmp_path / f"anim{suffix}"
    s = RenderSettings(fps=10, crossfade=2, hold_first=0.3, hold_last=0.5, gif_max_width=200)
    result = write_animation(items, CANVAS, out, s)
    distinct = 5 + 4 * 2
    if suffix == ".mp4":
        frames = frames_of_mp4(out)
        assert len(frames) == result.frames == distinct + 3 + 5
        assert frames[0].shape == (240, 320, 3)
        # the held first photo: the same input frame, but the encoder may spend bits refining a
        # repeated frame, so decoded copies agree within a small tolerance, not bit for bit
        assert np.abs(frames[0].astype(int) - frames[3].astype(int)).mean() < 1.0
    else:
        with Image.open(out) as im:
            assert im.n_frames == result.frames == distinct  # holds are longer frames
            durations = []
            for k in range(im.n_frames):
                im.seek(k)
                im.load()
                durations.append(im.info["duration"])
            assert im.width <= (200 if suffix == ".gif" else 320)
        assert durations[0] == pytest.approx(400, abs=10) and durations[-1] == pytest.approx(600, abs=10)
        assert sum(durations) == pytest.approx(1000 * (distinct + 8) / 10, abs=20)
    assert not list(tmp_path.glob(".*partial*"))
    assert result.bytes == out.stat().st_size > 0


def test_crossfade_blends_consecutive_photos(tmp_path):
    items = make_items(tmp_path, WARPS[:2])
    out = tmp_path / "a.mp4"
    write_animation(items, CANVAS, out, RenderSettings(fps=10, crossfade=1, quality=0))
    a, mid, b = (f.astype(float) for f in frames_of_mp4(out))
    assert np.abs(mid - (a + b) / 2).mean() < 3 < np.abs(a - b).mean()


def test_shared_crop_has_no_black_border(tmp_path):
    items = make_items(tmp_path, WARPS)
    canvas_dir, shared_dir = tmp_path / "canvas", tmp_path / "shared"
    write_animation(items, CANVAS, tmp_path / "c.mp4", RenderSettings(), frames_dir=canvas_dir)
    result = write_animation(items, CANVAS, tmp_path / "s.mp4", RenderSettings(crop="shared"), frames_dir=shared_dir)
    w, h = result.size
    assert w % 2 == 0 and h % 2 == 0 and w * h < CANVAS[0] * CANVAS[1]
    assert abs(w / h - CANVAS[0] / CANVAS[1]) < 0.05
    dark = lambda p: int((np.asarray(Image.open(p)).max(axis=-1) < 40).sum())  # noqa: E731
    assert sum(dark(p) for p in sorted(canvas_dir.glob("*.jpg"))) > 1000  # the warps do leave borders
    for path in sorted(shared_dir.glob("*.jpg")):
        assert Image.open(path).size == (w, h)
        assert dark(path) == 0, path.name
    data = read_sidecar(sidecar_path(tmp_path / "s.mp4"))
    assert data["size"] == [w, h] and data["crop"][2:] == [w, h]


def test_shared_crop_geometry():
    ident = np.eye(3)
    assert shared_crop([ident], [CANVAS], CANVAS).width >= CANVAS[0] - 4
    shifted = np.array([[1, 0, 100.0], [0, 1, 0], [0, 0, 1]])
    crop = shared_crop([ident, shifted], [CANVAS, CANVAS], CANVAS)
    assert crop.x >= 100 and crop.x + crop.width <= CANVAS[0]
    far = np.array([[1, 0, 1000.0], [0, 1, 0], [0, 0, 1]])
    assert shared_crop([ident, far], [CANVAS, CANVAS], CANVAS) is None


def test_coverages_equal_the_clipped_coverage_of_each_photo():
    """All photos at once: exactly ``coverage``'s value for every photo, 1.0 for those that hold
    the whole canvas (either winding: a mirrored matrix turns the photo's corners round)."""
    rng = np.random.default_rng(3)
    canvas = (320, 240)
    matrices, sizes = [], []
    for _ in range(400):
        m = similarity(rng.uniform(-30, 30), rng.uniform(0.4, 2.5), rng.uniform(-200, 200), rng.uniform(-200, 200))
        if rng.random() < 0.3:
            m = m @ np.diag([-1.0, 1.0, 1.0])  # mirrored
        matrices.append(m)
        sizes.append((int(rng.integers(100, 700)), int(rng.integers(100, 700))))
    matrices += [np.eye(3), np.array([[1, 0, 1000.0], [0, 1, 0], [0, 0, 1]])]  # the canvas itself; off it
    sizes += [canvas, canvas]
    expected = [coverage(m, s, canvas) for m, s in zip(matrices, sizes)]
    got = coverages(matrices, sizes, canvas)
    assert got == expected
    whole = sum(c == 1.0 for c in got)
    assert 20 < whole < len(got) - 20 and got[-2:] == [1.0, 0.0]  # both kinds are there
    assert coverages([], [], canvas) == []


def test_fill_colour_and_blur(tmp_path):
    items = make_items(tmp_path, [(0, 0.6, 0, 0)])  # a small photo in the middle of the canvas
    for fill, check in (("#ff0000", lambda px: px[:, :, 0].min() > 230 and px[:, :, 1].max() < 25),
                        ("blur", lambda px: px.min() > 40 and px.std() > 1)):
        frames = tmp_path / fill.strip("#")
        write_animation(items, CANVAS, tmp_path / "x.mp4", RenderSettings(fill=fill), frames_dir=frames)
        px = np.asarray(Image.open(next(frames.glob("*.jpg"))))[:20]  # the top border
        assert check(px.astype(int)), fill


def test_caption_text():
    when, first = datetime(2024, 3, 15), datetime(2024, 3, 1)
    assert caption_text("%Y-%m-%d", index=3, count=9, taken_at=when, first=first, name="a.jpg") == "2024-03-15"
    assert caption_text("week {weeks} ({index}/{count})", index=3, count=9, taken_at=when, first=first,
                        name="a.jpg") == "week 2 (3/9)"
    assert caption_text("{name} {date:%b}", index=1, count=1, taken_at=when, first=first,
                        name="100%.jpg") == "100%.jpg Mar"


def test_caption_pixels_present(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(path)
    items = [RenderItem(path, path.name, np.eye(3), taken_at=START)]
    plain, captioned = tmp_path / "plain", tmp_path / "cap"
    write_animation(items, CANVAS, tmp_path / "a.gif", RenderSettings(), frames_dir=plain)
    style = CaptionStyle("%Y-%m-%d", "bottom-left", 0.1)
    write_animation(items, CANVAS, tmp_path / "b.gif", RenderSettings(caption=style), frames_dir=captioned)
    a = np.asarray(Image.open(next(plain.glob("*.jpg")))).astype(int)
    b = np.asarray(Image.open(next(captioned.glob("*.jpg")))).astype(int)
    changed = np.abs(a - b).max(axis=-1) > 60
    ys, xs = np.nonzero(changed)
    assert len(ys) > 200  # white text with a dark outline
    assert ys.min() > 240 * 0.7 and xs.max() < 320 * 0.6  # bottom left
    assert (b[changed].min(axis=-1) > 220).any() and (b[changed].max(axis=-1) < 40).any()
    assert read_sidecar(sidecar_path(tmp_path / "b.gif"))["frames"][0]["caption"] == "2024-03-01"


def test_smoothing():
    rng = np.random.default_rng(1)
    base = similarity(3, 1.2, 10, -5, centre=(160, 120))
    jittered = [similarity(rng.normal(0, 1.5), 1 + rng.normal(0, 0.02), rng.normal(0, 4), rng.normal(0, 4),
                           centre=(160, 120)) @ base for _ in range(30)]
    assert all(np.allclose(a, b) for a, b in zip(smooth_matrices(jittered, 0, CANVAS), jittered))
    same = smooth_matrices([base] * 5, 3, CANVAS)
    assert all(np.allclose(m, base) for m in same)

    def spread(ms):  # how far the canvas centre's preimage wanders, in photo pixels
        pts = np.array([(np.linalg.inv(m) @ [160, 120, 1])[:2] for m in ms])
        return np.linalg.norm(pts - pts.mean(0), axis=1).mean()

    smoothed = smooth_matrices(jittered, 7, CANVAS)
    assert spread(smoothed) < 0.5 * spread(jittered)
    # each result is still a similarity (no shear)
    for m in smoothed:
        a = m[:2, :2]
        assert np.isclose(a[0, 0], a[1, 1]) and np.isclose(a[0, 1], -a[1, 0])


def test_sidecar_lists_every_frame(tmp_path):
    items = make_items(tmp_path, WARPS[:3])
    out = tmp_path / "t.webp"
    write_animation(items, CANVAS, out, RenderSettings(smoothing=3), frames_dir=tmp_path / "f")
    data = read_sidecar(tmp_path / "t.webp.json")
    assert (tmp_path / "t.webp.json").read_text() == (tmp_path / "f" / "sidecar.json").read_text()
    assert [f["path"] for f in data["frames"]] == [str(i.path) for i in items]
    assert [f["hash"] for f in data["frames"]] == ["h0", "h1", "h2"]
    assert data["frames"][1]["date"] == (START + timedelta(weeks=1)).isoformat()
    assert {f["verdict"] for f in data["frames"]} == {"auto"} and data["frames"][0]["canvas"] == [320, 240]
    assert data["frames"][0]["file"] == "00001_p00.jpg" and (tmp_path / "f" / "00001_p00.jpg").is_file()
    # the stored transform is the one used (smoothed here), and re-rendering from it is exact
    from alignimation_tui.render import compose

    first = data["frames"][0]
    again = compose(items[0].path, first["transform"], tuple(first["canvas"]), "black", 10**9)
    again.save(tmp_path / "again.jpg", quality=92)
    # Exact on purpose: the same code on the same machine, in one process, must reproduce the
    # frame it wrote from the transform it stored (nothing compared across machines here).
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.jpg")),
                          np.asarray(Image.open(tmp_path / "f" / "00001_p00.jpg")))
    assert not np.allclose(first["transform"], items[0].matrix)  # smoothing moved it


def test_failed_render_leaves_no_file(tmp_path):
    items = make_items(tmp_path, WARPS[:3])
    for item in items:
        item.path.write_bytes(b"not a photo any more")
    out = tmp_path / "x.mp4"
    from alignimation_tui.render import RenderError

    with pytest.raises(RenderError, match="p02.jpg"):
        write_animation(items, CANVAS, out, RenderSettings())
    assert not out.exists() and not list(tmp_path.glob(".x.mp4*"))
    assert not sidecar_path(out).exists()


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])  # an MP4 meets p02 among the photos it looks at first
def test_a_photo_that_cannot_be_read_is_left_out_and_the_render_goes_on(tmp_path, suffix):
    items = make_items(tmp_path, WARPS[:4])
    items[2].path.write_bytes(b"not a photo any more")  # found while rendering: started again without it
    items[3].path.unlink()  # gone before the render
    out = tmp_path / f"x{suffix}"
    result = write_animation(items, CANVAS, out, RenderSettings())
    assert result.photos == 2
    assert any(n.startswith("p02.jpg left out of this render") for n in result.notices), result.notices
    assert any(n == "p03.jpg left out of this render: the file is gone" for n in result.notices), result.notices
    if suffix == ".gif":
        with Image.open(out) as im:
            assert im.n_frames == 2
    else:
        assert len(frames_of_mp4(out)) == 2
    assert not list(tmp_path.glob(f".x{suffix}*"))


def test_gif_keeps_skin_tones(tmp_path):
    """The astronaut's face after the GIF palette stays within a few levels of the original
    (a coarse 64-colour palette is off by about 9)."""
    from skimage import data

    path = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    out = tmp_path / "a.gif"
    write_animation([RenderItem(path, path.name, np.eye(3))], (512, 512), out, RenderSettings(gif_max_width=512))
    with Image.open(out) as gif:
        got = np.asarray(gif.convert("RGB"), float)
    face = (slice(80, 180), slice(180, 270))
    assert np.abs(got[face] - data.astronaut()[face]).mean() < 6


@pytest.mark.parametrize("text, key, words", [
    ("[render]\ncrop = 'tight'\n", "render.crop", "must be one of"),
    ("[render]\nfill = 'purple'\n", "render.fill", "#rrggbb"),
    ("[render]\ncrossfade = -1\n", "render.crossfade", "between"),
    ("[render]\npreset = 'quick'\n", "render.preset", "must be one of"),
    ("[render.caption]\nformat = 'week {wek}'\n", "render.caption.format", "not a valid caption format"),
    ("[render.caption]\nposition = 'middle'\n", "render.caption.position", "must be one of"),
])
def test_render_config_errors_name_the_key(tmp_path, text, key, words):
    from alignimation_tui.config import load_config

    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key and words in str(err.value)


def test_render_settings_from_config(tmp_path):
    from alignimation_tui.config import load_config

    path = tmp_path / "c.toml"
    path.write_text("[render]\nfill = '#102030'\ncrossfade = 2\n[render.caption]\nformat = '%Y'\nsize = 0.1\n")
    s = RenderSettings.from_config(load_config(path))
    assert s.fill == "#102030" and s.crossfade == 2 and s.caption == CaptionStyle("%Y", "bottom-left", 0.1)
    assert RenderSettings.from_config(load_config(None)).caption is None
    assert RenderSettings.from_config(load_config(None)).preset == "veryfast"


def test_mp4_preset_and_threads_reach_x264(tmp_path):
    """The preset and the threads are passed on to x264, and what it writes is complete."""
    from alignimation_tui.render.writers import Mp4Writer

    out = tmp_path / "a.mp4"
    w = Mp4Writer(out, (64, 48), 8.0, 20, preset="ultrafast", threads=1)
    assert w.output_params[w.output_params.index("-preset") + 1] == "ultrafast"
    assert w.output_params[w.output_params.index("-threads") + 1] == "1"
    w.start()
    w.add(Image.new("RGB", (64, 48), (200, 100, 50)), 3)
    staged = w.finish()
    assert len(frames_of_mp4(staged.path)) == 3
    w.abort()


@pytest.mark.parametrize("size", [(64, 48), (63, 47)])
def test_mp4_frames_keep_their_colour(tmp_path, size):
    """Frames of even sizes go to x264 in yuv420p made by OpenCV; odd sizes as RGB, which ffmpeg
    converts and pads to even. Either way each frame comes back as it was sent, arrays and
    Pillow images alike (within the encoder's loss)."""
    from alignimation_tui.render.writers import Mp4Writer

    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    pictures = [np.stack([40 + 180 * x, 60 + 150 * y, 200 - 120 * x * y], -1).astype(np.uint8),
                np.stack([200 - 150 * y, 90 + 100 * x, 50 + 120 * y], -1).astype(np.uint8)]
    writer = Mp4Writer(tmp_path / "a.mp4", size, 8.0, 12, threads=1)
    assert writer.pix_fmt == ("yuv420p" if size == (64, 48) else "rgb24")
    writer.start()
    writer.add(pictures[0], 2)
    writer.add(Image.fromarray(pictures[1]))
    staged = writer.finish()
    frames = frames_of_mp4(staged.path)
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
    for frame, sent in zip(frames, [pictures[0], pictures[0], pictures[1]]):
        assert np.abs(frame[:h, :w].astype(float) - sent).mean() < 3
    writer.abort()


@pytest.mark.parametrize("preset, analyse", [("veryfast", b"analyse=0x3:0x3"), ("fast", b"analyse=0x3:0x113")])
def test_veryfast_skips_the_8x8_inter_partitions(tmp_path, preset, analyse):
    """The default preset is x264's veryfast without the p8x8/b8x8 partitions (PRESET_TUNING); any
    other preset is x264's own. Read back from the options x264 writes into the stream (intra
    partitions : inter partitions; 0x100 is p8x8, 0x010 b8x8)."""
    from alignimation_tui.render.writers import Mp4Writer

    w = Mp4Writer(tmp_path / "a.mp4", (64, 48), 8.0, 20, preset=preset, threads=1)
    w.start()
    w.add(Image.new("RGB", (64, 48), (200, 100, 50)), 3)
    staged = w.finish()
    options = x264_options(staged.path)
    assert analyse in options, options
    assert len(frames_of_mp4(staged.path)) == 3
    w.abort()


def x264_options(path) -> bytes:
    """The options x264 writes into the stream it encodes."""
    return re.search(rb"x264 - core .*? options: ([^\x00]*)", path.read_bytes()).group(1)


def scene(seed: int, size=(320, 240)) -> Image.Image:
    """Another picture each time: a base colour and blocks of colour, all drawn at random."""
    rng = np.random.default_rng(1000 + seed)
    w, h = size
    rgb = np.ones((h, w, 3)) * rng.uniform(0, 255, 3)
    for _ in range(12):
        x, y = rng.integers(0, w - 40), rng.integers(0, h - 40)
        rgb[y:y + rng.integers(20, h // 2), x:x + rng.integers(20, w // 2)] = rng.uniform(0, 255, 3)
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.mark.parametrize("photos, crossfade, b_frames, look_ahead", [
    # each photo another picture: x264 codes them as the scene cuts they are, looking 3 frames ahead
    ("cuts", 0, b"bframes=0", b"rc_lookahead=3"),
    ("cuts", 2, b"bframes=0", b"rc_lookahead=3"),
    ("cuts", 3, b"bframes=3", b"rc_lookahead=10"),  # a blend of 3 frames or more: what a B-frame predicts
    ("alike", 0, b"bframes=3", b"rc_lookahead=10"),  # the same spot each time: B-frames pay
])
def test_an_mp4_has_b_frames_where_they_pay(tmp_path, photos, crossfade, b_frames, look_ahead):
    """The render looks at its first photos to choose x264's B-frames (and, without them, how far
    it looks ahead); the photos it held back to look at still come out in order, each once."""
    items = []
    for i in range(10):
        path = tmp_path / f"p{i:02d}.jpg"
        picture = scene(i) if photos == "cuts" else bright_photo(i)
        picture.save(path, quality=95)
        items.append(RenderItem(path, path.name, np.eye(3), hash=f"h{i}", taken_at=START + timedelta(weeks=i),
                                size=CANVAS, info={"verdict": "auto", "status": "aligned"}))
    out = tmp_path / "a.mp4"
    frames_dir = tmp_path / "frames"
    result = write_animation(items, CANVAS, out, RenderSettings(crossfade=crossfade), frames_dir=frames_dir)
    assert b_frames in x264_options(out) and look_ahead in x264_options(out)
    decoded = frames_of_mp4(out)
    assert len(decoded) == result.frames == 10 + 9 * crossfade
    composed = [np.asarray(Image.open(p).convert("RGB"), dtype=float) for p in sorted(frames_dir.glob("*.jpg"))]
    for k in range(len(composed)):  # each photo's frame is nearest its own picture (within the encoder's loss)
        errors = [np.abs(decoded[k * (crossfade + 1)] - picture).mean() for picture in composed]
        assert int(np.argmin(errors)) == k and errors[k] < 10, (k, errors)


def test_an_mp4_composes_ahead_while_it_chooses_b_frames_and_its_encoder_starts(tmp_path, monkeypatch):
    """The photos held back to choose the B-frames do not stop the composing: the workers compose as
    many more meanwhile (a GIF, which holds none back, composes its usual one or two ahead)."""
    from alignimation_tui.render import animation
    from alignimation_tui.render.writers import look_ahead_photos

    asked = []
    original = animation.decode_ahead
    monkeypatch.setattr(animation, "decode_ahead",
                        lambda items, decode, workers, ahead: asked.append((workers, ahead)) or original(
                            items, decode, workers, ahead))
    items = []
    for i in range(10):
        path = tmp_path / f"p{i:02d}.jpg"
        scene(i).save(path, quality=95)
        items.append(RenderItem(path, path.name, np.eye(3), hash=f"h{i}", size=CANVAS))
    frames = tmp_path / "frames"
    write_animation(items, CANVAS, tmp_path / "a.mp4", RenderSettings(), frames_dir=frames, workers=2)
    write_animation(items, CANVAS, tmp_path / "a.gif", RenderSettings(), workers=2)
    assert asked == [(2, 2 + look_ahead_photos(CANVAS)), (2, 2)]
    assert len(frames_of_mp4(tmp_path / "a.mp4")) == 10 and len(list(frames.glob("*.jpg"))) == 10


def test_b_frames_stay_where_there_is_too_little_to_look_at():
    from alignimation_tui.render.writers import b_frames_pay

    cuts = [np.asarray(scene(i)) for i in range(4)]
    assert not b_frames_pay(cuts, 0) and not b_frames_pay(cuts[:3], 1)
    assert b_frames_pay(cuts[:2], 0) and b_frames_pay(cuts, 3)
    assert b_frames_pay([Image.fromarray(c) for c in cuts[:3]] + [Image.fromarray(cuts[2])] * 3, 0)  # 2 cuts of 5


def test_frames_partial_folder_of_a_killed_render_is_removed(tmp_path):
    """A render killed with -9 leaves its hidden partial frames folder; the next render into the
    same frames folder removes it (its process is gone) and leaves a live one alone."""
    import subprocess
    import sys

    frames = tmp_path / "f"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    abandoned = frames / f".partial-{int(dead.stdout)}-abc"
    abandoned.mkdir(parents=True)
    (abandoned / "00001_p00.jpg").write_bytes(b"half")
    live = frames / f".partial-{os.getpid()}-xyz"
    live.mkdir()
    write_animation(make_items(tmp_path, WARPS[:2]), CANVAS, tmp_path / "t.gif", RenderSettings(), frames_dir=frames)
    assert not abandoned.exists() and live.is_dir()
    assert sorted(p.name for p in frames.iterdir()) == [live.name, "00001_p00.jpg", "00002_p01.jpg", "sidecar.json"]


def test_a_frame_the_photo_covers_skips_the_blurred_background(tmp_path):
    from alignimation_tui.photos import Decoded
    from alignimation_tui.render.frame import compose_decoded, covers, warp

    rng = np.random.default_rng(1)
    photo = Decoded(Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)), 400, 300)
    zoom = np.array([[2.0, 0, -100], [0, 2.0, -100], [0, 0, 1]])  # a close crop well inside the photo
    assert covers(photo, zoom, (400, 300))
    assert not covers(photo, np.array([[1.0, 0, 50], [0, 1.0, 0], [0, 0, 1]]), (400, 300))  # a border shows
    framed = np.asarray(compose_decoded(photo, zoom, (400, 300), "blur"), np.int16)
    plain = np.asarray(warp(photo, zoom, (400, 300)), np.int16)
    assert np.abs(framed - plain).max() <= 1  # the same picture: nothing of the blurred copy shows


def test_render_decode_is_not_resized_when_the_warp_scales_anyway(tmp_path):
    from alignimation_tui.photos import open_photo

    path = tmp_path / "p.jpg"
    Image.new("RGB", (400, 300), (10, 20, 30)).save(path)
    assert open_photo(path, max_side=300).image.size == (300, 225)
    assert open_photo(path, max_side=300, resize_within=2.0).image.size == (400, 300)
    assert open_photo(path, max_side=150, resize_within=2.0).image.size == (200, 150)  # the DCT half scale


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fill", ["blur", "black"])
def test_render_turns_the_photo_upright_in_the_warp(tmp_path, orientation, fill):
    """The render decodes a photo as stored and turns it upright inside the warp (no full-size
    transpose and copy): the same picture as warping the upright decode, for every EXIF orientation."""
    from alignimation_tui.photos import open_photo
    from alignimation_tui.render.frame import compose, compose_decoded
    from tests.conftest import save_with_date

    rng = np.random.default_rng(orientation)
    stored = np.asarray(bright_photo(orientation, (400, 300)).resize((40, 30)).resize((400, 300)), np.uint8)
    stored = stored.copy()
    stored[:60, :80] = rng.integers(0, 256, 3)  # a corner that tells which way up the photo is
    path = save_with_date(Image.fromarray(stored), tmp_path / "p.jpg", orientation=orientation)
    size = open_photo(path).image.size  # upright
    m = similarity(9, 0.8, 20, -10, centre=(size[0] / 2, size[1] / 2))  # a border shows: fill and blur
    for picture in (None, (size[0] * 0.1, size[1] * 0.2, size[0] * 0.8, size[1] * 0.9)):  # and padding cut off
        direct = np.asarray(compose(path, m, (320, 240), fill, 10**8, picture=picture), np.int16)
        upright = np.asarray(compose_decoded(open_photo(path), m, (320, 240), fill, picture), np.int16)
        assert np.abs(direct - upright).mean() < 1.0 and np.percentile(np.abs(direct - upright), 99) <= 3


def test_a_side_too_long_for_opencv_warps_through_pillow(monkeypatch):
    """OpenCV's warp cannot take a source side of 32767 px or more (a panorama): those go through
    Pillow, the same picture (checked here on a small photo with the limit lowered)."""
    from alignimation_tui.photos import Decoded
    from alignimation_tui.render import frame

    rng = np.random.default_rng(3)
    smooth = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize((120, 90), Image.Resampling.BICUBIC)
    photo = Decoded(np.asarray(smooth), 120, 90)  # smooth: the two warps' rounding, not their geometry, is all that differs
    m = similarity(7, 1.6, 15, -10, centre=(60, 45))
    for fill in ("black", "blur", "#336699"):
        by_cv = np.asarray(frame.compose_array(photo, m, (160, 120), fill), np.int16)
        monkeypatch.setattr(frame, "CV_MAX_SIDE", 100)
        by_pillow = np.asarray(frame.compose_array(photo, m, (160, 120), fill), np.int16)
        monkeypatch.undo()
        # Away from the photo's edge (where OpenCV blends the edge pixels into the fill and Pillow
        # does not), the same picture.
        inside = frame.warp_coverage(photo, np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1]]) @ m, (160, 120))
        inside = np.asarray(Image.fromarray(inside).filter(ImageFilter.MinFilter(5))) == 255
        diff = np.abs(by_cv - by_pillow)[inside]
        assert inside.mean() > 0.5 and diff.mean() < 1.0 and diff.max() <= 4, fill


def test_composite_weighs_only_the_edge_and_gives_the_same_bytes(tmp_path):
    """The blurred fill's composite adds the background where the photo does not reach, keeps the
    photo where it covers, and weighs only the edge between: the same bytes as weighing every
    pixel (premultiplied + background * (255 - alpha) / 255, OpenCV's rounding)."""
    import cv2

    from alignimation_tui.photos import open_stored
    from alignimation_tui.render.frame import _warp, blurred_cover, composite, warp_coverage
    from tests.conftest import similarity

    path = tmp_path / "p.jpg"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), np.uint8)).save(path, quality=90)
    photo = open_stored(path, max_side=160)
    m = similarity(17, 1.4, 160 - 80, 120 - 60, centre=(80, 60))  # turned, enlarged, centred: fill on every side
    size = (320, 240)
    premultiplied = _warp(photo.array(), photo, m, size, (0, 0, 0))
    alpha = warp_coverage(photo, m, size)
    background = blurred_cover(photo, size)
    assert {0, 255} <= set(np.unique(alpha)) and ((alpha > 0) & (alpha < 255)).sum() > 100
    whole = cv2.add(premultiplied, cv2.multiply(background, cv2.merge([255 - alpha] * 3), scale=1 / 255))
    out = composite(premultiplied.copy(), alpha, background)
    assert np.array_equal(out, whole)


def test_a_solid_fill_keeps_its_colour_under_the_colour_match():
    """The colour match corrects the photo, not the border: a white or coloured fill is the colour
    asked for in every frame (it was tinted by each frame's gain, so the border flickered). The
    photo is corrected as before, within the rounding of correcting before the warp rather than
    after; the blurred fill, made of the photo, is corrected with it. A decode with more pixels
    than the frame is corrected after the warp, with no solid fill showing: exactly as before."""
    from alignimation_tui.colour import ColourGain
    from alignimation_tui.photos import Decoded
    from alignimation_tui.render import frame

    rng = np.random.default_rng(5)
    smooth = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize((120, 90), Image.Resampling.BICUBIC)
    photo = Decoded(np.asarray(smooth), 120, 90)
    m = similarity(7, 1.2, 10, -5, centre=(60, 45))  # the photo does not cover the frame
    size = (200, 150)
    gain = ColourGain((0.7, 1.0, 1.3))
    coverage = frame.warp_coverage(photo, m, size)
    inside = np.asarray(Image.fromarray(coverage).filter(ImageFilter.MinFilter(5))) == 255
    outside = np.asarray(Image.fromarray(coverage).filter(ImageFilter.MaxFilter(5))) == 0
    assert inside.mean() > 0.3 and outside.mean() > 0.1
    for fill, rgb in (("white", (255, 255, 255)), ("#336699", (0x33, 0x66, 0x99))):
        out = frame.compose_array(photo, m, size, fill, gain=gain.apply)
        assert (out[outside] == rgb).all(), fill
        corrected_after = gain.apply(frame.compose_array(photo, m, size, fill)).astype(np.int16)
        diff = np.abs(out.astype(np.int16) - corrected_after)[inside]
        # (the look-up is curved: where neighbours differ much, a few levels apart at most)
        assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 2 and diff.max() <= 8, fill
    # This photo has fewer pixels than the frame: corrected before the warp; the blurred fill is
    # made of the photo as it was, then corrected before it is scaled up (a smooth picture).
    blurred = frame.compose_array(photo, m, size, "blur", gain=gain.apply).astype(np.int16)
    diff = np.abs(blurred - gain.apply(frame.compose_array(photo, m, size, "blur")))
    assert diff[inside].mean() < 1.0 and np.percentile(diff[inside], 99) <= 2 and diff[inside].max() <= 8
    assert diff[outside].max() <= 2
    small = (100, 74)  # a frame with fewer pixels than the photo
    m = similarity(7, 0.6, 5, -3, centre=(60, 45))
    assert not frame.covers(photo, m, small)
    assert np.array_equal(frame.compose_array(photo, m, small, "blur", gain=gain.apply),
                          gain.apply(frame.compose_array(photo, m, small, "blur")))


@pytest.mark.parametrize("fill", ["blur", "white"])
@pytest.mark.parametrize("scale", [2.5, 0.8])  # the photo covers the frame / leaves a border
def test_a_small_photo_warped_with_four_channels_gives_the_same_frame(monkeypatch, fill, scale):
    """A photo of up to twice the frame's pixels is warped with a fourth channel (OpenCV's
    vectorised path), whose warp is also the photo's coverage: the same frame as the plain
    3-channel warp and the separate coverage warp give (within one level: OpenCV's own paths)."""
    from alignimation_tui.photos import Decoded
    from alignimation_tui.render import frame

    rng = np.random.default_rng(3)
    smooth = Image.fromarray(rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)).resize((200, 150), Image.Resampling.BICUBIC)
    photo = Decoded(np.asarray(smooth), 200, 150)
    m = similarity(6, scale, 4, -3, centre=(100, 75))
    size = (240, 180)
    assert frame.covers(photo, m, size) == (scale > 2) and frame._four_channels(photo.array(), size)
    four = frame.compose_array(photo, m, size, fill)
    monkeypatch.setattr(frame, "FOUR_CHANNELS_UP_TO", 0.0)
    assert not frame._four_channels(photo.array(), size)
    three = frame.compose_array(photo, m, size, fill)
    assert np.abs(four.astype(np.int16) - three).max() <= 1


def test_many_photos_gone_are_one_line_per_reason(tmp_path):
    """A folder moved away mid-session: one line with the count and a few names, not one per photo."""
    items = make_items(tmp_path, WARPS[:5])
    for item in items[1:]:
        item.path.unlink()
    result = write_animation(items, CANVAS, tmp_path / "x.gif", RenderSettings())
    gone = [n for n in result.notices if "left out of this render" in n]
    assert gone == ["4 photos left out of this render: the file is gone (p01.jpg, p02.jpg, p03.jpg, …)"], gone
    items[0].path.unlink()
    with pytest.raises(RenderError, match=r"^no frames to render: 5 photos left out of this render: the file is gone"):
        write_animation(items, CANVAS, tmp_path / "y.gif", RenderSettings())


def test_ffmpeg_is_looked_up_beside_the_first_frames(tmp_path, monkeypatch):
    """imageio-ffmpeg checks its binary by running it once; the render has that done on a thread
    of its own while it composes its first frames, and starts the encoder with what it found."""
    import threading

    import imageio_ffmpeg

    from alignimation_tui.render import writers

    asked = []
    real = imageio_ffmpeg.get_ffmpeg_exe
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: asked.append(threading.current_thread().name) or real())
    monkeypatch.setattr(writers, "_lookup", None)
    items = []
    for i in range(4):
        path = tmp_path / f"p{i}.jpg"
        scene(i).save(path, quality=90)
        items.append(RenderItem(path, path.name, np.eye(3), hash=f"h{i}", taken_at=START + timedelta(weeks=i),
                                size=CANVAS, info={"verdict": "auto", "status": "aligned"}))
    write_animation(items, CANVAS, tmp_path / "a.mp4", RenderSettings())
    assert asked[0] == "find ffmpeg" and len(frames_of_mp4(tmp_path / "a.mp4")) == 4
