"""Body mode's weights: the real loading code and the real detector, fed *random* state dicts saved
under torchvision's file names in a temporary TORCH_HOME (the real COCO weights cannot be
downloaded here, and no test may reach the network). Also: the models command, downloading from a
local file:// URL, and a body run stopping cleanly when the weights are missing."""
import urllib.request
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alignimation_tui import models
from alignimation_tui.cli import main
from alignimation_tui.detect.body import BodyDetector, mask_shape
from alignimation_tui.photos import Decoded
from tests.conftest import astronaut


@pytest.fixture(scope="module")
def weights_home(tmp_path_factory):
    """One TORCH_HOME holding random Mask R-CNN and Keypoint R-CNN weights (~400 MB in all), saved
    from the architecture the COCO files come from (frozen batch norm, no num_batches_tracked)."""
    home = tmp_path_factory.mktemp("torch")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    for model, build in ((models.PERSON_SEGMENTER, models.build_person_segmenter),
                         (models.KEYPOINT_DETECTOR, models.build_keypoint_detector)):
        torch.save(build().state_dict(), folder / model.filename)
    return home


@pytest.fixture
def with_weights(weights_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(weights_home))

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return weights_home


def test_file_names_and_urls_are_torchvisions():
    from torchvision.models.detection import KeypointRCNN_ResNet50_FPN_Weights, MaskRCNN_ResNet50_FPN_Weights

    for model, weights in ((models.PERSON_SEGMENTER, MaskRCNN_ResNet50_FPN_Weights.COCO_V1),
                           (models.KEYPOINT_DETECTOR, KeypointRCNN_ResNet50_FPN_Weights.COCO_V1)):
        assert model.url == weights.url and model.filename == weights.url.rsplit("/", 1)[1]
        assert model.filename.endswith(f"-{model.hash_prefix}.pth")
        assert model.path == models.torch_home() / "hub" / "checkpoints" / model.filename
    assert models.FACE_EMBEDDER.path.parent == models.torch_home() / "checkpoints"


def test_models_load_from_torch_home_and_detect(with_weights):
    seg = models.load_person_segmenter("cpu", 160)
    kp = models.load_keypoint_detector("cpu", 160)
    saved = torch.load(models.KEYPOINT_DETECTOR.path, weights_only=True)
    assert torch.equal(kp.state_dict()["roi_heads.keypoint_predictor.kps_score_lowres.weight"],
                       saved["roi_heads.keypoint_predictor.kps_score_lowres.weight"])
    assert not seg.training and not kp.training
    for net in (seg, kp):  # fewer region proposals than the default 1000, only to keep this test fast
        net.rpn._post_nms_top_n["testing"] = 100

    img = Image.fromarray(astronaut()).resize((160, 120))
    detector = BodyDetector(seg, kp, "cpu", batch_size=2, mask_size=64)
    # Photos decoded at 160 px from 640 x 480 originals: results come back in original pixels.
    # One thread: the 2 cores here are shared, and OpenMP threads spinning against other
    # processes cost far more than they bring.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        found = detector.detect([Decoded(img, 640, 480),
                                 Decoded(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 640, 480)])
    finally:
        torch.set_num_threads(threads)
    assert detector.calls == 2 and len(found) == 2
    for det, masks in found:
        assert (det.width, det.height) == (640, 480) and 0 < len(det.persons) <= 10
        assert masks.dtype == np.uint8 and masks.shape[1:] == mask_shape(640, 480, 64) == (48, 64)
        indices = [p.mask_index for p in det.persons if p.mask_index >= 0]
        assert sorted(indices) == list(range(len(masks)))  # every stored mask belongs to one person
        for p in det.persons:
            assert len(p.keypoints) == 17 and len(p.keypoint_scores) == 17
            x0, y0, x1, y1 = p.box
            assert -1 <= x0 <= x1 <= 641 and -1 <= y0 <= y1 <= 481  # original pixels, not decoded
        assert [p.score for p in det.persons] == sorted((p.score for p in det.persons), reverse=True)


def test_outputs_become_people_in_original_pixels_with_their_masks():
    """The step after the networks, on outputs shaped as torchvision returns them: keypoint people
    get the mask of the Mask R-CNN person whose box overlaps theirs; non-person classes are ignored."""
    photo = Decoded(Image.new("RGB", (200, 150)), 800, 600)  # decoded at a quarter of the size
    full = torch.zeros(3, 1, 150, 200)
    full[0, 0, 20:120, 30:90] = 0.9  # person A
    full[1, 0, 10:140, 120:190] = 0.8  # person B
    full[2, 0, 0:50, 0:50] = 1.0  # a dog
    seg = {"boxes": torch.tensor([[30.0, 20, 90, 120], [120, 10, 190, 140], [0, 0, 50, 50]]),
           "labels": torch.tensor([1, 1, 18]), "scores": torch.tensor([0.9, 0.8, 0.99]), "masks": full}
    kps = torch.zeros(3, 17, 3)
    kps[:, :, 0], kps[:, :, 1] = 50.0, 40.0
    kp = {"boxes": torch.tensor([[118.0, 12, 188, 138], [2.0, 2, 48, 48], [32.0, 18, 92, 118]]),
          "scores": torch.tensor([0.95, 0.9, 0.7]), "keypoints": kps, "keypoints_scores": torch.full((3, 17), 3.0)}
    det, masks = BodyDetector(None, None, "cpu", 1, mask_size=100)._combine(photo, seg, kp)
    assert [p.mask_index for p in det.persons] == [0, -1, 1]  # B, nobody (the dog is no person), A
    assert masks.shape == (2, 75, 100) and masks.dtype == np.uint8
    assert masks[0, 40, 77] > 180 and masks[0, 40, 30] == 0  # B's mask: B's place
    assert masks[1, 35, 30] > 200 and masks[1, 35, 77] == 0  # A's mask
    assert det.persons[0].box == (472.0, 48.0, 752.0, 552.0) and det.persons[0].keypoints[0] == (200.0, 160.0)


def test_body_run_end_to_end_with_random_weights(with_weights, tmp_path, capsys, monkeypatch):
    """``--once --mode body`` through the real detector: detections and masks reach the store, a
    second run takes them from there. (Random weights: where the people are is meaningless, so
    every detection is accepted and only the plumbing is checked.)"""
    import json

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, angle in enumerate((0, 10)):
        Image.fromarray(astronaut()).rotate(angle).resize((200, 150)).save(photos / f"p{i}.jpg")
    config = tmp_path / "c.toml"
    config.write_text("[body]\ndetect_size = 128\nmin_person_score = 0.0\nmin_keypoint_score = -100.0\n"
                      "background = \"white\"\n[register]\nlong_side = 160\n")
    calls = []
    original = BodyDetector.detect
    monkeypatch.setattr(BodyDetector, "detect", lambda self, p: calls.append(len(p)) or original(self, p))
    threads = torch.get_num_threads()
    out = tmp_path / "out.gif"
    args = [str(photos), "--once", "--mode", "body", "--json", "--device", "cpu", "--config", str(config),
            "--out", str(out)]
    try:
        torch.set_num_threads(1)
        code = main(args)
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert code == 0 and calls == [2] and out.exists()
        assert {r["status"] for r in rows} == {"aligned"} and all(r["persons"] > 0 for r in rows)
        assert all(r["side"] in ("left", "right") and r["faces"] is None for r in rows)
        code = main(args)
        assert code == 0 and calls == [2]  # the second run detects nothing
    finally:
        torch.set_num_threads(threads)


def test_damaged_weights_are_a_clear_error(with_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    bad = models.PERSON_SEGMENTER.path
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"truncated download")
    with pytest.raises(models.ModelError, match="cannot load.*maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"):
        models.load_person_segmenter("cpu")
    with pytest.raises(models.ModelError, match="keypointrcnn_resnet50_fpn_coco-fc266e95.pth is missing"):
        models.load_keypoint_detector("cpu")
    torch.save({"fc.weight": torch.zeros(2, 2)}, models.KEYPOINT_DETECTOR.path)  # someone else's model
    with pytest.raises(models.ModelError, match="cannot load.*keypointrcnn"):
        models.load_keypoint_detector("cpu")


def test_models_command_lists_every_model(with_weights, capsys):
    rows = {r["model"].split(" (")[0]: r for r in models.describe_models()}
    assert set(rows) == {"face detector", "face embedder", "person segmenter", "keypoint detector"}
    assert rows["person segmenter"]["present"] and rows["keypoint detector"]["present"]
    assert rows["person segmenter"]["size_mb"] > 100 and rows["face embedder"]["size_mb"] is None
    assert rows["keypoint detector"]["path"] == str(models.KEYPOINT_DETECTOR.path)
    assert not rows["face embedder"]["present"]
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "person segmenter" in out and "keypoint detector" in out and "missing" in out and "MB" in out


def test_missing_body_weights_stop_the_run_before_anything(tmp_path, capsys, isolated_home):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(astronaut()).save(photos / "a.jpg")
    out = tmp_path / "out.mp4"
    code = main([str(photos), "--once", "--mode", "body", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    for model in models.BODY_MODELS:
        assert model.filename in err and str(model.path.parent) in err.replace("\n", "") and model.url in err
    assert not out.exists()
    assert not (isolated_home / "cache" / "alignimation-tui").exists()  # no cache folder made
    assert not (isolated_home / "data" / "alignimation-tui").exists()
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg"]
    # Face mode needs none of them.
    assert models.required_models("face") == ()


def test_download_from_a_url_with_progress(tmp_path, monkeypatch):
    """The real downloader, reading a file:// URL (no network): the file appears whole, or not at all."""
    source = tmp_path / "source.pth"
    source.write_bytes(b"x" * 3_000_000)
    model = replace(models.PERSON_SEGMENTER, url=source.as_uri(), hash_prefix=None)
    models.download(model, progress=True)
    assert model.path.read_bytes() == source.read_bytes()
    assert [p.name for p in model.path.parent.iterdir()] == [model.filename]  # no partial file left

    wrong_hash = replace(models.KEYPOINT_DETECTOR, url=source.as_uri())
    with pytest.raises(models.ModelError, match="sha256"):
        models.download(wrong_hash, progress=False)
    assert not wrong_hash.path.exists()


def test_download_offline_fails_cleanly(tmp_path, monkeypatch, capsys):
    unreachable = (tmp_path / "nowhere" / "x.pth").as_uri()  # fails like an offline URL: URLError
    monkeypatch.setattr(models, "ALL_MODELS", tuple(replace(m, url=unreachable) for m in models.ALL_MODELS))
    assert main(["models", "--download"]) == 1
    err = capsys.readouterr().err
    assert "could not download" in err and "20180402-114759-vggface2.pt" in err
    folder = models.FACE_EMBEDDER.path.parent
    assert not any(p.is_file() for p in Path(folder).iterdir())  # nothing half-written
