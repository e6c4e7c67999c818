"""MTCNN face detection (every face: box, probability, 5 landmarks) and face embeddings."""
from __future__ import annotations

from itertools import groupby

import numpy as np

from ..domain import Face, FaceDetection
from ..photos import Decoded

DETECTOR_ID = "mtcnn/facenet-pytorch-2.5.3"
EMBEDDER_ID = "inception-resnet-v1/vggface2"
EMBED_SIZE = 160


class FaceDetector:
    """Wraps facenet-pytorch's MTCNN. Inputs are decoded photos; outputs are in upright original
    pixels. Photos of the same decoded size go through MTCNN as one batch. Every face MTCNN
    reports is kept (largest first); confidence filtering happens when choosing the subject, so
    changing it needs no new detection."""

    def __init__(self, mtcnn, batch_size: int):
        self.mtcnn = mtcnn
        self.batch_size = batch_size
        self.calls = 0  # images passed to MTCNN, for tests and benchmarks

    def detect(self, photos: list[Decoded]) -> list[FaceDetection]:
        results: list[FaceDetection | None] = [None] * len(photos)
        order = sorted(range(len(photos)), key=lambda i: photos[i].image.size)
        for _, same_size in groupby(order, key=lambda i: photos[i].image.size):
            idx = list(same_size)
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                for i, found in zip(chunk, self._detect_same_size([photos[i] for i in chunk])):
                    results[i] = found
        return results  # type: ignore[return-value]

    def _detect_same_size(self, photos: list[Decoded]) -> list[FaceDetection]:
        self.calls += len(photos)
        batch = np.stack([np.asarray(p.image) for p in photos])
        boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
        out = []
        for photo, b, p, pts in zip(photos, boxes, probs, points):
            sx, sy = photo.scale_xy
            faces = []
            if b is not None:
                for box, prob, lm in zip(np.asarray(b, np.float64), np.asarray(p, np.float64),
                                         np.asarray(pts, np.float64)):
                    faces.append(Face(
                        box=(box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy),
                        prob=float(prob),
                        landmarks=tuple((float(x / sx), float(y / sy)) for x, y in lm),
                    ))
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
