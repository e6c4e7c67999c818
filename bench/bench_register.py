"""Registration speed and accuracy: ours (closed form + batched semantic refinement) against the
original recipe (kornia ImageRegistrator("similarity", tolerance=1e-8, loss_fn=F.mse_loss) on
full-resolution semantic images, one frame at a time), in the same process.

    .venv/bin/python bench/bench_register.py --quick            # under a minute on a 2-core CPU
    .venv/bin/python bench/bench_register.py --device cuda      # sizes 1008x756 and 4032x3024, batches 1/64/512

Synthetic frames: a silhouette (head and body ellipses) with 5 keypoints, moved by a known
similarity (rotation +-15 deg, scale 0.8-1.2, shift +-8 %), keypoint noise 0 and 1 % of the height.
Error = mean keypoint distance after alignment to the reference's keypoints, % of the height.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignimation_tui.register import RefineSettings, apply, register_frames  # noqa: E402

# Reference layout in units of the image height (x, y): ear, shoulder, elbow-ish, hip, knee-ish.
KP = np.array([[0.50, 0.22], [0.47, 0.38], [0.60, 0.52], [0.50, 0.66], [0.46, 0.85]])
ELLIPSES = [((0.50, 0.22), (0.08, 0.10)), ((0.50, 0.55), (0.15, 0.30))]  # head, body


def truths(n, w, h, rng):
    out = []
    for _ in range(n):
        a, s = math.radians(rng.uniform(-15, 15)), rng.uniform(0.8, 1.2)
        tx, ty = rng.uniform(-0.08, 0.08) * w, rng.uniform(-0.08, 0.08) * h
        c, si = s * math.cos(a), s * math.sin(a)
        cx, cy = w / 2, h / 2
        out.append(np.array([[c, -si, cx - c * cx + si * cy + tx], [si, c, cy - si * cx - c * cy + ty], [0, 0, 1]]))
    return np.stack(out)  # frame -> reference


def silhouette(xs, ys, h):
    """Soft mask of the reference silhouette at reference pixel coordinates."""
    m = np.zeros(np.broadcast(xs, ys).shape)
    for (cx, cy), (rx, ry) in ELLIPSES:
        r2 = ((xs - cx * h) / (rx * h)) ** 2 + ((ys - cy * h) / (ry * h)) ** 2
        m = np.maximum(m, 0.5 * (1 + np.tanh((1 - r2) / 0.1)))
    return m


def frame_mask(t, hh, ww, scale, h):
    """Mask of one frame sampled on a (hh, ww) grid whose pixels are frame pixels * scale."""
    ys, xs = np.mgrid[0:hh, 0:ww] / scale
    rx = t[0, 0] * xs + t[0, 1] * ys + t[0, 2]
    ry = t[1, 0] * xs + t[1, 1] * ys + t[1, 2]
    return silhouette(rx, ry, h)


def ours(n, w, h, noise, batch, device, rng, settings):
    ts = truths(n, w, h, rng)
    ref = KP * [h, h] + [(w - h) / 2, 0]
    clean = np.stack([apply(np.linalg.inv(t), ref) for t in ts])
    pts = clean + rng.normal(scale=noise * h, size=clean.shape)
    work = settings.work_size
    sscale = work / max(w, h)
    masks = np.stack([frame_mask(t, work, work, sscale, h) for t in ts])[:, None]
    dh, dw = round(h * sscale), round(w * sscale)
    ref_mask = frame_mask(np.eye(3), dh, dw, sscale, h)[None, None]
    st = RefineSettings(settings.sigma, settings.work_size, settings.iterations, settings.lr, batch,
                        settings.mask_channel)
    args = dict(sizes=np.tile([w, h], (n, 1)), ref_points=ref, ref_weights=np.ones(5), canvas=(w, h), ref_scale=1.0,
                masks=masks, ref_mask=ref_mask, settings=st, device=device)
    register_frames(pts[:min(n, 2)], np.ones((min(n, 2), 5)), **{**args, "sizes": args["sizes"][:2],
                    "masks": masks[:2]})  # warm-up: imports, kernels
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    m, _, _ = register_frames(pts, np.ones((n, 5)), **args)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    closed, _, _ = register_frames(pts, np.ones((n, 5)), **{**args, "settings": None})
    err = np.linalg.norm(apply(m, clean) - ref, axis=-1).mean(-1) / h * 100
    err0 = np.linalg.norm(apply(closed, clean) - ref, axis=-1).mean(-1) / h * 100
    return n / dt, err, err0


def semantic_image(points, w, h, t, device):
    sigma = 0.04 * max(w, h)
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    p = torch.as_tensor(points, dtype=torch.float32, device=device)
    g = torch.exp(-((xs - p[:, 0, None, None]) ** 2 + (ys - p[:, 1, None, None]) ** 2) / (2 * sigma * sigma))
    mask = torch.as_tensor(frame_mask(t, h, w, 1.0, h), dtype=torch.float32, device=device)
    return (g * mask)[None]


def seed(n, w, h, noise, device, rng):
    """The original recipe, one frame at a time, at full resolution."""
    from kornia.geometry import ImageRegistrator

    ts = truths(n, w, h, rng)
    ref = KP * [h, h] + [(w - h) / 2, 0]
    dst = semantic_image(ref, w, h, np.eye(3), device)
    norm = np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])  # pixels -> [-1, 1]
    errs, total = [], 0.0
    for t in ts:
        clean = apply(np.linalg.inv(t), ref)
        src = semantic_image(clean + rng.normal(scale=noise * h, size=clean.shape), w, h, t, device)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        reg = ImageRegistrator("similarity", tolerance=1e-8, loss_fn=F.mse_loss).to(device)
        model = reg.register(src, dst)
        if device == "cuda":
            torch.cuda.synchronize()
        total += time.perf_counter() - t0
        # The registrator's model samples src at model(x) for each dst pixel x: invert it to get
        # frame -> reference, and move it from its [-1, 1] coordinates to pixels.
        m = np.linalg.inv(np.linalg.inv(norm) @ model[0].detach().double().cpu().numpy() @ norm)
        errs.append(np.linalg.norm(apply(m, clean) - ref, axis=-1).mean() / h * 100)
    return n / total, np.array(errs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes, a few frames")
    ap.add_argument("--seed-frames", type=int, help="frames for the original recipe per case")
    args = ap.parse_args()
    sizes = [(504, 378)] if args.quick else [(1008, 756), (4032, 3024)]
    batches = [1, 16] if args.quick else [1, 64, 512]
    seed_frames = args.seed_frames or (1 if args.quick else 2)
    settings = RefineSettings()
    rng = np.random.default_rng(0)
    torch.set_grad_enabled(True)
    print(f"device {args.device}; ours: work {settings.work_size}px, {settings.iterations} steps")
    summary = {}
    for w, h in sizes:
        for noise in (0.0, 0.01):
            s_fps, s_err = (None, None)
            if args.device == "cuda" or w * h <= 1008 * 756:
                s_fps, s_err = seed(seed_frames, w, h, noise, args.device, rng)
                print(f"{w}x{h} noise {noise:.0%} seed   : {s_fps:8.3f} frames/s  err median {np.median(s_err):.3f}%"
                      f" p95 {np.percentile(s_err, 95):.3f}%")
            else:
                print(f"{w}x{h}: the original recipe is not run at this size on the CPU (minutes per frame)")
            for b in batches:
                n = b if b > 1 else 8
                fps, err, err0 = ours(n, w, h, noise, b, args.device, rng, settings)
                ratio = f"  {fps / s_fps:8.1f}x seed" if s_fps else ""
                print(f"{w}x{h} noise {noise:.0%} ours b={b:<4}: {fps:8.1f} frames/s  err median "
                      f"{np.median(err):.3f}% p95 {np.percentile(err, 95):.3f}%  (closed form {np.median(err0):.3f}%)"
                      + ratio)
                summary[(w, h, noise, b)] = (fps, err, s_fps, s_err, err0)
    w, h = sizes[0]
    fps, err, s_fps, s_err, _ = summary[(w, h, 0.0, batches[-1])]
    print(json.dumps({"ours_fps": round(fps, 2), "seed_fps": round(s_fps, 4), "speedup": round(fps / s_fps, 1),
                      "ours_err_median_pct": round(float(np.median(err)), 4),
                      "seed_err_median_pct": round(float(np.median(s_err)), 4),
                      "ours_err_p95_pct": round(float(np.percentile(err, 95)), 4), "device": args.device,
                      "size": f"{w}x{h}", "batch": batches[-1]}))


if __name__ == "__main__":
    main()
