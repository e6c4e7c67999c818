"""MTCNN face detection (every face: box, probability, 5 landmarks) and face embeddings."""
from __future__ import annotations

from itertools import groupby

import numpy as np

from ..domain import Face, FaceDetection
from ..photos import Decoded

DETECTOR_ID = "mtcnn/facenet-pytorch-2.5.3"
EMBEDDER_ID = "inception-resnet-v1/vggface2"
EMBED_SIZE = 160
# detect.batch_size = 0: photos per MTCNN batch by device. A GPU wants wide batches; on a CPU a
# batch buys little (the convolutions already use every core) and costs memory.
AUTO_BATCH = {"cuda": 32, "cpu": 4}


def batch_size_for(configured: int, device: str) -> int:
    return configured if configured > 0 else AUTO_BATCH.get(str(device).split(":")[0], 4)


class FaceDetector:
    """MTCNN (facenet-pytorch's networks and settings) on letterboxed batches. Inputs are decoded
    photos; outputs are in upright original pixels. Photos of any size share a batch: each sits at
    the top-left of a padded tensor and keeps its own pyramid and borders (see mtcnn_batch), so it
    gets the same faces as alone. Landscape and portrait photos are batched apart, so little of a
    batch is padding. Every face MTCNN reports is kept (largest first); confidence filtering happens
    when choosing the subject, so changing it needs no new detection."""

    def __init__(self, mtcnn, batch_size: int):
        self.mtcnn = mtcnn
        self.batch_size = batch_size
        self.calls = 0  # images passed to MTCNN, for tests and benchmarks

    def detect(self, photos: list[Decoded]) -> list[FaceDetection]:
        results: list[FaceDetection | None] = [None] * len(photos)
        sizes = [p.image.size for p in photos]
        portrait = lambda i: sizes[i][1] > sizes[i][0]  # noqa: E731
        order = sorted(range(len(photos)), key=lambda i: (portrait(i), sizes[i]))
        for _, group in groupby(order, key=portrait):
            idx = list(group)
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                for i, found in zip(chunk, self.detect_letterboxed([photos[i] for i in chunk])):
                    results[i] = found
        return results  # type: ignore[return-value]

    def detect_letterboxed(self, photos: list[Decoded]) -> list[FaceDetection]:
        """One MTCNN pass over ``photos`` padded into one tensor."""
        import torch

        from .mtcnn_batch import detect_batch

        self.calls += len(photos)
        sizes = np.array([p.image.size for p in photos], np.int64)
        width, height = sizes.max(axis=0)
        batch = np.zeros((len(photos), height, width, 3), np.uint8)
        for k, p in enumerate(photos):
            batch[k, :p.image.height, :p.image.width] = np.asarray(p.image)
        tensor = torch.from_numpy(batch).to(self.mtcnn.device).permute(0, 3, 1, 2).float()
        out = []
        for photo, (boxes, points) in zip(photos, detect_batch(tensor, sizes, self.mtcnn)):
            sx, sy = photo.scale_xy
            faces = [Face(box=(float(b[0] / sx), float(b[1] / sy), float(b[2] / sx), float(b[3] / sy)),
                          prob=float(b[4]),
                          landmarks=tuple((float(x / sx), float(y / sy)) for x, y in lm))
                     for b, lm in zip(boxes.astype(np.float64), points.astype(np.float64))]
            faces.sort(key=lambda f: -f.size)
            out.append(FaceDetection(photo.width, photo.height, tuple(faces)))
        return out


class FaceEmbedder:
    """InceptionResnetV1: a 512-d unit vector per face, from a square crop around its box."""

    def __init__(self, model, device: str):
        self.model = model
        self.device = device

    def embed(self, photo: Decoded, detection: FaceDetection) -> np.ndarray:
        import torch
        from PIL import Image

        if not detection.faces:
            return np.zeros((0, 512), np.float32)
        sx, sy = photo.scale_xy
        crops = []
        for face in detection.faces:
            x0, y0, x1, y1 = face.box
            crop = photo.image.crop((round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)))
            crop = crop.resize((EMBED_SIZE, EMBED_SIZE), Image.Resampling.BILINEAR)
            crops.append(np.asarray(crop, np.float32))
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)
        batch = ((batch - 127.5) / 128.0).to(self.device)  # facenet's fixed standardisation
        with torch.inference_mode():
            return self.model(batch).float().cpu().numpy()
