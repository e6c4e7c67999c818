"""The real weight-loading code, fed a random state dict under the expected file name in a
temporary TORCH_HOME: the real VGGFace2 weights cannot be downloaded here."""
import numpy as np
import pytest
import torch

from alignimation_tui import models
from alignimation_tui.cli import main


@pytest.fixture
def random_embedder_weights():
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    net = InceptionResnetV1(classify=True, num_classes=8631)  # same keys as the vggface2 file
    path = models.FACE_EMBEDDER.path
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return path


def test_embedder_absent_means_none():
    assert not models.FACE_EMBEDDER.path.exists()
    assert models.load_face_embedder("cpu") is None


def test_embedder_loads_from_torch_home_and_embeds(random_embedder_weights):
    from alignimation_tui.detect.face import FaceEmbedder
    from alignimation_tui.domain import Face, FaceDetection
    from alignimation_tui.photos import Decoded
    from PIL import Image

    model = models.load_face_embedder("cpu")
    assert model is not None
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    faces = (Face((10, 10, 110, 120), 0.99, ((0, 0),) * 5), Face((200, 50, 260, 120), 0.98, ((0, 0),) * 5))
    vectors = FaceEmbedder(model, "cpu").embed(Decoded(img, 800, 600), FaceDetection(800, 600, faces))
    assert vectors.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_damaged_weights_file_is_a_clear_error(random_embedder_weights):
    random_embedder_weights.write_bytes(b"not a checkpoint")
    with pytest.raises(models.ModelError, match="cannot load"):
        models.load_face_embedder("cpu")


def test_models_command_lists_presence(capsys, random_embedder_weights):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "face detector" in out and "face embedder" in out and "BlazePose" in out
    assert out.count("missing") == 0  # the embedder is there; MTCNN and BlazePose ship with packages


def test_models_command_reports_missing(capsys):
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
