"""`--render-only` renders from the store: no detection, no registration, the same output frame
for frame as the normal run, and a sidecar that says what went in. Real MTCNN for the first run."""
import json
from datetime import datetime, timedelta

import imageio.v2 as imageio
import numpy as np
import pytest

from alignimation_tui import register as reg
from alignimation_tui.cli import main
from alignimation_tui.render import read_sidecar
from tests.conftest import save_with_date, similarity, warped_astronaut

WARPS = [(0, 1.0, 0, 0), (12, 0.9, 30, -20), (-14, 1.15, -35, 10), (7, 0.82, 40, 30)]
START = datetime(2024, 1, 1, 9, 0, 0)
CONFIG = """
[render]
framing = "reference"
crop = "shared"
crossfade = 1
hold_last = 0.25
smoothing = 3
[render.caption]
format = "week {weeks} %Y-%m-%d"
"""


def run(capsys, *args):
    code = main([*map(str, args)])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines() if line.strip()], captured.err


def mp4_frames(path):
    reader = imageio.get_reader(path)
    try:
        return [np.asarray(f) for f in reader]
    finally:
        reader.close()


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i, (angle, scale, tx, ty) in enumerate(WARPS):
        save_with_date(warped_astronaut(similarity(angle, scale, tx + 64, ty + 60)), root / f"w{i}.jpg",
                       START + timedelta(weeks=i))
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    return root, config


def _refuse(*args, **kwargs):
    raise AssertionError("--render-only must not detect or register")


def forbid_models(m):
    """Detection and registration raise if called (``m``: a monkeypatch or its context)."""
    from alignimation_tui.detect.face import FaceDetector

    m.setattr(FaceDetector, "detect", _refuse)
    m.setattr(reg, "register_frames", _refuse)


@pytest.fixture
def no_models(monkeypatch):
    forbid_models(monkeypatch)


def test_render_only_matches_a_normal_render(photos, tmp_path, capsys, monkeypatch):
    root, config = photos
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    code, rows, err = run(capsys, root, "--once", "--json", "--config", config, "--out", a, "--frames", tmp_path / "fa")
    assert code == 0, err
    assert "wrote" in err and ("MB" in err or "kB" in err)

    with monkeypatch.context() as m:
        forbid_models(m)
        code, rows2, err = run(capsys, root, "--render-only", "--json", "--config", config, "--out", b,
                               "--frames", tmp_path / "fb")
    assert code == 0, err
    assert [(r["hash"], r["status"], r["transform"]) for r in rows2] == [(r["hash"], r["status"], r["transform"])
                                                                          for r in rows]

    # Frame for frame and byte for byte on purpose: both renders run here, in one process, from the
    # same stored transforms; the claim is that --render-only reproduces a normal render exactly.
    fa, fb = mp4_frames(a), mp4_frames(b)
    assert len(fa) == len(fb) == 4 + 3 + 2  # photos, one blend between each pair, hold_last 0.25 s at 8 fps
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb))
    jpgs = sorted(p.name for p in (tmp_path / "fa").glob("*.jpg"))
    assert len(jpgs) == 4
    assert all((tmp_path / "fa" / n).read_bytes() == (tmp_path / "fb" / n).read_bytes() for n in jpgs)

    # The sidecar round-trips: same frames, same transforms, whichever way it was rendered.
    sa, sb = read_sidecar(a.with_name("a.mp4.json")), read_sidecar(b.with_name("b.mp4.json"))
    assert [f["hash"] for f in sa["frames"]] == [r["hash"] for r in rows]
    assert [f["path"] for f in sa["frames"]] == [r["path"] for r in rows]
    assert all(np.array_equal(x["transform"], y["transform"]) for x, y in zip(sa["frames"], sb["frames"]))
    strip = lambda d: {k: v for k, v in d.items() if k not in ("output", "frames", "mtime_ns")}  # noqa: E731
    assert strip(sa) == strip(sb)
    assert sa["frames"][1]["caption"] == "week 1 2024-01-08" and sa["frames"][0]["status"] == "aligned"
    w, h = sa["size"]
    assert fa[0].shape == (h, w, 3) and w % 2 == 0 and h % 2 == 0 and w < 1080

    # A new photo has nothing stored: it is named and left out; the rest renders as before.
    save_with_date(warped_astronaut(similarity(5, 1.0, 70, 60)), root / "w9.jpg", START + timedelta(weeks=9))
    with monkeypatch.context() as m:
        forbid_models(m)
        code, _, err = run(capsys, root, "--render-only", "--config", config, "--out", b)
    assert code == 0, err
    assert "w9.jpg: no stored detection" in err and "1 photo(s) left out" in err
    assert all(np.array_equal(x, y) for x, y in zip(fa, mp4_frames(b)))


def test_render_only_with_nothing_stored_exits_2(photos, tmp_path, capsys, no_models):
    root, _ = photos
    code, _, err = run(capsys, root, "--render-only", "--out", tmp_path / "x.gif")
    assert code == 2 and "nothing stored to render" in err
    assert not (tmp_path / "x.gif").exists()


def test_webp_into_the_photo_folder_is_refused(photos, capsys, no_models):
    root, _ = photos
    code, _, err = run(capsys, root, "--once", "--out", root / "timelapse.webp")
    assert code == 2 and "refusing" in err
    assert not (root / "timelapse.webp").exists()
