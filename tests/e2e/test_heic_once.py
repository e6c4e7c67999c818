"""`--once` on a folder holding an iPhone-style HEIC photo (EXIF date, stored rotated) beside JPEGs:
the HEIC photo is dated from its EXIF and aligned like the others (real MTCNN)."""
from datetime import datetime, timedelta

import numpy as np
from PIL import Image

from alignimation_tui.register import apply
from tests.conftest import save_with_date, similarity, warped_astronaut
from tests.e2e.test_once import FACE_POINTS, run
from tests.unit.test_heic import save_heic

START = datetime(2024, 1, 1, 9, 0, 0)


def test_once_aligns_a_heic_photo_dated_from_its_exif(tmp_path, capsys):
    root = tmp_path / "photos"
    root.mkdir()
    truths = {}
    for i, (angle, scale, tx, ty) in enumerate([(0, 1.0, 0, 0), (10, 0.9, 30, -20), (-8, 1.1, -30, 10)]):
        m = similarity(angle, scale, tx + 64, ty + 60)
        save_with_date(warped_astronaut(m), root / f"week{i}.jpg", START + timedelta(weeks=i))
        truths[f"week{i}.jpg"] = m
    m = similarity(-12, 0.95, 40, 70)
    upright = warped_astronaut(m)  # 640x480 as it should be shown
    # stored as the phone's sensor saw it (turned), with the turn in the HEIF container
    save_heic(upright.transpose(Image.Transpose.ROTATE_90), root / "IMG_4001.HEIC",
              START + timedelta(weeks=3, hours=2), orientation=6)
    truths["IMG_4001.HEIC"] = m

    code, rows, err = run(capsys, root, "--once", "--json", "--out", tmp_path / "out.mp4", "--device", "cpu")
    assert code == 0, err
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    heic = by_name["IMG_4001.HEIC"]
    assert heic["status"] == "aligned", heic
    assert heic["date_source"] == "exif" and heic["date"] == (START + timedelta(weeks=3, hours=2)).isoformat()
    ref = by_name["week0.jpg"]
    expected = apply(np.asarray(ref["transform"]) @ truths["week0.jpg"], FACE_POINTS)
    got = apply(np.asarray(heic["transform"]) @ m, FACE_POINTS)
    iod = np.linalg.norm(expected[1] - expected[0])  # whatever the output framing
    err = np.linalg.norm(got - expected, axis=1).max() / iod
    assert err < 0.15, err  # upright: a 90° error would put the face points a whole face off
    assert (tmp_path / "out.mp4").stat().st_size > 0
