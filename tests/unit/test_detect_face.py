"""Real MTCNN (its weights ship inside facenet-pytorch) on real photos."""
import numpy as np
import pytest
from PIL import Image

from alignimation_tui.detect.face import FaceDetector
from alignimation_tui.detect.facing import facing_scores, is_turned
from alignimation_tui.config import Config
from alignimation_tui.models import load_face_detector
from alignimation_tui.photos import open_photo
from tests.conftest import astronaut


@pytest.fixture(scope="module")
def detector():
    d = Config().detect
    return FaceDetector(load_face_detector("cpu", d.min_face_size, d.thresholds), batch_size=4)


def test_astronaut_face_and_landmarks(tmp_path, detector):
    path = tmp_path / "a.png"
    Image.fromarray(astronaut()).save(path)
    (det,) = detector.detect([open_photo(path)])
    assert (det.width, det.height) == (512, 512)
    assert len(det.faces) == 1 and det.faces[0].prob > 0.99
    le, re, nose, ml, mr = det.faces[0].landmarks
    assert 195 < le[0] < 215 and 237 < re[0] < 257 and 92 < le[1] < 112  # her eyes
    assert le[0] < nose[0] < re[0] and nose[1] < ml[1]


def test_reduced_decode_maps_back_to_original_pixels(tmp_path, detector):
    big = Image.fromarray(astronaut()).resize((2048, 2048), Image.Resampling.BICUBIC)
    path = tmp_path / "big.jpg"
    big.save(path, quality=95)
    small_first, = detector.detect([open_photo(path, max_side=512)])
    full, = detector.detect([open_photo(path)])
    a = np.array(small_first.faces[0].landmarks)
    b = np.array(full.faces[0].landmarks)
    assert np.abs(a - b).max() < 2048 * 0.01


def test_batch_equals_one_by_one(tmp_path, detector):
    imgs = [Image.fromarray(astronaut()), Image.fromarray(astronaut()).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    paths = []
    for i, img in enumerate(imgs):
        paths.append(tmp_path / f"{i}.png")
        img.save(paths[-1])
    photos = [open_photo(p) for p in paths]
    together = detector.detect(photos)
    alone = [detector.detect([p])[0] for p in photos]
    for t, a in zip(together, alone):
        np.testing.assert_allclose(np.array(t.faces[0].landmarks), np.array(a.faces[0].landmarks), atol=1e-3)


def test_no_face_in_a_plain_picture(tmp_path, detector):
    path = tmp_path / "wall.jpg"
    Image.new("RGB", (400, 300), (120, 130, 140)).save(path)
    assert detector.detect([open_photo(path)])[0].faces == ()


@pytest.mark.parametrize("folder", ["faces_serena", "faces_jerry"])
def test_default_facing_rule_keeps_ordinary_photos(samples, detector, folder):
    f = Config().facing
    photos = [open_photo(p, max_side=1024) for p in sorted((samples / folder).glob("*.jpg"))]
    dets = detector.detect(photos)
    with_face = [d for d in dets if d.faces]
    assert len(with_face) >= 0.95 * len(photos)
    kept = [d for d in with_face
            if not is_turned(facing_scores(d.faces[0].landmarks), f.max_yaw_deg, f.min_eye_ratio, f.min_mouth_ratio)]
    assert len(kept) >= 0.8 * len(photos)

    def original_rule(lm):
        lm = np.asarray(lm)
        sq = lambda i: np.sum((lm[i] - lm[2]) ** 2)  # noqa: E731
        return min(sq(0), sq(1)) / max(sq(0), sq(1)) > 0.7 and min(sq(3), sq(4)) / max(sq(3), sq(4)) > 0.7
    # The original recipe throws away far more of the same ordinary photos.
    assert sum(original_rule(d.faces[0].landmarks) for d in with_face) < 0.7 * len(kept)


def test_memory_is_given_back_once_enough_pixels_were_detected(tmp_path, monkeypatch, detector):
    """A trim after every batch of two phone photos (0.76 MP each as detection decodes them), as
    ever; after small web photos, once their pixels add up to as much."""
    from alignimation_tui.detect import face as face_mod

    trims = []
    monkeypatch.setattr(face_mod, "_malloc_trim", trims.append)
    monkeypatch.setattr(face_mod, "_untrimmed", 0)
    phone = 1008 * 756
    face_mod.release_freed_memory(2 * phone)
    assert len(trims) == 1
    for _ in range(14):  # 300x330 web photos
        face_mod.release_freed_memory(100_000)
    assert len(trims) == 1
    face_mod.release_freed_memory(100_000)
    assert len(trims) == 2
    face_mod.release_freed_memory()  # asked for now
    assert len(trims) == 3
    # the detector tells it the pixels it detected
    from alignimation_tui.photos import open_photo
    from tests.conftest import similarity, warped_astronaut

    path = tmp_path / "a.jpg"
    warped_astronaut(similarity(0, 1.0, 64, 60)).save(path)
    photo = open_photo(path, max_side=1024)
    monkeypatch.setattr(face_mod, "_untrimmed", 0)
    detector.detect([photo, photo])
    w, h = photo.image.size
    assert face_mod._untrimmed == (2 * w * h if 2 * w * h < face_mod.TRIM_EVERY_PIXELS else 0)
