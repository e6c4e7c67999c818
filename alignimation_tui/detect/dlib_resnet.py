"""A PyTorch port of dlib's 128-d face descriptor network (dlib_face_recognition_resnet_model_v1),
for a GPU; on a CPU the same network runs in OpenCV (``cv_nets``). The weights, the layer plan and
the chips are in ``dlib_dat`` (torch-free).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dlib_dat import (CHIP_SIZE, CHIP_TEMPLATE, DAT_NAME, POINT_WEIGHTS, BLOCKS, as_chips,  # noqa: F401
                       default_dat_path, face_chip, read_dat)
# --------------------------------------------------------------------------------------------
# the network

class _Block(nn.Module):
    """dlib's ares / ares_down: relu(con3x3(s) +affine, relu, con3x3 +affine, + skip).

    Affine layers are folded into the convolutions. The down variant's skip is avg_pool 2x2/2
    of the input; dlib's add_prev sums into the larger of each dimension, zero-padding the
    other tensor at the end: missing channels, and (at 8->3 vs 8->4 and 4->1 vs 4->2) rows
    and columns, which then also enter the final global average.
    """

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        s = 2 if down else 1
        self.down = down
        self.c1 = nn.Conv2d(cin, cout, 3, s, 0 if down else 1)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)

    def forward(self, x):
        y = self.c2(F.relu(self.c1(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        if skip.shape != y.shape:  # dlib's add_prev: max of each dim, zero-padded at the end
            h, w = max(y.shape[2], skip.shape[2]), max(y.shape[3], skip.shape[3])
            y = F.pad(y, (0, w - y.shape[3], 0, h - y.shape[2]))
            skip = F.pad(skip, (0, w - skip.shape[3], 0, h - skip.shape[2],
                                0, y.shape[1] - skip.shape[1]))
        return F.relu(y + skip)




class DlibFaceNet(nn.Module):
    """dlib's face recognition ResNet (150x150 RGB chip -> 128-d, unnormalised, as dlib)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 0)
        self.blocks = nn.Sequential(*[_Block(i, o, d) for i, o, d in BLOCKS])
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x):
        """x: float (N,3,150,150) RGB in 0..255."""
        x = (x - self.mean) * (1.0 / 256.0)
        x = F.max_pool2d(F.relu(self.conv1(x)), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean((2, 3)))

    @classmethod
    def from_file(cls, path=None, device="cpu") -> "DlibFaceNet":
        """Build from dlib's .dat (default: the face_recognition_models wheel's file)."""
        layers = read_dat(path)
        net = cls()
        convs = [net.conv1] + [c for b in net.blocks for c in (b.c1, b.c2)]
        # expected sequence, checked against the file
        it = iter(layers)
        first = next(it)
        if first["type"] != "input":
            raise ValueError("not a dlib input_rgb_image_sized network")
        net.mean.copy_(torch.from_numpy(first["mean"]).view(1, 3, 1, 1))
        rest = list(it)
        con = [l for l in rest if l["type"] == "con"]
        aff = [l for l in rest if l["type"] == "affine"]
        fc = [l for l in rest if l["type"] == "fc"]
        if len(con) != len(convs) or len(aff) != len(convs) or len(fc) != 1:
            raise ValueError(f"unexpected layers: {len(con)} con, {len(aff)} affine, {len(fc)} fc")
        kinds = [l["type"] for l in rest]
        # each conv must be followed directly by its affine
        for i, l in enumerate(rest):
            if l["type"] == "con" and kinds[i + 1] != "affine":
                raise ValueError("con not followed by affine")
        with torch.no_grad():
            for m, c, a in zip(convs, con, aff):
                w = torch.from_numpy(np.array(c["weight"]))  # (read_dat's are read-only views)
                if tuple(w.shape) != tuple(m.weight.shape):
                    raise ValueError(f"shape {tuple(w.shape)} != {tuple(m.weight.shape)}")
                if tuple(c["stride"]) != m.stride or tuple(c["pad"]) != m.padding:
                    raise ValueError(f"stride/pad {c['stride']}/{c['pad']} != {m.stride}/{m.padding}")
                g, b = torch.from_numpy(np.array(a["gamma"])), torch.from_numpy(np.array(a["beta"]))
                m.weight.copy_(w * g.view(-1, 1, 1, 1))
                m.bias.copy_(torch.from_numpy(np.array(c["bias"])) * g + b)
            net.fc.weight.copy_(torch.from_numpy(fc[0]["weight"]))
        net.eval().to(device)
        if torch.device(device).type == "cpu":
            net = net.to(memory_format=torch.channels_last)
        return net

    @torch.inference_mode()
    def embed(self, chips: np.ndarray, batch: int = 32) -> np.ndarray:
        """(N,150,150,3) uint8 RGB chips -> (N,128) float32 descriptors."""
        chips = as_chips(chips)
        dev = self.mean.device
        out = []
        for i in range(0, len(chips), batch):
            x = torch.from_numpy(np.ascontiguousarray(chips[i:i + batch])).to(dev)
            x = x.permute(0, 3, 1, 2).float()  # NHWC memory = channels_last
            if dev.type != "cpu":
                x = x.contiguous()
            out.append(self(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 128), np.float32)


