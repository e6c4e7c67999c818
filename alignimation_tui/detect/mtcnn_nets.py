"""MTCNN's three networks as facenet-pytorch 2.5.3 defines them (MIT licence), with the weights it
ships (``facenet_pytorch/data/{pnet,rnet,onet}.pt``), built without importing facenet-pytorch:
its package imports torchvision, OpenCV and the face embedder, seconds that a small folder paid
before its first photo. Same layers, same names, same weights: the same outputs (a test checks
them against facenet-pytorch's own ``MTCNN``).

Non-maximum suppression is torchvision's compiled ``nms``, loaded from torchvision's own
extension library without importing the Python package (which imports torch._dynamo); where that
library cannot be found, torchvision is imported as usual.
"""
from __future__ import annotations

import importlib.machinery
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .mtcnn_common import FACTOR, nms_min, package_dir as _package_dir, weights_dir  # noqa: F401


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x):
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


@dataclass
class Mtcnn:
    """What detection uses of facenet-pytorch's ``MTCNN``: the three networks and its settings."""

    pnet: PNet
    rnet: RNet
    onet: ONet
    device: torch.device
    min_face_size: float = 20
    thresholds: tuple = (0.6, 0.7, 0.7)
    factor: float = FACTOR


def load_mtcnn(folder: Path, device: str, min_face_size: float, thresholds) -> Mtcnn:
    nets = []
    for cls, name in ((PNet, "pnet"), (RNet, "rnet"), (ONet, "onet")):
        net = cls()
        net.load_state_dict(torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True))
        nets.append(net.eval().to(device))
    return Mtcnn(*nets, device=torch.device(device), min_face_size=min_face_size, thresholds=tuple(thresholds))


_nms = None


def _registered_nms():
    try:
        return torch.ops.torchvision.nms
    except (AttributeError, RuntimeError):
        return None


def _load_nms():
    """torchvision's ``nms`` op: its extension library loaded by itself, else the package."""
    folder = _package_dir("torchvision")
    if folder is not None and _registered_nms() is None:
        libs = [folder / f"{stem}{suffix}" for stem in ("_C_stable", "_C")
                for suffix in importlib.machinery.EXTENSION_SUFFIXES]
        for lib in filter(Path.is_file, libs):
            try:
                torch.ops.load_library(str(lib))
            except (OSError, RuntimeError):
                continue
            if _registered_nms() is not None:
                break
    op = _registered_nms()
    if op is None:
        from torchvision.ops import nms as op
    return op


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``torchvision.ops.batched_nms``, the same two strategies at the same size threshold."""
    global _nms
    if _nms is None:
        _nms = _load_nms()
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000):
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for class_id in torch.unique(idxs):
            curr = torch.where(idxs == class_id)[0]
            keep_mask[curr[_nms(boxes[curr], scores[curr], iou_threshold)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(descending=True)[1]]
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return _nms(boxes + offsets[:, None], scores, iou_threshold)
