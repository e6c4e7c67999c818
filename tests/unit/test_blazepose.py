"""BlazePose, the body model that ships with the package, run for real on the real sample photos:
what it finds, the side it chooses, its mask, and which folders ``mode = "auto"`` sends to body mode."""
import math

import numpy as np
import pytest

from alignimation_tui.detect.blazepose import MODEL_DIR, POINT_NAMES, BlazePose, Region, ssd_anchors
from alignimation_tui.detect.body import KEYPOINT_NAMES, BodyDetector, choose_side
from alignimation_tui.modes.auto import decide, sample
from alignimation_tui.photos import open_photo


@pytest.fixture(scope="module")
def detector():
    return BodyDetector(mask_size=256)


def detect(detector, path):
    photo = open_photo(path, max_side=800, resize_within=1.3)
    return detector.detect_one(photo)


def test_weights_ship_with_the_package_with_their_licence():
    for name in ("pose_detection.tflite", "pose_landmark_full.tflite", "LICENSE"):
        assert (MODEL_DIR / name).is_file(), name
    assert "Apache License" in (MODEL_DIR / "LICENSE").read_text()


def test_anchors_are_mediapipes_layout():
    a = ssd_anchors()
    assert a.shape == (2254, 2)
    # stride 8: a 28x28 grid, two anchors a cell, row by row
    assert np.allclose(a[0], [0.5 / 28, 0.5 / 28]) and np.allclose(a[1], a[0]) and np.allclose(a[2], [1.5 / 28, 0.5 / 28])
    # the last three layers (stride 32) share a 7x7 grid, six anchors a cell
    assert np.allclose(a[-6:], [6.5 / 7, 6.5 / 7])


def test_region_maps_the_crop_onto_the_photo():
    upright = Region.from_points(np.array([100.0, 200.0]), np.array([100.0, 100.0]))  # edge straight above
    assert abs(upright.angle) < 1e-9 and math.isclose(upright.size, 250.0)
    m = upright.to_photo(256)
    assert np.allclose(m @ [128, 128, 1], [100, 200]) and np.allclose(m @ [0, 0, 1], [-25, 75])
    lying = Region.from_points(np.array([100.0, 200.0]), np.array([200.0, 200.0]))  # head to the right
    top_of_crop = lying.to_photo(256) @ [128, 0, 1]
    assert top_of_crop[0] > 100 and abs(top_of_crop[1] - 200) < 1e-6  # the crop's top is the body's head


def test_side_views_found_with_the_near_side_and_a_mask(detector, samples):
    sides = sorted((samples / "body_standing").glob("*_side_*")) + sorted((samples / "body_other").glob("*_side_*"))
    assert len(sides) >= 4
    chosen = set()
    for path in sides:
        det, masks = detect(detector, path)
        assert len(det.persons) >= 1, path.name
        person = det.persons[0]
        kp = {n: np.asarray(person.keypoints[i]) for i, n in enumerate(KEYPOINT_NAMES)}
        side, why = choose_side(person, ["ear", "shoulder", "hip"])
        assert side in ("left", "right") and "nearer" in why, (path.name, why)
        chosen.add(side)
        # ear above shoulder above hip above knee above ankle, on the chosen side, in a standing photo
        ys = [kp[f"{side}_{part}"][1] for part in ("ear", "shoulder", "hip", "knee", "ankle")]
        assert ys == sorted(ys), (path.name, ys)
        # the body fills most of the photo's height; the mask covers its points and little else
        x0, y0, x1, y1 = person.box
        assert (y1 - y0) / det.height > 0.6 and (x1 - x0) / det.width < 0.6
        mask = masks[person.mask_index]
        for part in ("shoulder", "hip"):
            x, y = kp[f"{side}_{part}"]
            assert mask[int(y / det.height * mask.shape[0]), int(x / det.width * mask.shape[1])] > 128
        assert 0.05 < (mask > 128).mean() < 0.35
        assert all(s >= 2.0 for s in (person.keypoint_scores[KEYPOINT_NAMES.index(f"{side}_{p}")]
                                      for p in ("ear", "shoulder", "hip")))
    assert len(chosen) == 1  # the same person, the same way round: the same side every time


def test_front_views_use_both_sides(detector, samples):
    for path in sorted((samples / "body_standing").glob("*_front_*"))[:3]:
        det, _ = detect(detector, path)
        assert choose_side(det.persons[0], ["ear", "shoulder", "hip"])[0] == "both", path.name


def test_a_turned_photo_is_found_upright(detector, samples, tmp_path):
    """EXIF orientation: a photo stored on its side is detected in its upright pixels."""
    from PIL import Image

    src = sorted((samples / "body_standing").glob("*_side_*"))[0]
    img = Image.open(src).convert("RGB").resize((384, 512))
    stored = img.transpose(Image.Transpose.ROTATE_90)  # stored turned; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "turned.jpg", exif=exif, quality=92)
    img.save(tmp_path / "plain.jpg", quality=92)
    a, _ = detect(detector, tmp_path / "plain.jpg")
    b, _ = detect(detector, tmp_path / "turned.jpg")
    assert (b.width, b.height) == (384, 512)
    hip = KEYPOINT_NAMES.index("left_hip")
    assert np.linalg.norm(np.subtract(a.persons[0].keypoints[hip], b.persons[0].keypoints[hip])) < 0.02 * 512


def test_no_person_in_a_photo_of_nothing(detector, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(100, 140, (480, 640, 3), dtype=np.uint8)).save(tmp_path / "wall.jpg")
    det, masks = detect(detector, tmp_path / "wall.jpg")
    assert det.persons == () and masks.shape[0] == 0


def test_auto_mode_sends_bodies_to_body_and_faces_to_face(samples):
    for folder in ("body_standing", "body_other"):
        choice = decide(sorted((samples / folder).iterdir()), 120_000_000)
        assert choice.mode == "body", (folder, choice)
    for folder in ("faces_jerry", "faces_tony"):
        choice = decide(sorted((samples / folder).iterdir()), 120_000_000)
        assert choice.mode == "face", (folder, choice)
        assert "sampled photos" in choice.reason


def test_auto_mode_knows_a_close_up_by_its_face_without_the_pose_model(samples, monkeypatch):
    """With MTCNN asked first, a folder of close-ups is face mode without BlazePose ever loading;
    whole bodies, whose faces are small, still go to the pose model and to body mode."""
    from alignimation_tui.detect import blazepose
    from alignimation_tui.detect.face import FaceDetector
    from alignimation_tui.modes.auto import too_close_for_a_body
    from alignimation_tui.models import load_face_detector

    detector = FaceDetector(load_face_detector("cpu", 40, (0.6, 0.7, 0.7)), batch_size=1, workers=1)
    asked = []

    def find_faces(photo):
        asked.append(photo)
        return detector.detect([photo])[0]

    for folder in ("body_standing", "body_other"):
        choice = decide(sorted((samples / folder).iterdir()), 120_000_000, find_faces)
        assert choice.mode == "body", (folder, choice)
    monkeypatch.setattr(blazepose, "BlazePose", lambda *a, **k: pytest.fail("the pose model was loaded"))
    for folder in ("faces_jerry", "faces_tony"):
        asked.clear()
        choice = decide(sorted((samples / folder).iterdir()), 120_000_000, find_faces)
        assert choice.mode == "face" and len(asked) >= 5, (folder, choice)
    # the rule itself: a face whose 5.5 heights (3 eye-to-mouth distances each) fit in the photo
    # does not decide; one that cannot fit does
    from alignimation_tui.domain import Face

    face = Face((0, 0, 40, 40), 0.99, ((10, 10), (30, 10), (20, 20), (12, 30), (28, 30)))  # 20 px eyes-mouth
    assert too_close_for_a_body([face], 250) and not too_close_for_a_body([face], 300)
    assert not too_close_for_a_body([], 100)
    doubtful = Face(face.box, 0.8, face.landmarks)
    assert not too_close_for_a_body([doubtful], 250)


def test_sample_spreads_over_the_folder(tmp_path):
    paths = [tmp_path / f"{i:03d}.jpg" for i in range(100)]
    picked = sample(paths, 5)
    assert [p.name for p in picked] == ["000.jpg", "025.jpg", "050.jpg", "074.jpg", "099.jpg"]
    assert sample(paths[:3], 5) == paths[:3]


def test_point_names_put_ears_shoulders_hips_where_blazepose_does():
    assert [POINT_NAMES.index(n) for n in ("left_ear", "right_ear", "left_shoulder", "right_shoulder",
                                           "left_hip", "right_hip")] == [7, 8, 11, 12, 23, 24]


def test_two_threads_share_one_model(samples):
    """The app's worker and a second caller: the model's lock keeps the interpreters to one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    model = BlazePose()
    path = sorted((samples / "body_standing").glob("*_side_*"))[0]
    rgb = open_photo(path, max_side=512).array()
    alone = model.detect(rgb, (64, 48))[0].points
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: model.detect(rgb, (64, 48))[0].points, range(4)))
    for pts in results:
        assert np.allclose(pts[:, :2], alone[:, :2], atol=1e-3)
