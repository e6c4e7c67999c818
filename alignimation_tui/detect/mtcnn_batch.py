"""MTCNN's three stages on a letterboxed batch: photos of any size share one padded tensor.

The networks, thresholds and pyramid are facenet-pytorch's (``mtcnn_nets``); what differs
from its ``detect_face``:

* Each photo keeps its own size inside the batch (it sits at the top-left of the padded tensor).
  Its pyramid is its own (built from its own short side), each pyramid level is resized from its
  own pixels only, P-Net windows that reach into the padding are dropped, and boxes are clipped to
  the photo, not to the tensor. So a photo gives the same faces in any batch as alone.
* The crops for R-Net (24x24) and O-Net (48x48) are cut and resized for all boxes at once from a
  summed-area table. It is the same "area" resize (``adaptive_avg_pool2d`` bins) that facenet
  runs one box at a time in a Python loop, which was the largest single cost on a CPU.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn.functional import interpolate

from .mtcnn_common import nms_min, pnet_out as _pnet_out, pyramid  # noqa: F401
from .mtcnn_nets import batched_nms

_NORM = 0.0078125  # facenet's (x - 127.5) / 128


def _bins(start: torch.Tensor, stop: torch.Tensor, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """adaptive_avg_pool2d's bins of [start, stop) into ``out``: [floor(i*n/o), ceil((i+1)*n/o))."""
    k = torch.arange(out, device=start.device)
    n = (stop - start)[..., None]
    return start[..., None] + (k * n) // out, start[..., None] + ((k + 1) * n + out - 1) // out


def _area_resize(integral: torch.Tensor, h: int, w: int, oh: int, ow: int) -> torch.Tensor:
    """``interpolate(photo, (oh, ow), mode="area")`` of one photo's top-left h x w pixels, from
    its summed-area table: the same floats (each bin's sum is an exact integer, divided by the
    bin's height and then its width as the CPU kernel does), without reading every pixel at every
    level (the pyramid's area resizes were the largest cost of detection on a CPU)."""
    zero = torch.zeros((), dtype=torch.int64, device=integral.device)
    ys, ye = _bins(zero, zero + h, oh)
    xs, xe = _bins(zero, zero + w, ow)
    rows = integral.index_select(0, ye) - integral.index_select(0, ys)
    total = (rows.index_select(1, xe) - rows.index_select(1, xs)).float()  # (oh, ow, 3)
    return (total / (ye - ys).float()[:, None, None] / (xe - xs).float()[None, :, None]).permute(2, 0, 1)


def _integrals(imgs: torch.Tensor, sizes: np.ndarray, which, pixels: np.ndarray | None = None) -> dict[int, torch.Tensor]:
    """Summed-area tables of the 8-bit pixels, in integers (exact), one photo at a time, as
    (h+1, w+1, 3) with a zero row and column first. ``pixels``: the same photos as a (B, H, W, 3)
    uint8 array, on a CPU: OpenCV's ``integral`` reads it in one pass (a 1008x756 photo in ~2 ms,
    against ~29 ms for torch's cumsum with the rows added one at a time, and ~25 ms more to bring
    the float tensor back to 8-bit pixels in that layout)."""
    out = {}
    for i in which:
        w, h = int(sizes[i][0]), int(sizes[i][1])
        exact32 = 255 * w * h < 2**31
        if pixels is not None:
            import cv2

            table = cv2.integral(pixels[i, :h, :w], sdepth=cv2.CV_32S if exact32 else cv2.CV_64F)
            if not exact32:  # float64 sums of 8-bit pixels are exact integers far beyond int32
                table = table.astype(np.int64)
            out[i] = torch.from_numpy(table)
            continue
        dt = torch.int32 if exact32 else torch.int64
        s = torch.zeros((3, h + 1, w + 1), dtype=dt, device=imgs.device)
        torch.cumsum(imgs[i, :, :h, :w].to(dt), 2, dtype=dt, out=s[:, 1:, 1:])
        s.cumsum_(1)
        out[i] = s.permute(1, 2, 0)
    return out


def _stage1(imgs: torch.Tensor, sizes: np.ndarray, mtcnn,
            integrals: dict[int, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """P-Net over every photo's own pyramid. Returns boxes (N, 9) and their photo index (N,).
    With ``integrals`` (each photo's summed-area table) the pyramid levels come from them."""
    device = imgs.device
    H, W = imgs.shape[2:]
    scale_lists = [pyramid(min(int(w), int(h)), mtcnn.min_face_size, mtcnn.factor) for w, h in sizes]
    boxes, inds = [], []
    for level in range(max(map(len, scale_lists), default=0)):
        members = [i for i, sl in enumerate(scale_lists) if len(sl) > level]
        s = scale_lists[members[0]][level]
        lh = [int(int(sizes[i][1]) * s + 1) for i in members]
        lw = [int(int(sizes[i][0]) * s + 1) for i in members]
        same = all(int(sizes[i][0]) == W and int(sizes[i][1]) == H for i in members)
        if integrals is not None:
            data = torch.zeros((len(members), 3, max(lh), max(lw)), dtype=imgs.dtype, device=device)
            for j, i in enumerate(members):
                data[j, :, :lh[j], :lw[j]] = _area_resize(integrals[i], int(sizes[i][1]), int(sizes[i][0]),
                                                          lh[j], lw[j])
        elif same:  # (no copy of the batch when every photo takes part)
            src = imgs if len(members) == len(imgs) else imgs[members]
            data = interpolate(src, size=(lh[0], lw[0]), mode="area")
        else:
            data = torch.zeros((len(members), 3, max(lh), max(lw)), dtype=imgs.dtype, device=device)
            for j, i in enumerate(members):
                w, h = int(sizes[i][0]), int(sizes[i][1])
                data[j, :, :lh[j], :lw[j]] = interpolate(imgs[i:i + 1, :, :h, :w], size=(lh[j], lw[j]), mode="area")[0]
        data = (data - 127.5) * _NORM
        reg, probs = mtcnn.pnet(data)
        mask = probs[:, 1] >= mtcnn.thresholds[0]
        if not same:  # windows that reach past a photo's own pixels do not exist when it is alone
            oh = torch.tensor([_pnet_out(v) for v in lh], device=device)
            ow = torch.tensor([_pnet_out(v) for v in lw], device=device)
            rows = torch.arange(mask.shape[1], device=device)[None, :, None]
            cols = torch.arange(mask.shape[2], device=device)[None, None, :]
            mask &= (rows < oh[:, None, None]) & (cols < ow[:, None, None])
        idx = mask.nonzero()
        score = probs[:, 1][mask]
        r = reg.permute(0, 2, 3, 1)[mask]
        bb = idx[:, 1:].to(reg.dtype).flip(1)
        q1 = ((2 * bb + 1) / s).floor()
        q2 = ((2 * bb + 12) / s).floor()
        b = torch.cat([q1, q2, score[:, None], r], dim=1)
        img_i = torch.as_tensor(members, device=device)[idx[:, 0]]
        keep = batched_nms(b[:, :4], b[:, 4], img_i, 0.5)
        boxes.append(b[keep])
        inds.append(img_i[keep])
    if not boxes:
        return torch.zeros((0, 9), device=device), torch.zeros((0,), dtype=torch.long, device=device)
    return torch.cat(boxes), torch.cat(inds)


def _rerec(b: torch.Tensor) -> torch.Tensor:
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    side = torch.max(w, h)
    b = b.clone()
    b[:, 0] = b[:, 0] + w * 0.5 - side * 0.5
    b[:, 1] = b[:, 1] + h * 0.5 - side * 0.5
    b[:, 2:4] = b[:, :2] + side[:, None]
    return b


def _bbreg(b: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    out = b.clone()
    out[:, :4] = b[:, :4] + reg[:, :4] * torch.stack([w, h, w, h], dim=1)
    return out


def _crops(integrals: list[torch.Tensor], boxes: torch.Tensor, inds: torch.Tensor, sizes: np.ndarray,
           out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every box cut from its photo (clipped to the photo, as facenet's ``pad`` does) and
    area-resized to out x out. Returns the crops and a mask of the boxes that had any pixels."""
    b = boxes[:, :4].trunc().to(torch.int64)
    lim_w = torch.as_tensor(sizes[:, 0], device=b.device)[inds]
    lim_h = torch.as_tensor(sizes[:, 1], device=b.device)[inds]
    x0 = b[:, 0].clamp(min=1) - 1
    y0 = b[:, 1].clamp(min=1) - 1
    x1 = torch.minimum(b[:, 2], lim_w)
    y1 = torch.minimum(b[:, 3], lim_h)
    ok = (x1 > x0) & (y1 > y0)
    x0, y0, x1, y1, inds = x0[ok], y0[ok], x1[ok], y1[ok], inds[ok]
    k = torch.arange(out, device=b.device)

    def bins(start, stop):  # adaptive_avg_pool2d's bins: [floor(i*n/o), ceil((i+1)*n/o))
        n = (stop - start)[:, None]
        return start[:, None] + (k * n) // out, start[:, None] + ((k + 1) * n + out - 1) // out

    ys, ye = bins(y0, y1)
    xs, xe = bins(x0, x1)
    crops = torch.empty((len(inds), 3, out, out), dtype=torch.float32, device=b.device)
    for i in inds.unique().tolist():
        sel = (inds == i).nonzero()[:, 0]
        s = integrals[i]
        a, c = ys[sel][:, :, None], ye[sel][:, :, None]
        d, e = xs[sel][:, None, :], xe[sel][:, None, :]
        total = s[c, e] - s[a, e] - s[c, d] + s[a, d]  # (n, out, out, 3)
        crops[sel] = (total.float() / ((c - a) * (e - d)).float()[..., None]).permute(0, 3, 1, 2)
    return crops, ok


def _run(net, data: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, ...]:
    if data.device.type == "cpu":  # R- and O-Net 3x faster in channels-last there (outputs within 3e-7)
        data = data.contiguous(memory_format=torch.channels_last)
    outs = [net(data[i:i + chunk]) for i in range(0, len(data), chunk)]
    return tuple(torch.cat(v) for v in zip(*outs))


def detect_batch(imgs: torch.Tensor, sizes: np.ndarray, mtcnn,
                 pixels: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Faces in each photo of a letterboxed batch.

    imgs: (B, 3, H, W) float tensor of 0..255 pixels on the detector's device, photo i in
    ``[:, :sizes[i][1], :sizes[i][0]]``; ``pixels``: the same as a (B, H, W, 3) uint8 array (on
    a CPU the summed-area tables are made from it). Returns per photo ``(boxes (n, 5) with
    probability last, landmarks (n, 5, 2))`` in that photo's pixels, most probable first."""
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    device = imgs.device
    t1, t2, t3 = mtcnn.thresholds
    with torch.inference_mode():
        # On a CPU the pyramid comes from the summed-area tables the crops need anyway (the same
        # floats as interpolate, a fifth of the time); a GPU's interpolate is fast as it is.
        on_cpu = device.type == "cpu"
        integrals = _integrals(imgs, sizes, range(len(sizes)), pixels) if on_cpu else None
        boxes, inds = _stage1(imgs, sizes, mtcnn, integrals)
        empty = [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)) for _ in range(len(sizes))]
        if len(boxes) == 0:
            return empty
        keep = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
        boxes, inds = boxes[keep], inds[keep]
        regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                             boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                             boxes[:, 4]], dim=1)
        boxes = _rerec(boxes)

        if integrals is None:
            integrals = _integrals(imgs, sizes, inds.unique().tolist())

        crops, ok = _crops(integrals, boxes, inds, sizes, 24)
        boxes, inds = boxes[ok], inds[ok]
        if len(boxes):
            reg, prob = _run(mtcnn.rnet, (crops - 127.5) * _NORM)
            passed = prob[:, 1] > t2
            boxes = torch.cat([boxes[passed, :4], prob[passed, 1:2]], dim=1)
            inds, reg = inds[passed], reg[passed]
            keep = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
            boxes = _rerec(_bbreg(boxes[keep], reg[keep]))
            inds = inds[keep]

        points = torch.zeros((0, 5, 2), device=device)
        if len(boxes):
            crops, ok = _crops(integrals, boxes, inds, sizes, 48)
            boxes, inds = boxes[ok], inds[ok]
        if len(boxes):
            reg, pts, prob = _run(mtcnn.onet, (crops - 127.5) * _NORM)
            passed = prob[:, 1] > t3
            boxes = torch.cat([boxes[passed, :4], prob[passed, 1:2]], dim=1)
            inds, reg, pts = inds[passed], reg[passed], pts[passed]
            w = boxes[:, 2] - boxes[:, 0] + 1
            h = boxes[:, 3] - boxes[:, 1] + 1
            px = w[:, None] * pts[:, :5] + boxes[:, 0:1] - 1
            py = h[:, None] * pts[:, 5:10] + boxes[:, 1:2] - 1
            points = torch.stack([px, py], dim=2)
            boxes = _bbreg(boxes, reg)
            keep = _nms_min(boxes[:, :4].cpu().numpy(), boxes[:, 4].cpu().numpy(), inds.cpu().numpy(), 0.7)
            boxes, inds, points = boxes[keep], inds[keep], points[keep]
        boxes_np, points_np, inds_np = boxes.cpu().numpy(), points.cpu().numpy(), inds.cpu().numpy()
    out = []
    for i in range(len(sizes)):
        sel = np.nonzero(inds_np == i)[0]
        order = sel[np.argsort(-boxes_np[sel, 4], kind="stable")]
        out.append((boxes_np[order].astype(np.float32), points_np[order].astype(np.float32)))
    return out


def _nms_min(boxes: np.ndarray, scores: np.ndarray, inds: np.ndarray, threshold: float) -> np.ndarray:
    """facenet's last NMS: overlap = intersection over the smaller box, per photo."""
    keep = []
    for i in np.unique(inds):
        sel = np.nonzero(inds == i)[0]
        picked = nms_min(boxes[sel], scores[sel], threshold)
        keep.extend(sel[np.asarray(picked, np.int64)].tolist())
    return np.asarray(sorted(keep), np.int64)
