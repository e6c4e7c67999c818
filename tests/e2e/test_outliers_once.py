"""The gross-misregistration guard end to end, with the real MTCNN: the demo's photos, a mirrored
copy of one (an ordinary photo: kept), and the failures a wrong fit makes reproduced in the cached
detections (the second pass's stored landmarks), as MTCNN makes them: on a profile the eyes land
close together on one side of the face (a weekly side-view series registered at 4.77x where the
rest were 2.5-2.9x, turned 22°); on a half-face crop the hidden eye lands next to the visible one
(MTCNN on the astronaut cut at the nose: 0.71 of the eye distance); the eyes' labels swapped (a
mirrored labelling: the fit turns the face upside down). Each is left out of the render with its
reason, in the --json row and the summary; accepting one puts it back; no ordinary photo is left
out. One eye off by 0.4 of the distance shows one doubt alone (the residual), as a head turned 30°
does: it is flagged and kept."""
import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageOps

from alignimation_tui.config import load_config
from alignimation_tui.demo import PHOTOS, write_demo
from alignimation_tui.domain import Verdict
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.store import Store
from tests.e2e.test_once import run


def profile(lm):
    mid, half = (lm[0] + lm[1]) / 2, (lm[1] - lm[0]) / 2 * 0.57
    c, a = mid + (lm[1] - lm[0]) * 0.3, 0.38  # shifted towards one side, turned 22°
    half = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ half
    lm[0], lm[1] = c - half, c + half
    return lm


def half_face(lm):
    lm[1] = lm[0] + (lm[1] - lm[0]) * 0.71
    return lm


def eye_off(lm):
    lm[1] = lm[1] + [0.0, -0.4 * np.hypot(*(lm[1] - lm[0]))]
    return lm


def swapped(lm):
    lm[[0, 1]], lm[[3, 4]] = lm[[1, 0]], lm[[4, 3]]
    return lm


BROKEN = {"week05.jpg": (profile, "x the median size"), "week08.jpg": (half_face, "x the median size"),
          "week11.jpg": (swapped, "turned 1")}
# One doubt alone, which a head turned 30° also gives (the nose off the eyes' line): flagged, kept.
UNSURE = {"week10.jpg": (eye_off, "landmark fit residual")}


def test_wrong_fits_are_left_out_with_their_reason_and_accepting_puts_one_back(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "demo"
    write_demo(folder)
    ImageOps.mirror(Image.open(folder / "week02.jpg")).save(folder / "week02-mirrored.jpg", quality=92)
    code, rows, err = run(capsys, folder, "--once", "--json", "--device", "cpu")
    assert code == 0, err
    assert {r["status"] for r in rows if not r["path"].endswith("no-face.jpg")} == {"aligned"}, rows

    pipeline = Pipeline(folder, load_config(None))  # perturb the stored landmarks of four photos
    pipeline.scan()
    for r in pipeline.results.values():
        if r.frame.path.name in {**BROKEN, **UNSURE}:
            key = f"landmarks:{r.frame.hash}:{pipeline.mode.landmarks_fp}"
            stored = pipeline.store.get_array(key).copy()
            index = max(range(len(stored)), key=lambda i: r.detection.faces[i].prob)
            stored[index] = {**BROKEN, **UNSURE}[r.frame.path.name][0](stored[index])
            pipeline.store.put_array(key, stored)
    pipeline.close()

    code, rows, err = run(capsys, folder, "--once", "--json", "--device", "cpu")
    assert code == 0, err
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    for name, (_, reason) in BROKEN.items():
        assert by_name[name]["status"] == "outlier" and reason in by_name[name]["outlier"], by_name[name]
        assert f"outlier    {name}:" in err
    for name, (_, reason) in UNSURE.items():
        assert by_name[name]["status"] == "aligned" and reason in by_name[name]["unsure"], by_name[name]
        assert by_name[name]["outlier"] is None
    ordinary = {n for n in by_name if n not in BROKEN and n != "no-face.jpg"}
    assert ordinary == {p.name for p in PHOTOS if p.name not in BROKEN} | {"week02-mirrored.jpg"}
    assert {by_name[n]["status"] for n in ordinary} == {"aligned"}
    assert all(by_name[n]["outlier"] is None for n in ordinary)
    assert f"({len(ordinary)} photos" in " ".join(err.split())

    store = Store(folder)
    store.decisions.set_verdict(by_name["week05.jpg"]["hash"], Verdict.ACCEPTED)
    store.close()
    code, rows, err = run(capsys, folder, "--once", "--json", "--device", "cpu", "--out", tmp_path / "a.mp4")
    assert code == 0, err
    row = next(r for r in rows if r["path"].endswith("week05.jpg"))
    assert row["status"] == "outlier" and row["verdict"] == "accepted"
    assert f"({len(ordinary) + 1} photos" in " ".join(err.split())
    reader = imageio.get_reader(tmp_path / "a.mp4")
    try:
        assert reader.count_frames() >= len(ordinary) + 1
    finally:
        reader.close()
