"""``mode = "auto"``'s look at a new folder runs MTCNN on a few of its photos; face mode then takes
those detections instead of detecting the photos again (``Pipeline.looked_faces``), only where
its own decode holds the same pixels: what is stored is exactly what detecting them gives."""
from __future__ import annotations

import shutil

import re

import numpy as np

from alignimation_tui import headless
from alignimation_tui.config import Config
from alignimation_tui.detect.face import FaceDetector, same_pixels
from alignimation_tui.models import load_face_detector
from alignimation_tui.modes.auto import DECODE_SIDE
from alignimation_tui.photos import open_photo
from alignimation_tui.pipeline import Pipeline


def _stored(p: Pipeline) -> dict:
    """Per photo name: MTCNN's stored detection, the second pass's landmarks and the descriptors."""
    mode = p.mode
    out = {}
    for r in p.results.values():
        h = r.frame.hash
        out[r.frame.path.name] = (p.store.get_json(f"faces:{h}:{mode.detect_fp}"),
                                  p.store.get_array(f"landmarks:{h}:{mode.landmarks_fp}"),
                                  p.store.get_array(f"embed:{h}:{mode.embed_fp}"))
    return out


def test_the_looks_detections_are_taken_and_are_what_detection_gives(samples, tmp_path, monkeypatch):
    photos = sorted((samples / "faces_jerry").glob("*.jpg"))[:12]
    for name in ("auto", "face"):
        (tmp_path / name).mkdir()
        for path in photos:
            shutil.copy(path, tmp_path / name / path.name)
    passes: list = []  # every photo MTCNN sees, the look's included
    original = FaceDetector.detect_chunk
    monkeypatch.setattr(FaceDetector, "detect_chunk",
                        lambda self, chunk: passes.extend(chunk) or original(self, chunk))

    stored = {}
    for name in ("auto", "face"):
        passes.clear()
        p = Pipeline(tmp_path / name, Config(device="cpu", mode=name))
        try:
            looked = len(passes)
            if name == "auto":
                assert p.mode.name == "face" and looked >= 5 and len(p._looked) == looked
            p.process(p.scan())
            assert p._looked == {}  # let go once detection ran
            # each photo through MTCNN once: the look's not again
            assert len(passes) == len(photos), (name, looked, len(passes))
            assert p.looked_taken == (looked if name == "auto" else 0)
            line = headless.time_line(p, 0.2, 1.0)
            said = re.search(r"choosing the mode \d+\.\d\d \(faces found there in (\d+) photos, kept\)", line)
            assert (said is not None and int(said.group(1)) == looked) if name == "auto" else said is None, line
            stored[name] = _stored(p)
        finally:
            p.close()
    assert stored["auto"].keys() == stored["face"].keys() and len(stored["auto"]) == len(photos)
    for photo, (faces, landmarks, embed) in stored["face"].items():
        got = stored["auto"][photo]
        assert got[0] == faces, photo
        np.testing.assert_array_equal(got[1], landmarks)
        np.testing.assert_array_equal(got[2], embed)


def test_a_look_at_other_pixels_or_threads_is_not_taken(samples, tmp_path):
    import cv2

    path = sorted((samples / "faces_jerry").glob("*.jpg"))[0]
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(path, folder / path.name)
    d = Config().detect
    detector = FaceDetector(load_face_detector("cpu", d.min_face_size, d.thresholds), batch_size=1, workers=1)
    p = Pipeline(folder, Config(device="cpu", mode="face"))
    try:
        target = folder / path.name
        full = open_photo(target, max_side=d.size, slack=0.05)
        found = detector.detect([full])[0]
        # a smaller decode (a large photo: the look decodes it at DECODE_SIDE), the same photo otherwise
        small = open_photo(target, max_side=full.image.width // 2)
        assert not same_pixels(small, full) and same_pixels(open_photo(target, max_side=DECODE_SIDE), full)
        p._looked_at(target, small, found)
        assert p.looked_faces(target, full) is None
        assert p.looked_faces(target, full) is None  # given once (gone when not taken, too)
        p._looked_at(target, full, found)
        p._looked[target] = (*p._looked[target][:2], cv2.getNumThreads() + 1)  # looked with other threads
        assert p.looked_faces(target, full) is None
        p._looked_at(target, full, found)
        assert p.looked_faces(target, full) is found
    finally:
        p.close()
