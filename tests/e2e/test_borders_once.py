"""Padding end to end, with the real MTCNN: a photo's flat border is found at the detection decode,
stored under its own key kind (a cache made before it keeps its detections: only a decode, no
detection), and the blurred fill replaces it in the render."""
from datetime import datetime, timedelta

import numpy as np
from PIL import Image

from alignimation_tui.config import Config, StoreConfig
from alignimation_tui.pipeline import Pipeline
from tests.conftest import save_with_date, similarity, warped_astronaut

PAD = 24  # rows of black scan padding at the top of every photo


def padded_folder(root):
    root.mkdir()
    for i, (angle, scale, tx, ty) in enumerate([(0, 1.0, 0, 0), (8, 0.9, 20, -10), (-6, 1.1, -15, 10)]):
        img = np.asarray(warped_astronaut(similarity(angle, scale, tx + 64, ty + 60))).copy()
        img[:PAD] = 0
        save_with_date(Image.fromarray(img), root / f"week{i}.jpg", datetime(2024, 1, 1) + timedelta(weeks=i))
    return root


def test_borders_are_found_once_stored_apart_and_filled(tmp_path, count_detections):
    folder = padded_folder(tmp_path / "photos")
    config = Config(device="cpu", store=StoreConfig(cache_dir=str(tmp_path / "cache"), data_dir=str(tmp_path / "data")))
    p = Pipeline(folder, config)
    p.scan()
    p.process()
    assert sum(count_detections) == 3
    for r in p.results.values():
        assert r.picture is not None and PAD <= r.picture.box[1] <= PAD + 4 and r.picture.box[3] == 480
        p.store.cache.delete(p.mode._picture_key(r.frame.hash))  # as a cache made before borders were found
    p.close()

    p = Pipeline(folder, config)
    p.scan()
    assert all(r.detection is not None and r.picture is None and p.needs_detection(r) for r in p.results.values())
    p.process()
    assert sum(count_detections) == 3  # decoded again for the borders, not detected again
    assert all(r.picture is not None and r.picture.box[1] >= PAD for r in p.results.values())
    frames = tmp_path / "frames"
    p.render(tmp_path / "out.mp4", frames)
    p.close()
    for f in frames.glob("*.jpg"):
        a = np.asarray(Image.open(f).convert("L"), np.float64)
        h = a.shape[0]
        flat_black = (a.max(axis=1) <= 24) & (a.std(axis=1) <= 3)
        assert not flat_black[: int(0.12 * h)].any() and not flat_black[int(0.88 * h):].any(), f.name
