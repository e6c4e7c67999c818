"""Similarity registration of every frame onto the reference's canvas.

Transforms are 3x3 matrices from upright original pixels to output canvas pixels, so rendering is
one warp per frame straight from the original to the output size.

Closed form: a weighted least-squares similarity (rotation, uniform scale, shift; no reflection)
from a frame's keypoints to the reference's keypoints on the canvas. In complex numbers, with
weighted centroids removed, ``z = sum(w * conj(src) * dst) / sum(w * |src|^2)``; that is Umeyama's
solution for 2-D. Landmark weights favour the eyes (see ``register.landmark_weights``): smiles and
slight turns move the mouth and nose, and a uniform fit drags the eyes off with them.
"""
from __future__ import annotations

import math

import os
from dataclasses import dataclass

import numpy as np


def canvas_for(width: int, height: int, long_side: int) -> tuple[tuple[int, int], float]:
    """The output canvas for a reference photo of ``width`` x ``height``: its framing, ``long_side``
    pixels on the long side, even dimensions. Returns (canvas size, scale from reference pixels)."""
    scale = long_side / max(width, height)
    even = lambda v: max(2, int(round(v * scale)) // 2 * 2)  # noqa: E731
    return (even(width), even(height)), scale


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Batched weighted least-squares similarity.

    src: (N, K, 2) keypoints per frame; dst: (K, 2) or (N, K, 2) targets; weights: (K,) or (N, K),
    zero for a missing keypoint. Returns (N, 3, 3) matrices mapping src onto dst. A frame with fewer
    than two weighted keypoints gets the identity.
    """
    src = np.asarray(src, np.float64)
    n, k, _ = src.shape
    dst = np.broadcast_to(np.asarray(dst, np.float64), (n, k, 2))
    w = np.broadcast_to(np.asarray(weights, np.float64), (n, k)).copy()
    w[~np.isfinite(src).all(-1) | ~np.isfinite(dst).all(-1)] = 0.0
    s = np.nan_to_num(src[..., 0] + 1j * src[..., 1])
    d = np.nan_to_num(dst[..., 0] + 1j * dst[..., 1])
    wsum = w.sum(1, keepdims=True)
    safe = np.where(wsum > 0, wsum, 1.0)
    mu_s, mu_d = (w * s).sum(1, keepdims=True) / safe, (w * d).sum(1, keepdims=True) / safe
    sc, dc = s - mu_s, d - mu_d
    denom = (w * np.abs(sc) ** 2).sum(1)
    ok = (np.count_nonzero(w > 0, axis=1) >= 2) & (denom > 1e-12)
    z = np.where(ok, (w * np.conj(sc) * dc).sum(1) / np.where(ok, denom, 1.0), 1.0)
    t = np.where(ok, mu_d[:, 0] - z * mu_s[:, 0], 0.0)
    m = np.zeros((n, 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = z.real, -z.imag, t.real
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = z.imag, z.real, t.imag
    m[:, 2, 2] = 1.0
    return m


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (..., K, 2) points through (..., 3, 3) matrices."""
    pts = np.asarray(points, np.float64)
    return pts @ matrix[..., :2, :2].swapaxes(-1, -2) + matrix[..., None, :2, 2]


def residual_pct(matrix: np.ndarray, src: np.ndarray, dst: np.ndarray, canvas_height: int) -> np.ndarray:
    """Root-mean-square keypoint error after alignment, in % of the canvas height, per frame."""
    err = np.linalg.norm(apply(matrix, src) - np.asarray(dst, np.float64), axis=-1)
    return np.sqrt(np.nanmean(err ** 2, axis=-1)) / canvas_height * 100.0


# ------------------------------------------------------------------------------------------------
# Batched semantic refinement.
#
# The original recipe's objective: for each keypoint, a Gaussian (sigma = a fraction of the long
# side) times the subject's region (person mask in body mode, a soft ellipse over the face box in
# face mode), one channel per keypoint. We render those maps at a small working resolution, warp
# every frame's maps onto the reference's with kornia, and run a fixed number of Adam steps on a
# small correction (rotation, log-scale, shift about the keypoints' centroid) to the closed form,
# all frames of a chunk at once. Nothing in the loop synchronises with the host. The best
# parameters seen per frame are kept, so no frame ends worse on the objective than where it
# started.
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RefineSettings:
    sigma: float = 0.04  # of the long side, as the original
    work_size: int = 64  # long side of the working resolution, pixels
    iterations: int = 30
    lr: float = 0.02
    batch_size: int = 0  # frames per optimisation; 0 = chosen from free memory
    # Weight of the plain person mask as an extra channel (body mode). Measured with 1 % keypoint
    # noise (bench_register): median error 0.11 % of height with it, 0.70 % without, 0.74 % for
    # the closed form. Face mode's region is only an ellipse over a detected box, so it gets none.
    mask_channel: float = 1.0


def _torch():
    import torch

    return torch


def gaussian_maps(points, weights, height: int, width: int, sigma: float, region=None, region_channel: float = 0.0):
    """(B, K, 2) points and (B, K) weights in working pixels -> (B, K, height, width) maps.
    ``sigma``: a number or one per frame (B,). A keypoint with weight 0 (missing) gives an empty
    channel. ``region_channel`` > 0 appends the region itself as one more channel, so a person
    mask's outline (free of keypoint noise) also pulls the fit."""
    torch = _torch()
    pts = torch.nan_to_num(points)
    ys = torch.arange(height, device=pts.device, dtype=pts.dtype).view(1, 1, height, 1)
    xs = torch.arange(width, device=pts.device, dtype=pts.dtype).view(1, 1, 1, width)
    d2 = (xs - pts[..., 0, None, None]) ** 2 + (ys - pts[..., 1, None, None]) ** 2
    sigma = torch.as_tensor(sigma, device=pts.device, dtype=pts.dtype).reshape(-1, 1, 1, 1)
    maps = torch.exp(d2 / (-2.0 * sigma * sigma)) * weights.clamp(min=0).sqrt()[..., None, None]
    if region is None:
        return maps
    maps = maps * region
    if region_channel > 0:
        maps = torch.cat([maps, region * region_channel], dim=1)
    return maps


def ellipse_region(boxes, height: int, width: int, softness: float = 0.15):
    """Soft ellipses inscribed in (B, 4) boxes (x0, y0, x1, y1, working pixels) -> (B, 1, h, w)."""
    torch = _torch()
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype).view(1, 1, height, 1)
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype).view(1, 1, 1, width)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    rx = ((boxes[:, 2] - boxes[:, 0]) / 2).clamp(min=1.0) * 1.15
    ry = ((boxes[:, 3] - boxes[:, 1]) / 2).clamp(min=1.0) * 1.15
    r2 = ((xs - cx.view(-1, 1, 1, 1)) / rx.view(-1, 1, 1, 1)) ** 2 + ((ys - cy.view(-1, 1, 1, 1)) / ry.view(-1, 1, 1, 1)) ** 2
    return torch.sigmoid((1.0 - r2) / softness)


def _delta(params, centre, tau: float):
    """(B, 4) [angle, log-scale, tx/tau, ty/tau] -> (B, 3, 3) similarity about ``centre`` (2,)."""
    torch = _torch()
    a, s = params[:, 0], params[:, 1].exp()
    c, si = s * torch.cos(a), s * torch.sin(a)
    tx = centre[0] + params[:, 2] * tau - (c * centre[0] - si * centre[1])
    ty = centre[1] + params[:, 3] * tau - (si * centre[0] + c * centre[1])
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([torch.stack([c, -si, tx], -1), torch.stack([si, c, ty], -1),
                        torch.stack([zero, zero, one], -1)], -2)


class _Adam:
    """``torch.optim.Adam`` with its defaults (betas 0.9 and 0.999, eps 1e-8), for one tensor, the
    same steps as its single-tensor implementation. torch's own optimizer imported torch._dynamo,
    sympy and triton on its first use: 2 s of a 30-photo body run, for four numbers per photo."""

    def __init__(self, param, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        torch = _torch()
        self.param, self.betas, self.eps = param, betas, eps
        self.exp_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.steps = 0

    def step(self, lr: float) -> None:
        torch = _torch()
        beta1, beta2 = self.betas
        with torch.no_grad():
            grad = self.param.grad
            self.steps += 1
            self.exp_avg.lerp_(grad, 1 - beta1)
            self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = lr / (1 - beta1 ** self.steps)
            denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** self.steps)).add_(self.eps)
            self.param.addcdiv_(self.exp_avg, denom, value=-step_size)


def refine_chunk(m0, src_maps, dst_maps, src_scale, dst_scale: float, centre, settings: RefineSettings):
    """Refine (B, 3, 3) closed-form matrices (original pixels -> canvas pixels).

    src_maps: (B, K, hs, ws) each frame's maps in its working frame (original pixels * src_scale[b]);
    dst_maps: (1, K, hd, wd) the reference's maps on the canvas's working frame (canvas * dst_scale).
    Returns (matrices, objective at start, objective at the end) as tensors.
    """
    torch = _torch()
    from kornia.geometry.transform import warp_affine

    b = m0.shape[0]
    dev, dt = src_maps.device, src_maps.dtype
    g = torch.diag(torch.tensor([dst_scale, dst_scale, 1.0], device=dev, dtype=dt))
    f_inv = torch.diag_embed(torch.stack([1 / src_scale, 1 / src_scale, torch.ones_like(src_scale)], -1))
    m0_work = g @ m0 @ f_inv
    tau = 0.05 * settings.work_size
    dsize = dst_maps.shape[-2:]

    def objective(params):
        m = _delta(params, centre, tau) @ m0_work
        warped = warp_affine(src_maps, m[:, :2], dsize=dsize, align_corners=True)
        return ((warped - dst_maps) ** 2).mean(dim=(1, 2, 3))

    params = torch.zeros(b, 4, device=dev, dtype=dt, requires_grad=True)
    adam = _Adam(params)
    best_loss = torch.full((b,), float("inf"), device=dev, dtype=dt)
    best = torch.zeros(b, 4, device=dev, dtype=dt)
    start = None
    for i in range(settings.iterations + 1):
        params.grad = None
        loss = objective(params)
        with torch.no_grad():
            if start is None:
                start = loss.detach().clone()
            better = loss < best_loss
            best_loss = torch.where(better, loss, best_loss)
            best = torch.where(better[:, None], params.detach(), best)
        if i == settings.iterations:
            break
        loss.sum().backward()
        adam.step(settings.lr * (1.0 - i / (settings.iterations + 1)))  # linear decay, a plain float: no host sync
    with torch.no_grad():
        g_inv = torch.linalg.inv(g)
        matrices = g_inv @ _delta(best, centre, tau) @ g @ m0
    return matrices, start, best_loss


def auto_batch_size(k: int, src_hw: tuple[int, int], dst_hw: tuple[int, int], device: str) -> int:
    """Frames per chunk so that the maps, their warps and gradients fit in a fraction of free memory."""
    per_frame = 4 * k * (3 * src_hw[0] * src_hw[1] + 6 * dst_hw[0] * dst_hw[1])
    if device.startswith("cuda"):
        free = _torch().cuda.mem_get_info()[0]
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 2 << 30
    # On a CPU, chunks beyond ~128 frames are no faster (the cores are already busy) and only make
    # peak memory grow with the number of photos.
    cap = 1024 if device.startswith("cuda") else 128
    return int(max(1, min(cap, free * 0.25 // per_frame)))


def register_frames(points, weights, sizes, ref_points, ref_weights, canvas: tuple[int, int],
                    ref_scale: float, *, boxes=None, ref_box=None, settings: RefineSettings | None = None,
                    device: str = "cpu", masks=None, ref_mask=None):
    """Closed form, then batched semantic refinement.

    points: (N, K, 2) keypoints in each frame's upright pixels; weights (N, K), 0 = missing;
    sizes: (N, 2) each frame's (width, height); ref_points (K, 2) in the reference's pixels,
    ``ref_scale`` maps them onto the ``canvas``. Regions: face boxes (N, 4) / ref_box (4,) for face
    mode, or masks (N, 1, h, w) / ref_mask (1, 1, h, w) at the working resolution for body mode.
    Returns (N, 3, 3) numpy matrices (original -> canvas) and per-frame objective before/after.
    """
    points = np.asarray(points, np.float64)
    weights = np.asarray(weights, np.float64)
    dst = np.asarray(ref_points, np.float64) * ref_scale
    m0 = fit_similarity(points, dst, weights)
    if settings is None or settings.iterations == 0 or len(points) == 0:
        return m0, None, None  # (no torch import for the closed form)
    torch = _torch()

    n, k, _ = points.shape
    k += 1 if masks is not None else 0
    dt = torch.float32
    work = settings.work_size
    cw, ch = canvas
    dst_scale = work / max(cw, ch)
    dh, dw = max(2, round(ch * dst_scale)), max(2, round(cw * dst_scale))
    src_scale = work / np.max(np.asarray(sizes, np.float64), axis=1)  # per frame
    sh = sw = work
    rw = np.asarray(ref_weights, np.float64)
    dst_t = torch.as_tensor(dst * dst_scale, dtype=dt, device=device)[None]
    ref_region = None
    if ref_mask is not None:
        ref_region = torch.as_tensor(ref_mask, dtype=dt, device=device)
    elif ref_box is not None:
        rb = torch.as_tensor(np.asarray(ref_box, np.float64) * ref_scale * dst_scale, dtype=dt, device=device)
        ref_region = ellipse_region(rb[None], dh, dw)
    mask_channel = settings.mask_channel if masks is not None else 0.0
    dst_maps = gaussian_maps(dst_t, torch.as_tensor(rw, dtype=dt, device=device)[None], dh, dw,
                             settings.sigma * work, ref_region, mask_channel)
    present = rw > 0
    centre = torch.as_tensor(dst[present].mean(0) * dst_scale, dtype=dt, device=device)

    chunk = settings.batch_size or auto_batch_size(k, (sh, sw), (dh, dw), device)
    out = m0.copy()
    before, after = np.zeros(n), np.zeros(n)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        sc = torch.as_tensor(src_scale[lo:hi], dtype=dt, device=device)
        pts = torch.as_tensor(points[lo:hi], dtype=dt, device=device) * sc[:, None, None]
        w = torch.as_tensor(weights[lo:hi], dtype=dt, device=device)
        region = None
        if masks is not None:
            region = torch.as_tensor(masks[lo:hi], dtype=dt, device=device)
        elif boxes is not None:
            region = ellipse_region(torch.as_tensor(np.asarray(boxes[lo:hi], np.float64), dtype=dt,
                                                    device=device) * sc[:, None], sh, sw)
        # Sigma in each frame's own pixels is the canvas's sigma carried back through the closed
        # form, so the Gaussians are the subject's size, not the photo's: otherwise the objective
        # pulls the scale towards matching blob widths instead of keypoints.
        s_work = np.sqrt(np.abs(np.linalg.det(m0[lo:hi, :2, :2]))) * dst_scale / src_scale[lo:hi]
        sigma_src = torch.as_tensor(settings.sigma * work / s_work, dtype=dt, device=device)
        src_maps = gaussian_maps(pts, w, sh, sw, sigma_src, region, mask_channel)
        m, s, e = refine_chunk(torch.as_tensor(m0[lo:hi], dtype=dt, device=device), src_maps, dst_maps,
                               sc, dst_scale, centre, settings)
        out[lo:hi] = m.double().cpu().numpy()
        before[lo:hi], after[lo:hi] = s.cpu().numpy(), e.cpu().numpy()
    return out, before, after
