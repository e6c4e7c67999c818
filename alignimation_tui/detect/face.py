"""MTCNN face detection (every face: box, probability, 5 landmarks) and face embeddings."""
from __future__ import annotations

import ctypes
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import groupby

import numpy as np

from ..cores import usable_cores
from ..domain import Face, FaceDetection
from ..photos import Decoded

DETECTOR_ID = "mtcnn/facenet-pytorch-2.5.3"
EMBEDDER_ID = "dlib-resnet-v1/chip150-mtcnn5"
# detect.batch_size = 0: photos per MTCNN batch by device. A GPU wants wide batches (torch,
# letterboxed). On a CPU (OpenCV) a batch is the photos handed over at once, detected one by one:
# a few, so the descriptor and the progress follow closely.
AUTO_BATCH = {"cuda": 32, "cpu": 2}


def batch_size_for(configured: int, device: str) -> int:
    return configured if configured > 0 else AUTO_BATCH.get(str(device).split(":")[0], 2)


def cpu_workers() -> int:
    return max(1, min(4, usable_cores()))


@contextmanager
def torch_threads(n: int):
    """Run torch ops with ``n`` intra-op threads inside the block, then restore the setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def side_by_side_workers(detector: "FaceDetector") -> int:
    """How many of our threads detect side by side (``side_by_side``): on OpenCV (a CPU) one per
    core, up to 4; 1 elsewhere (torch batches, or splits its batches itself)."""
    return cpu_workers() if detector.on_opencv else 1


@contextmanager
def side_by_side(workers: int):
    """A pool of ``workers`` threads, each running one batch's networks with its share of OpenCV's
    threads, for the block. OpenCV spreads a small network's layers over the cores poorly (two of
    its threads ran MTCNN 1.07x and the second pass 1.3x as fast as one, here); two batches on one
    thread each ran 1.3-1.5x as fast as the batches one after the other on two, photos decoded (in
    a whole run, beside decoding and storing, much less: 0.91-1.0x the time, for 30-70 MB of the
    threads' own copies of the networks; see the README). The interpreter hands
    its lock over every 0.5 ms meanwhile (5 ms by default): a thread back from OpenCV would
    otherwise wait up to 5 ms for the other's numpy bookkeeping (that made the gain 0.9-1.3x)."""
    import sys

    from .cv_nets import cv2_threads

    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 0.0005))
    try:
        with cv2_threads(max(1, usable_cores() // workers)), \
                ThreadPoolExecutor(workers, thread_name_prefix="faces") as pool:
            yield pool
    finally:
        sys.setswitchinterval(interval)


_malloc_trim = None
# Decoded pixels detected between two trims (``release_freed_memory``): a phone photo's detection
# decode is 0.76 MP, so its batches of two are trimmed after each, as ever; small web photos
# (0.05-0.1 MP) free little each, and trimming after each batch of them (1-1.5 ms a walk through
# the heap) was 20-30 ms of a 26-photo run.
TRIM_EVERY_PIXELS = 1_500_000
_untrimmed = 0


def release_freed_memory(pixels: int | None = None) -> None:
    """Give memory freed by the last batches back to the OS. glibc keeps freed blocks in per-thread
    arenas, and with decode and detect threads the peak RSS would otherwise creep up with the
    number of photos. ``pixels``: the decoded pixels just detected; the memory is given back once
    they add up to ``TRIM_EVERY_PIXELS`` (None: now). A no-op where there is no glibc."""
    global _malloc_trim, _untrimmed
    if pixels is not None:
        _untrimmed += pixels  # (two threads may add at once: a trim a little late or early is harmless)
        if _untrimmed < TRIM_EVERY_PIXELS:
            return
        _untrimmed = 0
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def same_pixels(a: Decoded, b: Decoded) -> bool:
    """Whether two decodes of a photo hold the same pixels, standing for the original the same way
    (what MTCNN sees of them and how its faces map back are then the same)."""
    return ((a.width, a.height, a.orientation, a.stored_size) == (b.width, b.height, b.orientation, b.stored_size)
            and np.array_equal(np.asarray(a.image), np.asarray(b.image)))


class FaceDetector:
    """MTCNN (facenet-pytorch's networks and settings). Inputs are decoded photos; outputs are in
    upright original pixels. On a CPU it runs in numpy and OpenCV (``mtcnn_cpu``), photo by photo,
    ``workers`` of them side by side with one OpenCV thread each. On a GPU it runs in torch on
    letterboxed batches: photos of any size share a batch, each at the top-left of a padded tensor
    keeping its own pyramid and borders (see mtcnn_batch), so it gets the same faces as alone;
    landscape and portrait photos are batched apart, so little of a batch is padding. Every
    face MTCNN reports is kept (largest first); confidence filtering happens when choosing the
    subject, so changing it needs no new detection."""

    def __init__(self, mtcnn, batch_size: int, workers: int | None = None):
        self.mtcnn = mtcnn
        self.batch_size = batch_size
        # OpenCV's networks run on one thread of ours (OpenCV spreads each call over the cores):
        # two of ours, one OpenCV thread each, detected no faster and refined landmarks 1.4x
        # slower here, the interpreter lock and reshaped networks' allocations between them. The
        # other core decodes the next photos meanwhile. torch on a CPU: ``cpu_workers`` of ours.
        on_cpu = str(mtcnn.device).startswith("cpu")
        self.workers = workers or (cpu_workers() if on_cpu and not self.on_opencv else 1)
        self.calls = 0  # images passed to MTCNN, for tests and benchmarks

    @property
    def per_call(self) -> int:
        """How many photos to hand ``detect`` at once to keep every worker busy."""
        return self.batch_size * self.workers

    @property
    def on_opencv(self) -> bool:
        """The CPU's detector (``cv_nets``, ``mtcnn_cpu``: numpy and OpenCV, no torch), else torch's."""
        from .cv_nets import CvMtcnn  # (no torch there)

        return isinstance(self.mtcnn, CvMtcnn)

    def detect(self, photos: list[Decoded]) -> list[FaceDetection]:
        results: list[FaceDetection | None] = [None] * len(photos)
        sizes = [p.image.size for p in photos]
        portrait = lambda i: sizes[i][1] > sizes[i][0]  # noqa: E731
        order = sorted(range(len(photos)), key=lambda i: (portrait(i), sizes[i]))
        chunks = []
        for _, group in groupby(order, key=portrait):
            idx = list(group)
            chunks += [idx[start:start + self.batch_size] for start in range(0, len(idx), self.batch_size)]
        self.calls += len(photos)
        run = lambda chunk: self.detect_chunk([photos[i] for i in chunk])  # noqa: E731
        if self.workers > 1:
            with self.threads_per_worker():
                if len(chunks) > 1:
                    with ThreadPoolExecutor(min(self.workers, len(chunks)), thread_name_prefix="detect") as pool:
                        found = list(pool.map(run, chunks))
                else:
                    found = [run(chunk) for chunk in chunks]
        else:
            found = [run(chunk) for chunk in chunks]
        for chunk, dets in zip(chunks, found):
            for i, det in zip(chunk, dets):
                results[i] = det
        del found
        release_freed_memory(sum(w * h for w, h in sizes))
        return results  # type: ignore[return-value]

    def threads_per_worker(self):
        """Each worker's share of the library's threads, inside the block (OpenCV's or torch's)."""
        if self.on_opencv:
            from .cv_nets import cv2_threads

            return cv2_threads(1)
        import torch

        return torch_threads(torch.get_num_threads() // self.workers)

    def detect_chunk(self, photos: list[Decoded]) -> list[FaceDetection]:
        """One chunk of photos: one by one on OpenCV, one letterboxed batch on torch."""
        if self.on_opencv:
            from .mtcnn_cpu import detect_photo

            return [self._faces(photo, *detect_photo(photo.array(), self.mtcnn)) for photo in photos]
        return self.detect_letterboxed(photos)

    def detect_letterboxed(self, photos: list[Decoded]) -> list[FaceDetection]:
        """One MTCNN pass over ``photos`` padded into one tensor."""
        import torch

        from .mtcnn_batch import detect_batch

        sizes = np.array([p.image.size for p in photos], np.int64)
        width, height = sizes.max(axis=0)
        batch = np.zeros((len(photos), height, width, 3), np.uint8)
        for k, p in enumerate(photos):
            batch[k, :p.image.height, :p.image.width] = np.asarray(p.image)
        tensor = torch.from_numpy(batch).to(self.mtcnn.device).permute(0, 3, 1, 2).float()
        return [self._faces(photo, boxes, points)
                for photo, (boxes, points) in zip(photos, detect_batch(tensor, sizes, self.mtcnn, batch))]

    @staticmethod
    def _faces(photo: Decoded, boxes: np.ndarray, points: np.ndarray) -> FaceDetection:
        """MTCNN's boxes and points in the decoded photo's pixels -> a detection in upright
        original pixels, largest face first."""
        sx, sy = photo.scale_xy
        faces = [Face(box=(float(b[0] / sx), float(b[1] / sy), float(b[2] / sx), float(b[3] / sy)),
                      prob=float(b[4]),
                      landmarks=tuple((float(x / sx), float(y / sy)) for x, y in lm))
                 for b, lm in zip(boxes.astype(np.float64), points.astype(np.float64))]
        faces.sort(key=lambda f: -f.size)
        return FaceDetection(photo.width, photo.height, tuple(faces))


class FaceEmbedder:
    """dlib's ResNet face descriptor (``detect.dlib_resnet``): a 128-d vector per face, from a
    150x150 chip aligned on the face's five landmarks; Euclidean distances as dlib's (the same
    person about 0.25-0.65 apart, others 0.55-1.0)."""

    def __init__(self, model, device: str):
        self.model = model
        self.device = device

    def embed(self, photo: Decoded, detection: FaceDetection) -> np.ndarray:
        return self.embed_many([(photo, detection)])[0]

    def embed_many(self, items: list[tuple[Decoded, FaceDetection]]) -> list[np.ndarray]:
        """(F_i, 128) per photo: every face's chip cut, then all of them through the network at once."""
        from .dlib_dat import face_chip

        chips, counts = [], []
        for photo, detection in items:
            counts.append(len(detection.faces))
            if not detection.faces:
                continue
            rgb = Decoded.upright_array(photo.array(), photo.orientation)
            sx, sy = photo.scale_xy
            chips += [face_chip(rgb, np.asarray(face.landmarks, np.float64) * [sx, sy]) for face in detection.faces]
        vectors = self.model.embed(np.stack(chips)) if chips else np.zeros((0, 128), np.float32)
        return np.split(vectors, np.cumsum(counts)[:-1])
