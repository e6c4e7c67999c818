"""In-between frames that move the face from one photo's place to the next's (``render.morph``).

Both pictures are already aligned and rendered at the output size, so what is left to move is
small: a dense correspondence both ways (OpenCV's DIS optical flow, on contrast-normalised grey
copies reduced to ``WORK_SIDE``, so a change of light is not taken for motion), then for each in-between at time ``t`` both pictures are warped part of the way
and blended, ``(1 - t) A(x + F_t0) + t B(x + F_t1)``, with the intermediate flows built from the
two flows as in Super SloMo (Jiang et al. 2018): ``F_t0 = -(1 - t) t F_ab + t² F_ba`` and
``F_t1 = (1 - t)² F_ab - t (1 - t) F_ba``.

Where the correspondence cannot be trusted the flow is faded out, so the picture there becomes a
plain blend of the two, never a tear: where the two flows disagree (forward-backward check:
occlusion, a hand, a turned head), where the pictures do not match where the flow points (a new
background), where neither picture has texture to match (a plain wall, a smooth gradient whose
brightness changed), and where the motion is implausibly large for aligned frames. The flow is
averaged over its reliable neighbours (a median first, then a normalised convolution), so the
warp stretches smoothly and never folds; the trust map is smooth, so the change from morph to
blend has no seam.

The caption is not part of the pictures morphed: it is drawn afterwards on each in-between (the
caption of the nearer photo), so it never moves or doubles.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from .frame import CaptionStyle, draw_caption

# Flow is computed on grey copies whose long side is at most this (a 1080 px frame: about half).
WORK_SIDE = 384
# Forward-backward disagreement (work pixels) trusted fully below TOL + REL * |flow|, not at all at twice that.
FB_TOL = 1.0
FB_REL = 0.1
# Texture: the mean gradient magnitude nearby (grey levels per work pixel): below FLAT the flow is
# not trusted at all (nothing to match: a wall, a smooth gradient), from TEXTURE on fully.
FLAT, TEXTURE = 0.4, 1.5
TEXTURE_SIGMA = 6.0  # work pixels: how far a textured edge lends its trust to flat surroundings
# Matched pixels differ by less than this on the contrast-normalised pictures (whose spread is
# 40 levels); by twice it, they are no match.
MISMATCH = 20.0
# Motion beyond this share of the work long side is not a face moving between aligned frames.
MAX_MOTION = 0.08
FLOW_SIGMA = 4.0  # work pixels: the flow is averaged over its reliable neighbours this far
TRUST_SIGMA = 6.0  # work pixels: the trust map's smoothing
NORM_SIGMA, NORM_FLOOR = 8.0, 4.0  # local contrast normalisation before the flow (work pixels, grey levels)


def _cv2():
    import cv2

    return cv2


@dataclass(frozen=True)
class Correspondence:
    """Two pictures (output size) and the flows between them (at the work size, in output
    pixels), already faded where they cannot be trusted."""

    a: np.ndarray  # H x W x 3 uint8
    b: np.ndarray
    flow_ab: np.ndarray | None  # work size, H' x W' x 2 float32, in output pixels; None: a plain blend
    flow_ba: np.ndarray | None
    trust: np.ndarray | None  # work size, 0..1 (for inspection and tests)

    def frame(self, t: float) -> Image.Image:
        """The in-between at ``t`` (0 = ``a``, 1 = ``b``)."""
        cv2 = _cv2()
        if self.flow_ab is None:
            return Image.fromarray(cv2.addWeighted(self.a, 1 - t, self.b, t, 0))
        h, w = self.a.shape[:2]
        f_t0 = -(1 - t) * t * self.flow_ab + t * t * self.flow_ba
        f_t1 = (1 - t) * (1 - t) * self.flow_ab - t * (1 - t) * self.flow_ba
        # bicubic: a bilinear warp by fractions of a pixel blurs (measured on faces_jerry's pairs, the
        # middle frame's sharpness figure 0.93 bilinear, 1.02 bicubic, for 1.4x the warp's time)
        warped = [cv2.remap(image, _sample_map(flow, (w, h)), None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
                  for image, flow in ((self.a, f_t0), (self.b, f_t1))]
        return Image.fromarray(cv2.addWeighted(warped[0], 1 - t, warped[1], t, 0))


def _sample_map(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Where each output pixel samples (x, y), as one two-channel map: built at the work size (the
    flow's) and scaled up once. Bilinear scaling keeps the grid part exact except within a pixel
    or two of the edges, where the scaling clamps: those strips are corrected."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    grid_x, grid_y, fix_x, fix_y, strips_x, strips_y = _map_grid((w, h), size)
    work = flow.copy()
    work[..., 0] += grid_x[None, :]
    work[..., 1] += grid_y[:, None]
    full = cv2.resize(work, size, interpolation=cv2.INTER_LINEAR)
    for cols in strips_x:
        full[:, cols, 0] += fix_x[cols]
    for rows in strips_y:
        full[rows, :, 1] += fix_y[rows][:, None]
    return full


@lru_cache(maxsize=4)
def _map_grid(work: tuple[int, int], size: tuple[int, int]) -> tuple:
    """Output coordinates of the work pixels' centres; what scaling them up misses at the edges
    (per output column and row) and the edge strips where it does."""
    cv2 = _cv2()
    (w, h), (width, height) = work, size
    gx = (np.arange(w, dtype=np.float32) + 0.5) * (width / w) - 0.5
    gy = (np.arange(h, dtype=np.float32) + 0.5) * (height / h) - 0.5
    fix_x = np.arange(width, dtype=np.float32) - cv2.resize(gx[None, :], (width, 1), interpolation=cv2.INTER_LINEAR)[0]
    fix_y = np.arange(height, dtype=np.float32) - cv2.resize(gy[:, None], (1, height), interpolation=cv2.INTER_LINEAR)[:, 0]

    def strips(fix: np.ndarray) -> list[slice]:
        n = len(fix)
        bad = np.nonzero(np.abs(fix) > 1e-3)[0]
        lo, hi = bad[bad < n // 2], bad[bad >= n // 2]
        return ([slice(0, int(lo.max()) + 1)] if len(lo) else []) + ([slice(int(hi.min()), n)] if len(hi) else [])

    return gx, gy, fix_x, fix_y, strips(fix_x), strips(fix_y)


def _grey(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    cv2 = _cv2()
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA) if size != grey.shape[::-1] else grey


def _texture(grey: np.ndarray) -> np.ndarray:
    """Mean gradient magnitude nearby, grey levels per pixel (noise smoothed away first)."""
    cv2 = _cv2()
    g = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8, cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8
    return cv2.GaussianBlur(cv2.magnitude(gx, gy), (0, 0), TEXTURE_SIGMA)


def _disagreement(flow: np.ndarray, back: np.ndarray) -> np.ndarray:
    """|F(x) + B(x + F(x))|: how far a round trip misses its start."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    gx, gy = _work_grid(w, h)
    back_at = cv2.remap(back, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.magnitude(*np.moveaxis(flow + back_at, -1, 0))


@lru_cache(maxsize=4)
def _work_grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))


def _ramp(value: np.ndarray, full: np.ndarray | float) -> np.ndarray:
    """1 where ``value`` <= ``full``, 0 from twice ``full`` on, linear between."""
    return np.clip(2.0 - value / full, 0.0, 1.0)


def _mismatch(a: np.ndarray, b: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """How different ``a`` looks from ``b`` where the flow says it went (levels, smoothed)."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    gx, gy = _work_grid(w, h)
    b_at = cv2.remap(b, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.GaussianBlur(cv2.absdiff(a, b_at).astype(np.float32), (0, 0), 2.0)


def reliability(grey_a: np.ndarray, grey_b: np.ndarray, norm_a: np.ndarray, norm_b: np.ndarray,
                flow_ab: np.ndarray, flow_ba: np.ndarray) -> np.ndarray:
    """0..1 per work pixel: whether the flow there can be followed (1) or a blend is safer (0)."""
    cv2 = _cv2()
    speed_ab = cv2.magnitude(flow_ab[..., 0], flow_ab[..., 1])
    speed_ba = cv2.magnitude(flow_ba[..., 0], flow_ba[..., 1])
    consistent = np.minimum(_ramp(_disagreement(flow_ab, flow_ba), FB_TOL + FB_REL * speed_ab),
                            _ramp(_disagreement(flow_ba, flow_ab), FB_TOL + FB_REL * speed_ba))
    # compared on the contrast-normalised pictures, so a change of light is not a mismatch
    matching = np.minimum(_ramp(_mismatch(norm_a, norm_b, flow_ab), MISMATCH),
                          _ramp(_mismatch(norm_b, norm_a, flow_ba), MISMATCH))
    textured = np.clip((np.maximum(_texture(grey_a), _texture(grey_b)) - FLAT) / (TEXTURE - FLAT), 0.0, 1.0)
    limit = MAX_MOTION * max(grey_a.shape)
    plausible = np.minimum(_ramp(speed_ab, limit), _ramp(speed_ba, limit))
    return np.minimum(np.minimum(consistent, matching), np.minimum(textured, plausible))


def _smoothed(flow: np.ndarray, weight: np.ndarray, blurred_weight: np.ndarray) -> np.ndarray:
    """The flow averaged over its reliable neighbours (normalised convolution): a smooth field,
    so the warp stretches the picture gently and never folds or tears it."""
    cv2 = _cv2()
    flow = np.stack([cv2.medianBlur(np.ascontiguousarray(flow[..., i]), 5) for i in range(2)], -1)  # outliers out
    summed = cv2.GaussianBlur(flow * weight[..., None], (0, 0), FLOW_SIGMA)
    return summed / np.maximum(blurred_weight, 1e-3)[..., None]


def _normalised(grey: np.ndarray) -> np.ndarray:
    """Local contrast normalised: each neighbourhood's mean and spread, so a change of light
    between the photos is not mistaken for motion."""
    cv2 = _cv2()
    g = grey.astype(np.float32)
    mean = cv2.GaussianBlur(g, (0, 0), NORM_SIGMA)
    spread = np.sqrt(cv2.GaussianBlur((g - mean) ** 2, (0, 0), NORM_SIGMA)) + NORM_FLOOR
    return np.clip(128 + 40 * (g - mean) / spread, 0, 255).astype(np.uint8)


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow from ``a`` to ``b``: ``a(x)`` matches ``b(x + flow(x))`` (DIS, Kroeger et al. 2016)."""
    cv2 = _cv2()
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)


def correspond(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> Correspondence:
    """The flows between two pictures of one size, faded where they cannot be trusted."""
    a = np.ascontiguousarray(np.asarray(a.convert("RGB") if isinstance(a, Image.Image) else a, np.uint8))
    b = np.ascontiguousarray(np.asarray(b.convert("RGB") if isinstance(b, Image.Image) else b, np.uint8))
    if a.shape != b.shape:
        raise ValueError(f"pictures of different sizes: {a.shape[1::-1]} and {b.shape[1::-1]}")
    if np.array_equal(a, b):
        return Correspondence(a, b, None, None, None)
    h, w = a.shape[:2]
    scale = min(1.0, WORK_SIDE / max(w, h))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    grey_a, grey_b = _grey(a, size), _grey(b, size)
    norm_a, norm_b = _normalised(grey_a), _normalised(grey_b)
    flow_ab, flow_ba = _flow(norm_a, norm_b), _flow(norm_b, norm_a)
    cv2 = _cv2()
    reliable = reliability(grey_a, grey_b, norm_a, norm_b, flow_ab, flow_ba)
    around = cv2.GaussianBlur(reliable, (0, 0), FLOW_SIGMA)
    trust = np.clip(cv2.GaussianBlur(reliable, (0, 0), TRUST_SIGMA), 0.0, 1.0)
    if float(trust.max()) < 0.02:
        return Correspondence(a, b, None, None, trust)
    weight = trust[..., None] * np.array([w / size[0], h / size[1]], np.float32)  # work -> output pixels
    return Correspondence(a, b, _smoothed(flow_ab, reliable, around) * weight,
                          _smoothed(flow_ba, reliable, around) * weight, trust)


def inbetweens(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray, n: int) -> list[Image.Image]:
    """``n`` in-between frames from ``a`` to ``b`` (at t = 1/(n+1) ... n/(n+1))."""
    pair = correspond(a, b)
    return [pair.frame(k / (n + 1)) for k in range(1, n + 1)]


class Morpher:
    """The in-betweens of one render, in order: the correspondence of the pair being shown is
    computed once and kept until the next pair. ``captions[k]`` is drawn on each in-between of
    the nearer photo (the later one from half way), after the morph."""

    def __init__(self, captions: list[str], style: CaptionStyle | None):
        self.captions, self.style = captions, style
        self._index: int | None = None
        self._pair: Correspondence | None = None

    def frame(self, index: int, a: Image.Image, b: Image.Image, t: float) -> Image.Image:
        """The in-between at ``t`` from photo ``index`` (``a``, uncaptioned) to the next (``b``)."""
        if self._index != index:
            self._pair, self._index = correspond(a, b), index
        img = self._pair.frame(t)
        if self.style is not None:
            draw_caption(img, self.captions[index + (t >= 0.5)], self.style)
        return img
