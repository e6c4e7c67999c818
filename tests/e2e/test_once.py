"""End to end: `alignimation-tui DIR --once` with real MTCNN on warped copies of a real photo."""
import json
import re
from datetime import datetime, timedelta

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from alignimation_tui.cli import main
from alignimation_tui.domain import Verdict
from alignimation_tui.register import apply
from alignimation_tui.store import Store
from tests.conftest import save_with_date, similarity, warped_astronaut

# Points on the astronaut's face (her pixels): eyes, nose, mouth, chin, brow.
FACE_POINTS = np.array([[205, 102], [247, 104], [225, 129], [202, 139], [245, 142], [224, 168], [226, 85.0]])
WARPS = [(0, 1.0, 0, 0), (12, 0.9, 30, -20), (-14, 1.15, -35, 10), (7, 0.82, 40, 30),
         (-6, 1.2, -20, -25), (15, 1.05, 10, 35), (-15, 0.95, -40, 0), (3, 1.1, 25, -10)]
START = datetime(2024, 1, 1, 9, 0, 0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """8 warped astronauts (dated a week apart), a broken file and a photo with no face."""
    root = tmp_path_factory.mktemp("photos")
    truths = {}
    for i, (angle, scale, tx, ty) in enumerate(WARPS):
        m = similarity(angle, scale, tx + 64, ty + 60)  # face well inside the frame
        path = save_with_date(warped_astronaut(m), root / f"week{i:02d}.jpg", START + timedelta(weeks=i))
        truths[path.name] = m
    (root / "broken.jpg").write_bytes(b"this is not a photo at all")
    rng = np.random.default_rng(0)
    wall = Image.fromarray(rng.integers(100, 140, (480, 640, 3), dtype=np.uint8))
    save_with_date(wall, root / "wall.jpg", START + timedelta(days=3))
    return root, truths


def run(capsys, *args):
    code = main([*map(str, args)])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines() if line.strip()], captured.err


def test_once_end_to_end(folder, tmp_path, capsys, count_detections):
    root, truths = folder
    out = tmp_path / "out.mp4"
    code, rows, err = run(capsys, root, "--once", "--json", "--out", out, "--device", "cpu")
    assert code == 0, err
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert set(by_name) == set(truths) | {"broken.jpg", "wall.jpg"}

    for row in rows:  # the JSON shape
        assert {"path", "hash", "date", "status", "verdict", "scores", "residual_pct", "error"} <= set(row)
    assert by_name["broken.jpg"]["status"] == "failed" and "not an image" in by_name["broken.jpg"]["error"]
    assert by_name["wall.jpg"]["status"] == "no_subject" and by_name["wall.jpg"]["error"] == "no face found"
    assert "identity matching is off" not in err  # the face descriptor ships with the install
    # where the time went, in one plain line: each stage the run met, named with its seconds
    line = next(ln for ln in err.splitlines() if ln.startswith("time: "))
    assert re.search(r"since the process started — start [\d.]+, .*detection [\d.]+, "
                     r"landmarks [\d.]+, identity [\d.]+, .*render [\d.]+$", line), line
    assert all(r["identity_distance"] < 0.6 for r in rows if r["status"] == "aligned")  # one person

    # The recovered transforms undo the warps: every face point lands where the reference's does.
    ref = by_name["week00.jpg"]
    canvas_h = 1080 * 480 / 640
    expected = apply(np.asarray(ref["transform"]) @ truths["week00.jpg"], FACE_POINTS)
    for name, truth in truths.items():
        row = by_name[name]
        assert row["status"] == "aligned" and row["verdict"] == "auto"
        assert set(row["scores"]) == {"eye_ratio", "mouth_ratio", "yaw_deg"}
        got = apply(np.asarray(row["transform"]) @ truth, FACE_POINTS)
        err_pct = np.linalg.norm(got - expected, axis=1).max() / canvas_h * 100
        assert err_pct < 1.5, (name, err_pct)
        assert row["residual_pct"] < 1.5

    reader = imageio.get_reader(out)
    assert reader.count_frames() == 8
    assert reader.get_data(0).shape == (1080, 1080, 3)  # the default framing: square, face-centred
    reader.close()
    assert sum(count_detections) == 9  # 8 astronauts and the wall; the broken file never reaches MTCNN

    # Second run: everything comes from the cache, MTCNN is not called at all.
    count_detections.clear()
    code, rows2, _ = run(capsys, root, "--once", "--json", "--out", out)
    assert code == 0 and count_detections == []
    assert [(r["hash"], r["status"], r["transform"]) for r in rows2] == [(r["hash"], r["status"], r["transform"])
                                                                          for r in rows]


def test_verdicts_and_gif(folder, tmp_path, capsys):
    root, truths = folder
    code, rows, _ = run(capsys, root, "--once", "--json", "--out", tmp_path / "a.mp4")
    hashes = {r["path"].rsplit("/", 1)[-1]: r["hash"] for r in rows}
    store = Store(root)
    store.decisions.set_verdict(hashes["week03.jpg"], Verdict.REJECTED)
    store.close()
    out = tmp_path / "small.gif"
    code, rows, err = run(capsys, root, "--once", "--json", "--out", out, "--frames", tmp_path / "frames")
    assert code == 0, err
    assert {r["verdict"] for r in rows if r["path"].endswith("week03.jpg")} == {"rejected"}
    with Image.open(out) as gif:
        assert gif.n_frames == 7 and gif.width <= 480
    assert len(list((tmp_path / "frames").glob("*.jpg"))) == 7


def test_rename_keeps_the_cache(folder, tmp_path, capsys, count_detections):
    root, _ = folder
    _, before, _ = run(capsys, root, "--once", "--json", "--out", tmp_path / "a.mp4")
    old = next(r for r in before if r["path"].endswith("week05.jpg"))
    store = Store(root)
    store.decisions.set_verdict(old["hash"], Verdict.ACCEPTED)
    store.close()
    count_detections.clear()
    # The same photo under a new name in the same folder: the cache and the verdict follow the content.
    (root / "week05.jpg").rename(root / "IMG_renamed.jpg")
    try:
        code, rows, _ = run(capsys, root, "--once", "--json", "--out", tmp_path / "a.mp4")
    finally:
        (root / "IMG_renamed.jpg").rename(root / "week05.jpg")
        store = Store(root)
        store.decisions.set_verdict(old["hash"], Verdict.AUTO)
        store.close()
    assert code == 0 and count_detections == []
    new = next(r for r in rows if r["path"].endswith("IMG_renamed.jpg"))
    assert not any(r["path"].endswith("week05.jpg") for r in rows)
    assert new["hash"] == old["hash"] and new["verdict"] == "accepted"
    assert new["transform"] == old["transform"] and new["status"] == "aligned"


def test_nothing_aligned_exits_1(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    Image.new("RGB", (200, 150), "gray").save(tmp_path / "p" / "wall.jpg")
    code, _, err = run(capsys, tmp_path / "p", "--once", "--out", tmp_path / "o.mp4")
    assert code == 1 and "nothing could be aligned" in err
    assert not (tmp_path / "o.mp4").exists()


def test_refuses_to_overwrite_a_photo(folder, capsys):
    root, _ = folder
    before = (root / "week01.jpg").read_bytes()
    code, _, err = run(capsys, root, "--once", "--out", root / "week01.jpg")
    assert code == 2 and "refusing" in err
    assert (root / "week01.jpg").read_bytes() == before


def test_pin_reregisters_from_cache_and_new_photos_keep_the_reference(tmp_path, capsys, count_detections):
    root = tmp_path / "p"
    root.mkdir()
    for i, (angle, scale, tx, ty) in enumerate(WARPS[:4]):
        save_with_date(warped_astronaut(similarity(angle, scale, tx + 64, ty + 60)), root / f"w{i}.jpg",
                       START + timedelta(weeks=i))
    out = tmp_path / "o.mp4"
    code, first, _ = run(capsys, root, "--once", "--json", "--out", out)
    assert code == 0 and sum(count_detections) == 4

    # Pin the last photo: every frame is registered again, from cached detections only.
    store = Store(root)
    store.decisions.pin_reference(first[-1]["hash"])
    store.close()
    count_detections.clear()
    code, pinned, err = run(capsys, root, "--once", "--json", "--out", out)
    assert code == 0 and count_detections == []
    assert "reference: w3.jpg" in err
    assert np.allclose(pinned[-1]["transform"], [[1080 / 640, 0, 0], [0, 1080 / 640, 0], [0, 0, 1]], atol=1e-3)
    assert pinned[0]["transform"] != first[0]["transform"]

    # Unpin; then a photo dated before all others arrives: the stored reference stays.
    store = Store(root)
    store.decisions.pin_reference(None)
    store.close()
    run(capsys, root, "--once", "--out", out)
    save_with_date(warped_astronaut(similarity(*WARPS[5][:2], WARPS[5][2] + 64, WARPS[5][3] + 60)),
                   root / "older.jpg", START - timedelta(weeks=1))
    count_detections.clear()
    code, rows, err = run(capsys, root, "--once", "--json", "--out", out)
    assert code == 0 and sum(count_detections) == 1  # only the new photo is detected
    assert "reference: w0.jpg" in err
    assert [r["transform"] for r in rows[1:]] == [r["transform"] for r in first]


def test_rescan_after_rename_is_not_a_duplicate(tmp_path):
    from alignimation_tui.config import Config
    from alignimation_tui.pipeline import Pipeline

    root = tmp_path / "p"
    root.mkdir()
    Image.new("RGB", (64, 48), "red").save(root / "a.jpg")
    Image.new("RGB", (64, 48), "red").save(root / "copy.jpg")  # the same bytes under two names
    p = Pipeline(root, Config())
    assert len(p.scan()) == 1 and any("same photo" in n for n in p.notices)
    p.notices.clear()
    (root / "copy.jpg").unlink()
    (root / "a.jpg").rename(root / "b.jpg")
    (result,) = p.scan()
    assert result.frame.path.name == "b.jpg" and p.notices == []
    p.close()
