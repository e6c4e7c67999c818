"""Throughput machinery (issue 8): decoding straight to the detection size, letterboxed MTCNN
batches, and the decode pool stopping cleanly. Real MTCNN (its weights ship with facenet-pytorch),
real JPEGs."""
import functools
import threading
import time

import numpy as np
import pytest
from PIL import Image

from alignimation_tui.config import Config
from alignimation_tui.detect.face import FaceDetector, torch_threads
from alignimation_tui.domain import FrameStatus
from alignimation_tui.photos import PhotoError, decode_ahead, open_photo
from tests.conftest import astronaut, save_with_date
from tests.unit.test_photos import STORED

# An odd-sized "phone photo": red block top-left, green bottom-right, blue elsewhere.
W, H = 1611, 1203


def upright() -> Image.Image:
    img = Image.new("RGB", (W, H), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, W // 4, H // 4))
    img.paste((0, 255, 0), (W - W // 4, H - H // 4, W, H))
    return img


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_straight_to_detection_size(tmp_path, orientation):
    """With slack, the DCT scale just below the target is taken as it is (no second resize), upright,
    and scale_xy is exactly decoded / original pixels along each axis."""
    path = save_with_date(STORED[orientation](upright()), tmp_path / f"o{orientation}.jpg", orientation=orientation)
    photo = open_photo(path, max_side=410, slack=0.05)  # 1611 / 4 = 403 px is within 5 % of 410
    assert (photo.width, photo.height) == (W, H)
    assert photo.image.size == (-(-W // 4), -(-H // 4))  # libjpeg rounds a reduced size up
    sx, sy = photo.scale_xy
    assert sx == pytest.approx(photo.image.width / W) and sy == pytest.approx(photo.image.height / H)
    px = np.asarray(photo.image).astype(int)
    w, h = photo.image.size
    assert px[10, 10, 0] > 200 and px[10, 10, 2] < 60  # red stays top-left
    assert px[h - 10, w - 10, 1] > 200 and px[h - 10, w - 10, 2] < 60  # green stays bottom-right
    assert px[h - 10, 10, 2] > 200  # blue bottom-left

    exact = open_photo(path, max_side=410)  # without slack: the next DCT scale up, resized to 410
    assert exact.image.size == (410, round(H * 410 / W))


def test_slack_never_undershoots_more_than_asked(tmp_path):
    path = tmp_path / "p.jpg"
    upright().save(path, quality=90)
    assert max(open_photo(path, max_side=500, slack=0.05).image.size) == 500  # 403 would be 19 % short
    assert max(open_photo(path, max_side=4000, slack=0.05).image.size) == W  # never enlarged


def torch_mtcnn():
    """The torch MTCNN (a GPU's), run here on the CPU: ``load_face_detector("cpu")`` gives OpenCV's."""
    from alignimation_tui.detect.mtcnn_common import weights_dir
    from alignimation_tui.detect.mtcnn_nets import load_mtcnn

    d = Config().detect
    return load_mtcnn(weights_dir(), "cpu", d.min_face_size, d.thresholds)


@pytest.fixture(scope="module")
def mtcnn():
    with torch_threads(1):  # small images: one thread is fastest, and immune to a busy machine
        yield torch_mtcnn()


@functools.cache
def facenet_mtcnn():
    from facenet_pytorch import MTCNN

    d = Config().detect
    return MTCNN(keep_all=True, device="cpu", min_face_size=d.min_face_size, thresholds=list(d.thresholds),
                 post_process=False, select_largest=False)


def alone(mtcnn, img: Image.Image):
    """facenet-pytorch's own detect on one photo: the reference the batches must match (``mtcnn``,
    ours, holds the same networks and settings)."""
    with torch_threads(1):
        boxes, probs, points = facenet_mtcnn().detect(np.asarray(img)[None], landmarks=True)
    if boxes[0] is None:
        return np.zeros((0,)), np.zeros((0, 5, 2))
    return np.asarray(probs[0], np.float64), np.asarray(points[0], np.float64)


def assert_same_faces(mtcnn, photos, dets, min_prob=0.9):
    for photo, det in zip(photos, dets):
        probs, points = alone(mtcnn, photo.image)
        sx, sy = photo.scale_xy
        want = sorted(points[probs >= min_prob].tolist())
        got = sorted((np.array(f.landmarks) * [sx, sy]).tolist() for f in det.faces if f.prob >= min_prob)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert np.abs(np.array(g) - np.array(w)).max() < 1.0  # pixels of the decoded photo


def test_letterboxed_batch_matches_single_image_detection(tmp_path, mtcnn):
    """Photos of different sizes and shapes in one padded batch get the faces MTCNN finds in each alone."""
    face = Image.fromarray(astronaut())
    imgs = [face, face.resize((300, 300)), face.crop((0, 0, 512, 400)), face.crop((100, 0, 420, 512)),
            face.rotate(10, expand=True, fillcolor=(60, 60, 60)).resize((380, 420))]
    photos = []
    for i, img in enumerate(imgs):
        img.save(tmp_path / f"{i}.png")
        photos.append(open_photo(tmp_path / f"{i}.png"))
    detector = FaceDetector(mtcnn, batch_size=8, workers=1)
    dets = detector.detect_letterboxed(photos)  # one batch, padded to 512 x 512
    assert all(d.faces for d in dets)
    assert_same_faces(mtcnn, photos, dets)
    # Side by side on two workers (the CPU path), and in the default grouping: the same faces.
    again = FaceDetector(mtcnn, batch_size=2, workers=2).detect(photos)
    for a, b in zip(dets, again):
        np.testing.assert_allclose([f.landmarks for f in a.faces], [f.landmarks for f in b.faces], atol=1e-3)


@pytest.mark.parametrize("folder", ["faces_jerry", "faces_serena"])
def test_letterboxed_batches_match_single_image_on_samples(samples, mtcnn, folder):
    photos = [open_photo(p, max_side=1024) for p in sorted((samples / folder).glob("*.jpg"))]
    detector = FaceDetector(mtcnn, batch_size=len(photos), workers=1)
    dets = detector.detect_letterboxed(photos)  # every size in one batch
    assert sum(bool(d.faces) for d in dets) >= 0.95 * len(photos)
    assert_same_faces(mtcnn, photos, dets)


# The decode pool --------------------------------------------------------------------------------

def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("decode")]


def test_decode_pool_survives_errors_and_leaves_no_threads():
    def decode(i):
        if i % 3 == 1:
            raise PhotoError(f"broken {i}")
        if i == 5:
            raise RuntimeError("a bug in a decoder")
        return i

    out = list(decode_ahead(list(range(10)), decode, workers=3, ahead=4))
    assert [i for i, _, _ in out] == list(range(10))
    assert [r for _, r, _ in out] == [None if i % 3 == 1 or i == 5 else i for i in range(10)]
    assert out[1][2] == "broken 1" and "a bug in a decoder" in out[5][2]
    assert decode_threads() == []


def test_decode_pool_stops_on_cancel_without_decoding_the_rest():
    started = []

    def slow(i):
        started.append(i)
        time.sleep(0.05)
        return i

    gen = decode_ahead(list(range(100)), slow, workers=2, ahead=4)
    assert [next(gen)[0] for _ in range(3)] == [0, 1, 2]
    gen.close()  # what a consumer's break (or cancel) does: waits for the decodes already running
    assert decode_threads() == []
    assert len(started) <= 3 + 4  # never ran ahead of its bound; the rest never started
    time.sleep(0.1)
    assert len(started) <= 7


def test_decode_pool_stops_when_the_consumer_fails():
    gen = decode_ahead(list(range(50)), lambda i: i, workers=2, ahead=4)
    with pytest.raises(ZeroDivisionError):
        for i, _, _ in gen:
            if i == 2:
                1 / 0
    gen.close()
    assert decode_threads() == []


@pytest.mark.parametrize("workers", [1, 2])
def test_pipeline_detect_stops_on_cancel(tmp_path, monkeypatch, workers):
    """Cancelled after the first photo, one batch after the other or side by side: the batches in
    hand (the workers') are finished, kept and reported, nothing more is started, and what is
    reported is what is stored."""
    from alignimation_tui.modes import face as face_mode
    from alignimation_tui.pipeline import Pipeline

    monkeypatch.setattr(face_mode, "side_by_side_workers", lambda detector: workers)
    folder = tmp_path / "photos"
    folder.mkdir()
    img = Image.fromarray(astronaut()).resize((256, 256))
    for i in range(12):
        img.rotate(i, fillcolor=(90, 90, 90)).save(folder / f"p{i:02d}.jpg")
    pipeline = Pipeline(folder, Config(device="cpu"))
    try:
        results = pipeline.scan()
        cancel = threading.Event()
        seen = []

        def progress(r):
            seen.append(r)
            cancel.set()

        pipeline.detect(progress=progress, cancel=cancel)
        assert 0 < len(seen) < len(results)  # the batch in hand is finished, then it stops
        assert all(r.status is FrameStatus.QUEUED for r in seen)
        assert sum(r.detection is None for r in results) >= len(results) - len(seen)
        for r in results:
            stored = pipeline.mode.cached_detection(r.frame.hash) is not None
            assert stored == (r in seen) == (r.detection is not None), r.frame.path.name
        assert decode_threads() == []
        assert {"scan", "decode", "detect"} <= set(pipeline.stage_seconds)
    finally:
        pipeline.close()


def test_networks_are_facenets_without_importing_it():
    """Our P-, R- and O-Net hold facenet-pytorch's weights and give its outputs exactly; building
    them imports neither facenet-pytorch nor torchvision (seconds of a small folder's start)."""
    import subprocess
    import sys

    import torch

    code = ("import sys; from alignimation_tui.detect.mtcnn_nets import load_mtcnn, weights_dir; "
            "m = load_mtcnn(weights_dir(), 'cpu', 20, [0.6, 0.7, 0.7]); from alignimation_tui.detect import mtcnn_batch; "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('facenet_pytorch', 'torchvision', 'cv2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
    ours, theirs = torch_mtcnn(), facenet_mtcnn()
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for name, shape in (("pnet", (2, 3, 37, 53)), ("rnet", (5, 3, 24, 24)), ("onet", (5, 3, 48, 48))):
            x = torch.rand(shape, generator=g) * 2 - 1
            for a, b in zip(getattr(ours, name)(x), getattr(theirs, name)(x)):
                assert torch.equal(a, b), name
    assert (ours.factor, ours.min_face_size, list(ours.thresholds)) == (theirs.factor, theirs.min_face_size,
                                                                        list(theirs.thresholds))


def test_batched_nms_is_torchvisions():
    import torch
    from torchvision.ops import batched_nms as tv

    from alignimation_tui.detect.mtcnn_nets import batched_nms

    g = torch.Generator().manual_seed(1)
    for n in (0, 50, 1500):  # 1500 boxes: torchvision's per-class strategy (over 4000 numbers)
        xy = torch.rand(n, 2, generator=g) * 300
        boxes = torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=g) * 60], 1)
        scores, idxs = torch.rand(n, generator=g), torch.randint(0, 3, (n,), generator=g)
        assert torch.equal(batched_nms(boxes, scores, idxs, 0.5), tv(boxes, scores, idxs, 0.5))


@pytest.mark.parametrize("shape", [(2, 61, 83), (1, 2900, 2950)])  # the second's sums pass int32
def test_summed_area_tables_from_pixels_equal_torchs(shape):
    """The CPU's tables come from OpenCV's integral over the 8-bit pixels: the same integers (and
    dtype) as torch's cumsums over the float tensor (the GPU's way), for every photo of a
    letterboxed batch, its own size only."""
    import torch

    from alignimation_tui.detect.mtcnn_batch import _integrals

    b, h, w = shape
    rng = np.random.default_rng(h)
    pixels = rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8)
    sizes = np.array([[w - 7 * k, h - 5 * k] for k in range(b)])
    imgs = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
    ours, theirs = _integrals(imgs, sizes, range(b), pixels), _integrals(imgs, sizes, range(b))
    for k in range(b):
        assert ours[k].shape == (sizes[k][1] + 1, sizes[k][0] + 1, 3)
        assert ours[k].dtype == theirs[k].dtype == (torch.int32 if h < 1000 else torch.int64)
        assert torch.equal(ours[k], theirs[k])


def test_detection_with_the_pixels_equals_without(tmp_path):
    """detect_batch with the uint8 pixels beside the tensor (the CPU's summed-area tables) finds
    exactly what it finds from the tensor alone, on real MTCNN and photos of different sizes."""
    import torch

    from alignimation_tui.detect.mtcnn_batch import detect_batch

    mtcnn = torch_mtcnn()
    photos = [np.asarray(Image.fromarray(astronaut()).resize(size).rotate(angle, fillcolor=(90, 90, 90)))
              for size, angle in (((512, 512), 0), ((400, 300), 10), ((260, 380), -15))]
    sizes = np.array([(p.shape[1], p.shape[0]) for p in photos])
    batch = np.zeros((len(photos), sizes[:, 1].max(), sizes[:, 0].max(), 3), np.uint8)
    for k, p in enumerate(photos):
        batch[k, :p.shape[0], :p.shape[1]] = p
    tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
    with_pixels, without = detect_batch(tensor, sizes, mtcnn, batch), detect_batch(tensor, sizes, mtcnn)
    assert sum(len(boxes) for boxes, _ in without) >= 3
    for (b1, p1), (b2, p2) in zip(with_pixels, without):
        assert np.array_equal(b1, b2) and np.array_equal(p1, p2)
