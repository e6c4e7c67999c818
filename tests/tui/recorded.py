"""Recorded detections, so the TUI tests about the UI run without loading MTCNN.

The test photos are the astronaut portrait placed by a known similarity (``tests.conftest``). Its
face was detected once by the real pipeline (MTCNN and the second landmark pass, on the CPU, in a
640x480 photo that holds the portrait shifted by (64, 60)) and is stored below in the portrait's own
pixels; a photo's detection is that face carried through the photo's similarity. Photos made with
``recorded_photo`` are known by their content; any other photo has no face. The real detector's
tests are in tests/unit and tests/e2e; tests/tui/test_demo_app.py still runs it through the app.

``recorded_pipeline`` is the app's pipeline factory (``AlignimationApp(..., pipeline=...)``): the
real pipeline and face mode (decoding, the cache, choosing the face, facing scores, registration,
selection), with only the detection step read from the record. ``DETECTED`` counts the photos it
detects, as ``count_detections`` does for the real detector.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np

from alignimation_tui.domain import Face, FaceDetection, FrameResult, FrameStatus
from alignimation_tui.modes.face import DETECT_DECODE_SLACK, FaceMode
from alignimation_tui.photos import open_photo
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.scan import content_hash

# The astronaut's face, recorded (see the module's note), in the portrait's 512x512 pixels.
ASTRONAUT_FACE = Face(box=(180.547, 62.614, 268.078, 174.102), prob=0.99999,
                      landmarks=((203.651, 101.824), (246.100, 104.670), (223.441, 129.288),
                                 (200.964, 140.292), (244.529, 142.866)))

_placed: dict[str, np.ndarray] = {}  # content hash -> portrait pixels -> photo pixels
DETECTED: list[int] = []  # photos per detection batch
# Photo name -> an event its detection waits for (set by a test to hold a photo in `detecting`);
# DETECTING holds the names being detected now.
HOLD: dict[str, threading.Event] = {}
DETECTING: set[str] = set()


def recorded_photo(path: Path, matrix: np.ndarray) -> Path:
    """Remember that the photo just written at ``path`` holds the portrait placed by ``matrix``."""
    _placed[content_hash(path)] = np.asarray(matrix, np.float64)
    return path


def placed_face(matrix: np.ndarray) -> Face:
    m = np.asarray(matrix, np.float64)
    pts = np.c_[np.asarray(ASTRONAUT_FACE.landmarks), np.ones(5)] @ m.T
    x0, y0, x1, y1 = ASTRONAUT_FACE.box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]]) @ m.T
    (bx0, by0), (bx1, by1) = corners[:, :2].min(0), corners[:, :2].max(0)
    return Face((float(bx0), float(by0), float(bx1), float(by1)), ASTRONAUT_FACE.prob,
                tuple((float(x), float(y)) for x, y in pts[:, :2]))


class RecordedFaceMode(FaceMode):
    """Face mode whose detection step reads the record instead of running MTCNN."""

    def detector(self):
        raise AssertionError("a test on recorded detections must not load MTCNN")

    def warm_up(self) -> None:
        pass

    def embedder(self):
        return None

    @property
    def identity_on(self) -> bool:  # the record holds no face descriptors: identity matching off
        return False

    def detect(self, todo: list[FrameResult], progress, cancel) -> int:
        p = self.ctx
        d = p.config.detect

        def decode(r: FrameResult):
            return open_photo(r.frame.path, max_side=d.size, max_pixels=p.config.scan.max_pixels,
                              slack=DETECT_DECODE_SLACK)

        def flush(batch) -> None:
            DETECTED.append(len(batch))
            names = {r.frame.path.name for r, _ in batch}
            DETECTING.update(names)
            try:
                for name in names & set(HOLD):
                    HOLD[name].wait(60)
                detected(batch)
            finally:
                DETECTING.difference_update(names)

        def detected(batch) -> None:
            for r, photo in batch:
                m = _placed.get(r.frame.hash)
                faces = () if m is None else (placed_face(m),)
                raw = FaceDetection(photo.width, photo.height, faces)
                p.store.put_json(f"faces:{r.frame.hash}:{self.detect_fp}", raw.to_json())
                if self.landmark_settings.rounds > 0 and faces:
                    p.store.put_array(f"landmarks:{r.frame.hash}:{self.landmarks_fp}",
                                      np.array([f.landmarks for f in faces], np.float64))
                r.detection = raw
                self.measure_decoded(r, photo)  # quality and borders, as the real detection step
                r.status, r.error = FrameStatus.QUEUED, None
                progress(r)

        return p.decode_in_batches(todo, decode, 8, flush, progress, cancel)


def recorded_pipeline(folder: Path, config) -> Pipeline:
    """The app's pipeline, detecting from the record."""
    pipeline = Pipeline(folder, replace(config, mode="face") if config.mode == "auto" else config)
    pipeline.mode = RecordedFaceMode(pipeline)
    return pipeline
