"""Finding and loading model weights, and choosing the device. Never downloads unless asked."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class ModelError(Exception):
    """A model cannot be loaded; the message names the file, the folder and where to get it."""


class DeviceError(ValueError):
    pass


def torch_home() -> Path:
    """The same folder torch.hub and facenet-pytorch use."""
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", default)))


@dataclass(frozen=True)
class ModelFile:
    name: str  # what it does, for people
    filename: str
    subdir: str  # under TORCH_HOME
    url: str
    ships_with_package: bool = False

    @property
    def path(self) -> Path:
        return torch_home() / self.subdir / self.filename

    def present(self) -> bool:
        return self.ships_with_package or self.path.is_file()

    def missing_message(self) -> str:
        return (f"{self.name}: weights file {self.filename} is missing from {self.path.parent}. "
                f"Run `alignimation-tui models --download`, or download {self.url} into that folder.")


FACE_EMBEDDER = ModelFile(
    name="face embedder (InceptionResnetV1, VGGFace2)",
    filename="20180402-114759-vggface2.pt",
    subdir="checkpoints",
    url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
)
FACE_DETECTOR = ModelFile(
    name="face detector (MTCNN)", filename="pnet.pt, rnet.pt, onet.pt", subdir="",
    url="(ships inside facenet-pytorch)", ships_with_package=True,
)
ALL_MODELS = (FACE_DETECTOR, FACE_EMBEDDER)


def choose_device(wanted: str = "auto") -> str:
    import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but no CUDA GPU is available here "
                          "(use --device auto or cpu)")
    return wanted


def load_face_detector(device: str, min_face_size: int, thresholds: list):
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device=device, min_face_size=min_face_size,
                 thresholds=list(thresholds), post_process=False, select_largest=False)


def load_face_embedder(device: str):
    """InceptionResnetV1 with VGGFace2 weights, or None when the weights file is not present.

    facenet-pytorch's own loader reads the file from ``$TORCH_HOME/checkpoints``; we only call it
    once the file is there, so it never tries the network.
    """
    if not FACE_EMBEDDER.path.is_file():
        return None
    from facenet_pytorch import InceptionResnetV1

    try:
        model = InceptionResnetV1(pretrained="vggface2")
    except Exception as exc:  # a damaged or foreign file
        raise ModelError(f"{FACE_EMBEDDER.name}: cannot load {FACE_EMBEDDER.path}: {exc}") from None
    return model.eval().to(device)


def describe_models() -> list[dict]:
    rows = []
    for m in ALL_MODELS:
        size = m.path.stat().st_size if not m.ships_with_package and m.path.is_file() else None
        rows.append({"model": m.name, "present": m.present(),
                     "path": "inside facenet-pytorch" if m.ships_with_package else str(m.path),
                     "size_mb": None if size is None else round(size / 1e6, 1), "url": m.url})
    return rows


def download_missing(progress: bool = True) -> list[str]:
    """Fetch missing weights with torch.hub's downloader; raise ModelError when offline."""
    from torch.hub import download_url_to_file

    fetched = []
    for m in ALL_MODELS:
        if m.present():
            continue
        m.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            download_url_to_file(m.url, str(m.path), progress=progress)
        except OSError as exc:
            m.path.unlink(missing_ok=True)
            raise ModelError(f"could not download {m.filename} from {m.url}: {exc}. "
                             f"Put the file in {m.path.parent} by hand.") from None
        fetched.append(str(m.path))
    return fetched
