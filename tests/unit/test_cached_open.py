"""Opening a folder seen before: what is read from the store is made once, and nothing is asked
that the open does not need (a library of 10,000 photos)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from alignimation_tui import pipeline as pipeline_module
from alignimation_tui.config import Config
from alignimation_tui.detect.landmarks import with_landmarks
from alignimation_tui.domain import FaceDetection
from alignimation_tui.pipeline import Pipeline


def test_a_stored_detection_is_made_once_with_its_refined_landmarks():
    """``FaceDetection.from_json(stored, refined)`` is the stored detection with the second pass's
    landmarks, as ``with_landmarks`` makes it from the stored one (its faces made once, not twice)."""
    stored = {"width": 640, "height": 480, "faces": [
        {"box": [180.5, 62, 268.1, 174.1], "prob": 0.99, "landmarks": [[203, 101], [246, 104], [223, 129],
                                                                        [200, 140], [244, 142]]},
        {"box": [10, 20, 50, 70], "prob": 0.91, "landmarks": [[20, 30], [40, 30], [30, 45], [22, 55], [38, 55]]}]}
    refined = np.random.default_rng(4).normal(100, 30, (2, 5, 2))
    made = FaceDetection.from_json(stored, refined.tolist())
    assert made == with_landmarks(FaceDetection.from_json(stored), refined)
    assert all(type(v) is float for f in made.faces for v in (*f.box, f.prob, *(c for p in f.landmarks for c in p)))


def test_a_kept_mode_is_used_without_listing_the_folder(tmp_path, monkeypatch):
    """``mode = "auto"`` looks at the photos once and keeps its choice; a pipeline opened again on
    the folder takes the kept choice without listing the folder (the scan lists it: a library
    was listed twice)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 48), (60 * i, 90, 120)).save(folder / f"p{i}.jpg")
    config = replace(Config(), store=replace(Config().store, cache_dir=str(tmp_path / "cache"),
                                             data_dir=str(tmp_path / "data")))
    first = Pipeline(folder, config)
    first.close()
    listed: list[str] = []
    real = pipeline_module.list_photos
    monkeypatch.setattr(pipeline_module, "list_photos", lambda *a, **k: listed.append("listed") or real(*a, **k))
    again = Pipeline(folder, config)
    assert again.mode.name == first.mode.name and listed == []
    again.close()
