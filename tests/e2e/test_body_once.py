"""End to end with the real body model on real photos: `alignimation-tui DIR --once` with the default
config on side views of a standing person (the weekly-bump user's folder), and on copies of one
side view warped by known similarities (the exact check of bench/bench_body.py, smaller)."""
import shutil

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from alignimation_tui.detect.body import KEYPOINT_NAMES
from alignimation_tui.register import apply
from tests.e2e.test_once import run

# (angle in degrees, scale, shift as fractions of the photo) of each warped copy
WARPS = [(9.0, 0.8, 0.05, -0.04), (-12.0, 1.15, -0.06, 0.03), (5.0, 0.7, 0.02, 0.06)]


@pytest.fixture
def side_views(samples, tmp_path):
    folder = tmp_path / "bump"
    folder.mkdir()
    for path in sorted((samples / "body_standing").glob("*_side_*")):
        shutil.copy(path, folder / path.name)
    return folder


def test_default_run_on_side_views_is_a_body_video(side_views, tmp_path, capsys):
    out, frames = tmp_path / "bump.mp4", tmp_path / "frames"
    before = {p.name: p.read_bytes() for p in side_views.iterdir()}
    code, rows, err = run(capsys, side_views, "--once", "--json", "--out", out, "--frames", frames)
    assert code == 0, err
    assert "mode: body (auto: 3 of 3 sampled photos show the body to the hips)" in err  # a majority of 4
    assert len(rows) == 4 and all(r["status"] == "aligned" for r in rows), rows
    assert all(r["mode"] == "body" and r["mode_auto"] for r in rows)
    assert {r["side"] for r in rows} == {"left"} and all("nearer the camera" in r["side_reason"] for r in rows)
    # the photos' portrait shape (3:4), the whole person in it
    reader = imageio.get_reader(out)
    first = reader.get_data(0)
    reader.close()
    assert first.shape[:2] == (1440, 1080)
    for r in rows:
        m = np.asarray(r["output_transform"])
        scale = np.sqrt(abs(np.linalg.det(m[:2, :2])))
        assert 0.3 < scale < 1.0  # a body at 85 % of 1440 px from a 2048 px photo: not a face close-up
    assert {p.name: p.read_bytes() for p in side_views.iterdir()} == before  # photos untouched

    # --mode face overrides the choice
    code, rows, err = run(capsys, side_views, "--once", "--json", "--out", tmp_path / "face.mp4", "--mode", "face")
    assert "mode: face" in err and all(r["mode"] == "face" and not r["mode_auto"] for r in rows)


def test_known_warps_of_a_real_side_view_are_undone(samples, tmp_path, capsys):
    src = sorted((samples / "body_standing").glob("*_side_*"))[0]
    img = np.asarray(Image.open(src).convert("RGB").resize((768, 1024), Image.Resampling.LANCZOS))
    h, w = img.shape[:2]
    folder = tmp_path / "warped"
    folder.mkdir()
    Image.fromarray(img).save(folder / "a_original.jpg", quality=92)
    truths = {}
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    for i, (angle, scale, tx, ty) in enumerate(WARPS):
        a = np.deg2rad(angle)
        m = np.eye(3)
        m[:2, :2] = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        m[:2, 2] = np.array([w / 2 + tx * w, h / 2 + ty * h]) - m[:2, :2] @ [w / 2, h / 2]
        warped = cv2.warpAffine(img, (np.linalg.inv(shift) @ m @ shift)[:2], (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        Image.fromarray(warped).save(folder / f"b_warp{i}.jpg", quality=92)
        truths[f"b_warp{i}.jpg"] = m
    config = tmp_path / "c.toml"
    config.write_text('[register]\nreference = "a_original.jpg"\n')
    code, rows, err = run(capsys, folder, "--once", "--json", "--out", tmp_path / "w.mp4", "--config", config)
    assert code == 0, err
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert all(r["status"] == "aligned" and r["mode"] == "body" for r in rows), rows

    # where the original's body lands on the canvas: keypoints on both sides, head to ankle
    from alignimation_tui.detect.body import BodyDetector
    from alignimation_tui.photos import open_photo

    det, _ = BodyDetector(256).detect_one(open_photo(folder / "a_original.jpg"))
    pts = np.array([det.persons[0].keypoints[KEYPOINT_NAMES.index(f"{s}_{p}")]
                    for p in ("ear", "shoulder", "hip", "knee", "ankle") for s in ("left", "right")])
    m_ref = np.asarray(by_name["a_original.jpg"]["transform"])
    target = apply(m_ref, pts)
    height = np.ptp(target[:, 1])
    for name, truth in truths.items():
        got = apply(np.asarray(by_name[name]["transform"]) @ truth, pts)
        err_pct = np.sqrt(np.mean(np.sum((got - target) ** 2, 1))) / height * 100
        unaligned = np.sqrt(np.mean(np.sum((apply(m_ref @ truth, pts) - target) ** 2, 1))) / height * 100
        assert err_pct < 1.5 and err_pct < 0.2 * unaligned, (name, err_pct, unaligned)


def test_another_persons_front_view_is_told_apart(samples, tmp_path, capsys):
    """Body mode checks the person's face where it is seen from the front (dlib's descriptor on
    BlazePose's face points): the other person's photo is flagged or left out, the subject's are not."""
    folder = tmp_path / "fronts"
    folder.mkdir()
    for path in sorted((samples / "body_standing").glob("*_front_*")):
        shutil.copy(path, folder / path.name)
    other = sorted((samples / "body_other").glob("*_front_*"))[0]
    shutil.copy(other, folder / "IMG_1935_front_.JPG")  # dated among them by name
    code, rows, err = run(capsys, folder, "--once", "--json", "--out", tmp_path / "fronts.mp4")
    assert code == 0, err
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    stranger = by_name.pop("IMG_1935_front_.JPG")
    assert all(r["side"] == "both" and r["identity_distance"] < 0.4 for r in by_name.values()), by_name
    assert stranger["identity_distance"] > 0.5
    assert stranger["status"] == "stranger" or "maybe another person" in stranger["unsure"], stranger
