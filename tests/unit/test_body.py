"""Body mode downstream of detection: person choice, side choice, low-confidence keypoints,
registration on person masks, background removal, caching.

These tests need exact truths (where each subject really is), so they feed *recorded* detections —
what the detector stores, built from synthetic photos with known transforms — into the store and
run the real pipeline from there (select, register, render). The real model (BlazePose) runs on
the real sample photos in test_blazepose.py and tests/e2e/test_body_once.py."""
from datetime import datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from alignimation_tui.background import composite, warp_mask
from alignimation_tui.config import Config, ConfigError, RegisterConfig, RenderConfig, load_config
from alignimation_tui.modes.body import BodyConfig
from alignimation_tui.detect.body import (KEYPOINT_NAMES, PersonShape, choose_person, choose_side,
                                          mask_shape, match_cost, person_shape, subject_points, working_mask)
from alignimation_tui.domain import BodyDetection, FrameStatus, Person
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.register import apply
from tests.conftest import save_with_date, similarity

SIZE = (480, 640)  # portrait, like most side-view photos
# The subject in the reference photo (its pixels): head, torso, belly ellipses; ear, shoulder, hip.
BODY = [((240, 130), (42, 52)), ((235, 360), (72, 175)), ((295, 350), (60, 75))]
EAR, SHOULDER, HIP = (236.0, 132.0), (240.0, 235.0), (234.0, 450.0)
SKIN, BACKDROP = (205, 130, 95), (50, 110, 190)
MASK_SIZE = BodyConfig().mask_size


def silhouette(xs, ys, to_ref, ellipses=BODY):
    """Soft silhouette at continuous points (xs, ys) of a photo, through ``to_ref`` into the
    reference subject's pixels."""
    rx = to_ref[0, 0] * xs + to_ref[0, 1] * ys + to_ref[0, 2]
    ry = to_ref[1, 0] * xs + to_ref[1, 1] * ys + to_ref[1, 2]
    m = np.zeros_like(rx)
    for (cx, cy), (ax, ay) in ellipses:
        m = np.maximum(m, np.clip((1 - ((rx - cx) / ax) ** 2 - ((ry - cy) / ay) ** 2) * 8, 0, 1))
    return m


def photo_of(truth, ellipses_list=(BODY,), truths_list=None):
    """A photo where the subject (and any others) sit where ``truth`` (ref -> photo) puts them."""
    ys, xs = np.mgrid[0:SIZE[1], 0:SIZE[0]] + 0.5
    alpha = np.zeros(xs.shape)
    for ell, t in zip(ellipses_list, truths_list or [truth]):
        alpha = np.maximum(alpha, silhouette(xs, ys, np.linalg.inv(t), ell))
    img = alpha[..., None] * np.array(SKIN) + (1 - alpha[..., None]) * np.array(BACKDROP)
    return Image.fromarray(img.round().astype(np.uint8))


def recorded_person(truth, score, side="left", ellipses=BODY, mask_index=0, wrong_hip=False):
    """What the detector would store for a person placed by ``truth``: keypoints (confident on
    ``side``, unsure on the other), score, box, and the soft mask at ``mask_size``."""
    rows, cols = mask_shape(*SIZE, MASK_SIZE)
    ys, xs = (np.mgrid[0:rows, 0:cols] + 0.5) * (SIZE[0] / cols)
    mask = silhouette(xs, ys, np.linalg.inv(truth), ellipses)
    kps = np.zeros((17, 2))
    scores = np.full(17, -1.0)
    other = "right" if side == "left" else "left"
    for part, ref_pt in (("ear", EAR), ("shoulder", SHOULDER), ("hip", HIP)):
        kps[KEYPOINT_NAMES.index(f"{side}_{part}")] = apply(truth, np.array(ref_pt))
        scores[KEYPOINT_NAMES.index(f"{side}_{part}")] = 9.0
        kps[KEYPOINT_NAMES.index(f"{other}_{part}")] = apply(truth, np.array(ref_pt)) + 15  # hidden side
        scores[KEYPOINT_NAMES.index(f"{other}_{part}")] = 0.5
    if wrong_hip:  # a badly placed, unsure keypoint must be ignored
        kps[KEYPOINT_NAMES.index(f"{side}_hip")] += 90
        scores[KEYPOINT_NAMES.index(f"{side}_hip")] = 0.8
    yy, xx = np.nonzero(mask > 0.5)
    s = SIZE[0] / cols
    box = (xx.min() * s, yy.min() * s, (xx.max() + 1) * s, (yy.max() + 1) * s)
    person = Person(box, score, tuple(map(tuple, kps)), tuple(scores), mask_index)
    return person, (mask * 255).round().astype(np.uint8)


SMALL = [((cx * 0.55, cy * 0.55), (ax * 0.55, ay * 0.55)) for (cx, cy), (ax, ay) in BODY]
WARPS = {  # name: (angle, scale, tx, ty) of the subject relative to the reference photo
    "w0_reference": (0, 1.0, 0, 0),
    "w1_plain": (8, 0.9, 20, 30),
    "w2_two_people": (-6, 1.05, 30, -10),
    "w3_facing_right": (5, 0.95, -20, 15),
    "w4_unsure_hip": (-9, 1.1, 10, -30),
    "w5_empty": None,
}


def truth_of(name):
    angle, scale, tx, ty = WARPS[name]
    return similarity(angle, scale, tx, ty, centre=(240, 320))


@pytest.fixture
def body_folder(tmp_path):
    """Synthetic side-view photos with known transforms, and the detections the R-CNNs would
    record for them (keyed by file name)."""
    root = tmp_path / "photos"
    root.mkdir()
    recorded, truths = {}, {}
    start = datetime(2024, 3, 1, 10)
    for i, name in enumerate(WARPS):
        if WARPS[name] is None:
            img = photo_of(np.eye(3), (), [])
            det, masks = BodyDetection(*SIZE, ()), np.zeros((0, *mask_shape(*SIZE, MASK_SIZE)), np.uint8)
        else:
            t = truths[f"{name}.jpg"] = truth_of(name)
            side = "right" if name == "w3_facing_right" else "left"
            subject, m = recorded_person(t, 0.93, side, wrong_hip=name == "w4_unsure_hip")
            if name == "w2_two_people":
                # A second, smaller person elsewhere, detected more surely and listed first.
                other_t = similarity(0, 1.0, 190, 250, centre=(240, 320))
                other, om = recorded_person(other_t, 0.99, ellipses=SMALL, mask_index=1)
                img = photo_of(t, (BODY, SMALL), [t, other_t])
                det, masks = BodyDetection(*SIZE, (other, subject)), np.stack([m, om])
            else:
                img = photo_of(t)
                det, masks = BodyDetection(*SIZE, (subject,)), m[None]
        save_with_date(img, root / f"{name}.jpg", start + timedelta(weeks=i))
        recorded[f"{name}.jpg"] = (det, masks)
    return root, recorded, truths


def body_pipeline_with(root, recorded, framing="auto", **body):
    cfg = Config(mode="body", device="cpu", register=RegisterConfig(long_side=480),
                 sections={"body": BodyConfig(**body)},
                 render=RenderConfig(framing=framing))
    p = Pipeline(root, cfg)
    p.scan()
    fp = p.mode.detect_fp
    for r in p.results.values():
        det, masks = recorded[r.frame.path.name]
        p.store.put_json(f"body:{r.frame.hash}:{fp}", det.to_json())
        p.store.put_array(f"bodymask:{r.frame.hash}:{fp}", masks)
        # no face seen from the front on these silhouettes (what the detector stores then)
        p.store.put_array(f"bodyface:{r.frame.hash}:{fp}", np.full((len(det.persons), 128), np.nan, np.float32))
    p.scan()  # now every detection comes from the store
    return p


def by_name(p):
    return {r.frame.path.name: r for r in p.results.values()}


def test_recorded_detections_register_and_render(body_folder, tmp_path):
    root, recorded, truths = body_folder
    # The reference's framing, so the render's pixels sit where the registration puts them.
    p = body_pipeline_with(root, recorded, framing="reference", background="white", feather_px=3.0)
    try:
        assert not any(p.needs_detection(r) for r in p.results.values())
        assert p.detect() == 0  # nothing to detect: the models are never loaded
        p.select()
        ref = p.register()
        rs = by_name(p)
        assert rs["w0_reference.jpg"].frame.hash == ref.hash and ref.canvas == (360, 480)

        # Person choice: the subject, not the surer person listed first.
        assert rs["w2_two_people.jpg"].subject.person_index == 1
        # Side choice: the person facing the other way registers with the right side's keypoints.
        assert rs["w3_facing_right.jpg"].subject.side == "right"
        assert rs["w1_plain.jpg"].subject.side == "left"
        # The unsure hip is ignored (NaN, weight 0), the others kept.
        unsure = rs["w4_unsure_hip.jpg"].subject
        assert unsure.weights == (1.0, 1.0, 0.0) and np.isnan(unsure.points[2]).all()
        assert rs["w5_empty.jpg"].status is FrameStatus.NO_SUBJECT and rs["w5_empty.jpg"].error == "no person found"

        # Registration: each frame's subject lands where the reference's does, within 1 % of the height.
        check = np.array([EAR, SHOULDER, HIP, (300, 350), (235, 520), (240, 90)])
        m_ref = np.asarray(rs["w0_reference.jpg"].transform.matrix)
        for name, t in truths.items():
            r = rs[name]
            assert r.status is FrameStatus.ALIGNED, name
            err = np.linalg.norm(apply(np.asarray(r.transform.matrix) @ t, check) - apply(m_ref, check), axis=1)
            assert err.max() / ref.canvas[1] * 100 < 1.0, (name, err.max())
            assert r.transform.residual_pct < 1.0

        # Background removal in the render: white around the person, the person's own colours.
        frames = tmp_path / "frames"
        assert p.render(tmp_path / "out.mp4", frames) == 5
        first = np.asarray(Image.open(sorted(frames.glob("*.jpg"))[0]), np.float64)
        inside = apply(m_ref, np.array([(235, 360), (240, 130)])).round().astype(int)
        outside = apply(m_ref, np.array([(80, 100), (420, 600), (400, 120)])).round().astype(int)
        for x, y in inside:
            assert np.abs(first[y, x] - SKIN).max() < 25
        for x, y in outside:
            assert first[y, x].min() > 235
    finally:
        p.close()


def test_masks_are_stored_as_npy_at_the_mask_size(body_folder):
    root, recorded, _ = body_folder
    p = body_pipeline_with(root, recorded)
    try:
        h = by_name(p)["w2_two_people.jpg"].frame.hash
        masks = p.store.get_array(f"bodymask:{h}:{p.mode.detect_fp}")
        assert masks.dtype == np.uint8 and masks.shape == (2, MASK_SIZE, MASK_SIZE * 3 // 4)
        raw = bytes(p.store.cache.get(f"bodymask:{h}:{p.mode.detect_fp}"))
        assert raw.startswith(b"\x93NUMPY")  # .npy bytes, not pickle
    finally:
        p.close()


def test_reference_is_sticky_and_a_named_one_is_used(body_folder):
    root, recorded, truths = body_folder
    p = body_pipeline_with(root, recorded)
    p.select()
    ref = p.register()
    assert by_name(p)["w0_reference.jpg"].frame.hash == ref.hash
    p.close()
    cfg_named = Config(mode="body", device="cpu", register=RegisterConfig(long_side=480, reference="w1_plain.jpg"))
    p2 = Pipeline(root, cfg_named)
    try:
        p2.scan()
        p2.select()
        ref2 = p2.register()
        rs = by_name(p2)
        assert rs["w1_plain.jpg"].frame.hash == ref2.hash
        # Through the new reference, frames still agree with each other.
        m1, m4 = (np.asarray(rs[n].transform.matrix) for n in ("w1_plain.jpg", "w4_unsure_hip.jpg"))
        pts = np.array([EAR, SHOULDER, HIP])
        err = np.linalg.norm(apply(m1 @ truths["w1_plain.jpg"], pts) - apply(m4 @ truths["w4_unsure_hip.jpg"], pts),
                             axis=1)
        assert err.max() / ref2.canvas[1] * 100 < 1.0
    finally:
        p2.close()


def test_fixed_side_and_too_few_keypoints(body_folder):
    root, recorded, _ = body_folder
    p = body_pipeline_with(root, recorded, side="left")
    try:
        p.select()
        rs = by_name(p)
        # Forced to the left side, the right-facing person has no confident keypoints there.
        assert rs["w3_facing_right.jpg"].subject is None
        assert rs["w3_facing_right.jpg"].status is FrameStatus.NO_SUBJECT
        assert "two keypoints" in rs["w3_facing_right.jpg"].error
        assert rs["w1_plain.jpg"].subject.side == "left"
    finally:
        p.close()


# -- the pieces, one by one ------------------------------------------------------------------------

def person(box, score=0.9, left=9.0, right=0.0):
    scores = [0.0] * 17
    for part in ("ear", "shoulder", "hip"):
        scores[KEYPOINT_NAMES.index(f"left_{part}")] = left
        scores[KEYPOINT_NAMES.index(f"right_{part}")] = right
    return Person(box, score, tuple((float(i), float(2 * i)) for i in range(17)), tuple(scores), -1)


def side_view(left_z: float, right_z: float, apart: float = 6.0) -> Person:
    """A side view: each right keypoint ``apart`` px beside its left one, depths as given."""
    kps = [(100.0, 100.0)] * 17
    kps[KEYPOINT_NAMES.index("nose")] = (100.0, 40.0)
    for part, y in (("ear", 50), ("shoulder", 100), ("hip", 300)):
        for side, dx in (("left", 0.0), ("right", apart)):
            kps[KEYPOINT_NAMES.index(f"{side}_{part}")] = (100.0 + dx, float(y))
    z = [left_z if n.startswith("left") else right_z if n.startswith("right") else 0.0 for n in KEYPOINT_NAMES]
    return Person((0, 0, 200, 400), 0.9, tuple(kps), (9.0,) * 17, 0, tuple(z))


def test_side_choice_by_depth_front_views_use_both_sides():
    parts = ["ear", "shoulder", "hip"]
    # BlazePose's visibilities are high on both sides of a profile: the nearer side is chosen by depth.
    assert choose_side(side_view(-300, -100), parts) == ("left", "left nearer the camera")
    assert choose_side(side_view(-100, -300), parts)[0] == "right"
    # Shoulders far apart against the torso: a front view, registered on each part's middle.
    side, why = choose_side(side_view(-100, -100, apart=140), parts)
    assert side == "both" and "facing" in why
    assert choose_side(side_view(-300, -100), parts, "right") == ("right", "body.side")
    # A detection without depths (stored by an older version): the surer side.
    assert choose_side(person((0, 0, 1, 1), left=1, right=5), parts)[0] == "right"
    assert choose_side(person((0, 0, 1, 1), left=5, right=1), parts)[0] == "left"


def test_both_sides_register_on_the_middle_of_each_pair():
    p = side_view(-100, -100, apart=140)
    pts, w = subject_points(p, ["ear", "hip", "nose"], [1.0, 1.0, 0.5], "both", 2.0)
    assert pts.tolist() == [[170.0, 50.0], [170.0, 300.0], [100.0, 40.0]] and w.tolist() == [1.0, 1.0, 0.5]


def test_subject_points_ignore_low_scores():
    p = person((0, 0, 1, 1), left=5, right=1)
    pts, w = subject_points(p, ["ear", "shoulder", "nose"], [1.0, 2.0, 0.5], "left", 2.0)
    assert w.tolist() == [1.0, 2.0, 0.0]  # the nose scores 0 < 2
    assert pts[0].tolist() == list(p.keypoints[KEYPOINT_NAMES.index("left_ear")]) and np.isnan(pts[2]).all()


def test_person_choice_by_position_size_and_overlap():
    det = BodyDetection(400, 400, (person((300, 10, 360, 120), 0.99), person((100, 100, 220, 380), 0.8),
                                   person((90, 60, 300, 400), 0.95)))
    ref = PersonShape(np.array([0.4, 0.6]), 0.7, None)
    index, cost = choose_person(det, None, [0, 1, 2], ref)
    assert index == 1 and cost < match_cost(person_shape(det, det.persons[2], None), ref)
    # Masks decide between two boxes in the same place and of the same size.
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 10:60, 10:30] = 255
    masks[1, 10:60, 34:54] = 255
    det2 = BodyDetection(64, 64, (Person((10, 10, 54, 60), 0.9, ((0, 0),) * 17, (0,) * 17, 0),
                                  Person((10, 10, 54, 60), 0.9, ((0, 0),) * 17, (0,) * 17, 1)))
    ref2 = person_shape(det2, det2.persons[1], masks)
    assert choose_person(det2, masks, [0, 1], ref2)[0] == 1


def test_working_mask_follows_the_registration_convention():
    """A mask point at original (x, y) lands on working pixel (x, y) * scale."""
    rows, cols = mask_shape(800, 600, 256)
    mask = np.zeros((rows, cols), np.uint8)
    mask[96, 128] = 255  # original centre (128.5, 96.5) * 800/256
    work = working_mask(mask, 800, 600, 64 / 800, (64, 64))
    y, x = np.unravel_index(work.argmax(), work.shape)
    assert abs(x - 128.5 * 800 / 256 * 64 / 800) <= 0.5 and abs(y - 96.5 * 600 / 192 * 64 / 800) <= 0.5
    assert work.shape == (64, 64) and work[50:].max() == 0  # below the photo: empty


# -- background -----------------------------------------------------------------------------------

def disc_scene(n=100):
    img = np.zeros((n, n, 3), np.uint8)
    img[...] = (10, 200, 30)
    yy, xx = np.mgrid[0:n, 0:n]
    mask = (((xx - n / 2) ** 2 + (yy - n / 2) ** 2) < (n / 4) ** 2).astype(np.uint8) * 255
    img[mask > 0] = (220, 40, 40)
    return img, mask


@pytest.mark.parametrize("background, colour", [("white", (255, 255, 255)), ("black", (0, 0, 0)),
                                                ("#12ab9c", (0x12, 0xAB, 0x9C))])
def test_composite_plain_backgrounds(background, colour):
    img, mask = disc_scene()
    out = np.asarray(composite(Image.fromarray(img), mask, background, feather_px=4))
    assert out[50, 50].tolist() == [220, 40, 40]  # the person, untouched
    assert out[2, 2].tolist() == list(colour)  # far from the person: the new background
    edge = out[50, 25].astype(int)  # on the outline: a blend of both, the feathered edge
    assert np.abs(edge - [220, 40, 40]).max() > 20 and np.abs(edge - colour).max() > 20


def test_composite_feather_widens_the_blend_and_keep_is_identity():
    img, mask = disc_scene()
    hard = np.asarray(composite(img, mask, "white", 0))[50, :, 1].astype(int)
    soft = np.asarray(composite(img, mask, "white", 10))[50, :, 1].astype(int)
    between = lambda row: int(((row > 45) & (row < 250)).sum())  # noqa: E731
    assert between(soft) > between(hard) + 4
    assert np.array_equal(np.asarray(composite(img, mask, "keep", 10)), img)
    with pytest.raises(ValueError, match="mask is"):
        composite(img, mask[:50], "white")


def test_composite_blur_keeps_the_person_sharp_and_blurs_the_rest():
    img, mask = disc_scene()
    rng = np.random.default_rng(0)
    img[mask == 0] = rng.integers(0, 255, (int((mask == 0).sum()), 3))
    out = np.asarray(composite(img, mask, "blur", 2)).astype(int)
    assert out[50, 50].tolist() == [220, 40, 40]
    assert out[:10, :10].std() < 0.5 * img[:10, :10].astype(int).std()


def test_warp_mask_uses_the_frame_transform():
    """The mask (any resolution) follows the same 3x3 as the frame onto the canvas."""
    mask = np.zeros((50, 100), np.uint8)  # covers a 400 x 200 original
    mask[20:30, 40:60] = 255  # original x 160..240, y 80..120
    m = similarity(0, 0.5, 10, 20, centre=(0, 0))
    out = np.asarray(warp_mask(mask, m, (400, 200), (300, 200)))
    yy, xx = np.nonzero(out > 127)
    assert abs(xx.min() - 90) <= 1 and abs(xx.max() + 1 - 130) <= 1
    assert abs(yy.min() - 60) <= 1 and abs(yy.max() + 1 - 80) <= 1


# -- config ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, key, words", [
    ('[body]\nkeypoints = ["ear", "hip"]\n', "body.keypoint_weights", "one weight per keypoint"),
    ('[body]\nkeypoints = ["ear", "tail"]\nkeypoint_weights = [1, 1]\n', "body.keypoints", "distinct keypoints"),
    ('[body]\nside = "up"\n', "body.side", "must be one of"),
    ('[body]\nbackground = "#12345g"\n', "body.background", "#rrggbb"),
    ('mode = "torso"\n', "mode", "must be one of"),
])
def test_body_config_errors_name_the_key(tmp_path, text, key, words):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key and words in str(err.value)


def test_body_config_values(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('mode = "body"\n[body]\nkeypoints = ["nose", "shoulder"]\nkeypoint_weights = [0.5, 2]\n'
                    'background = "#FFeedd"\n')
    cfg = load_config(path)
    assert cfg.mode == "body" and cfg.section("body").keypoint_weights == [0.5, 2.0] and cfg.section("body").background == "#FFeedd"


def test_body_framing_centres_the_person_at_the_chosen_height(body_folder, tmp_path):
    """Default body framing: the photos' shape (3:4 portrait photos: 1080x1440), the reference
    person's box (its mask, through its registration) centred at body_height of the height; every
    frame's person lands there too."""
    root, recorded, truths = body_folder
    p = body_pipeline_with(root, recorded, background="white", feather_px=0.0)
    try:
        p.select()
        p.register()
        assert p.framing.size == (1080, 1440) and p.framing.style == "box"
        frames = tmp_path / "frames"
        assert p.render(tmp_path / "out.mp4", frames) == 5
        goal_h = p.config.render.body_height * 1440
        for path in sorted(frames.glob("*.jpg")):
            person = np.asarray(Image.open(path).convert("L")) < 200  # the person on white
            ys, xs = np.nonzero(person)
            height, centre = ys.max() + 1 - ys.min(), ((xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2)
            # (the person's outline sways a little with each warp: a few % of its height)
            assert abs(height / goal_h - 1) < 0.05, (path.name, height, goal_h)
            assert abs(centre[1] - 720) < 0.03 * 1440, (path.name, centre)
        ref = by_name(p)["w0_reference.jpg"]
        box = p.mode.subject_on_canvas(p.reference, p.kept())
        on_out = apply(p.framing.matrix, np.array([box.centre]))[0]
        assert np.allclose(on_out, (540, 720), atol=1e-6) and ref.transform is not None
    finally:
        p.close()


def test_colour_means_are_measured_beside_the_decode(samples, tmp_path):
    """Body detection stores each person's colour means and the photo's neutral means, made on
    the decode threads from the picture detection decoded: the same values as measured afresh."""
    import shutil

    from alignimation_tui import colour
    from alignimation_tui.photos import open_photo

    folder = tmp_path / "bodies"
    folder.mkdir()
    for path in sorted((samples / "body_standing").glob("*.JPG"))[:3]:
        shutil.copy(path, folder / path.name)
    p = Pipeline(folder, Config(mode="body", device="cpu"))
    try:
        results = p.scan()
        p.detect()
        b = p.mode.settings
        for r in results:
            assert r.detection.persons, r.frame.path.name
            photo = open_photo(r.frame.path, max_side=b.detect_size, max_pixels=p.config.scan.max_pixels,
                               resize_within=1.3)
            small = photo.image.copy()
            small.thumbnail((colour.STATS_SIDE, colour.STATS_SIDE), reducing_gap=2.0)
            assert p.store.get_json(colour.neutral_key(r.frame.hash)) == {"means": colour.neutral_means(small)}
            scale = (photo.scale_xy[0] * small.width / photo.image.width,
                     photo.scale_xy[1] * small.height / photo.image.height)
            for person in r.detection.persons:
                stored = p.store.get_json(colour.means_key(r.frame.hash, person.box))["means"]
                assert np.allclose(stored, colour.region_means(small, person.box, scale), rtol=1e-9)
    finally:
        p.close()
