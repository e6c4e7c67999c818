"""A second landmark pass: MTCNN's own O-Net again, on canonical crops of each face.

MTCNN's landmarks come from one O-Net pass on a 48 px crop of a box whose framing varies from
photo to photo (it is what the earlier stages happened to propose). Here every face is warped with
its current landmarks to a canonical crop (eyes level, a fixed inter-ocular distance, the framing
O-Net saw most in training), O-Net runs again there, and the landmarks are mapped back to the
photo. Test-time augmentation on the same step: the mirrored crop (left and right swapped back) and
small shifts and scales, each mapped back through its own warp, combined per landmark with the
outlying estimates dropped. The pass repeats while the landmarks still move. Everything is batched:
one ``grid_sample`` per photo for all its faces and variants, one O-Net call per round for all the
faces of a detection batch, on the detector's device.

Coordinates: "index space" throughout, pixel i's centre at i, as MTCNN's own landmarks (a
landmark at O-Net output ``p`` (0..1 in the crop) is ``p * CROP`` in the crop's index space, the
same convention facenet-pytorch uses to map O-Net's output to the photo). A bias that is constant in
the face's own frame does not matter to the alignment: the similarity carries it alike into every
frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..domain import Face, FaceDetection
from ..medians import nanmedian

CROP = 48  # O-Net's input size
# Where O-Net's landmarks sit in its 48 px input, measured as the median over the faces MTCNN
# passes to its last stage (0..1 of the crop), made left-right symmetric: left eye, right eye, nose,
# mouth left, mouth right. Canonical crops put the eyes here.
TEMPLATE = np.array([[0.3235, 0.3890], [0.6765, 0.3890], [0.5000, 0.5800], [0.3400, 0.7620], [0.6600, 0.7620]])
MIRROR = [1, 0, 2, 4, 3]  # landmark order after a left-right flip
_NORM = 0.0078125


@dataclass(frozen=True)
class LandmarkSettings:
    """``rounds``: 0 = off (MTCNN's landmarks as they are). ``mirror``: add the flipped crop.
    ``jitter``: shift (fraction of the inter-ocular distance) and scale (fraction) of the extra
    crops; 0 = none. ``max_faces``: the largest faces of a photo that get the pass."""
    rounds: int = 2
    mirror: bool = True
    jitter: float = 0.05
    max_faces: int = 8
    tolerance: float = 0.005  # stop when no eye moved more than this many inter-ocular distances
    # A face whose eyes end farther than this (inter-ocular distances) from MTCNN's keeps MTCNN's
    # landmarks: the pass corrects, it does not relocate (poor image evidence must not drag it off).
    max_shift: float = 0.25

    def variants(self) -> np.ndarray:
        """(A, 4) [dx, dy, log-scale, mirrored] per crop variant, dx/dy in fractions of the IOD."""
        v = [[0.0, 0.0, 0.0, 0.0]]
        j = self.jitter
        if j > 0:
            v += [[j, 0, 0, 0], [-j, 0, 0, 0], [0, j, 0, 0], [0, -j, 0, 0], [0, 0, j, 0], [0, 0, -j, 0]]
        if self.mirror:
            v += [[x, y, s, 1.0] for x, y, s, _ in v]
        return np.asarray(v, np.float64)

    def as_fingerprint(self) -> list:
        return [self.rounds, self.mirror, self.jitter, self.max_faces, self.tolerance, self.max_shift,
                TEMPLATE.tolist()]


def _similarity(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> np.ndarray:
    from ..register import fit_similarity

    return fit_similarity(src, dst, w)


# Eyes set the crop; nose and mouth only steady it (smiles move the mouth).
CROP_FIT_WEIGHTS = np.array([1.0, 1.0, 0.2, 0.1, 0.1])


def canonical_matrices(landmarks: np.ndarray, variants: np.ndarray, size: int = CROP) -> np.ndarray:
    """(N, 5, 2) landmarks in a photo's index space -> (N, A, 3, 3) matrices from the photo to each
    variant's canonical crop (``size`` px, index space). Variant (dx, dy, log-scale, mirrored): the
    crop is moved by dx, dy inter-ocular distances and zoomed by exp(log-scale) about its eye
    centre; a mirrored variant is flipped left-right (x -> size - 1 - x)."""
    lm = np.asarray(landmarks, np.float64)
    n = len(lm)
    base = _similarity(lm, TEMPLATE * size, CROP_FIT_WEIGHTS)  # (N, 3, 3)
    iod = (TEMPLATE[1, 0] - TEMPLATE[0, 0]) * size
    cx, cy = TEMPLATE[:2].mean(0) * size
    out = np.empty((n, len(variants), 3, 3))
    for a, (dx, dy, ls, mirrored) in enumerate(variants):
        s = np.exp(ls)
        v = np.array([[s, 0, cx - s * cx + dx * iod], [0, s, cy - s * cy + dy * iod], [0, 0, 1.0]])
        if mirrored:
            v = np.array([[-1.0, 0, size - 1], [0, 1, 0], [0, 0, 1]]) @ v
        out[:, a] = v @ base
    return out


def warp_crops(image, matrices, size: int = CROP, oversample: int = 4):
    """Cut canonical crops from one photo. image: (3, H, W) float tensor; matrices: (M, 3, 3) photo
    index space -> crop index space (numpy or tensor). Each crop pixel is the mean of
    ``oversample``^2 bilinear samples over its area (anti-aliasing when the face is larger than the
    crop). Outside the photo is 0, as MTCNN's own padding. Returns (M, 3, size, size)."""
    import torch
    import torch.nn.functional as F

    dev, dt = image.device, image.dtype
    m = torch.as_tensor(np.asarray(matrices, np.float64), device=dev, dtype=torch.float64)
    inv = torch.linalg.inv(m)[:, :2]  # crop -> photo
    k = max(1, int(oversample))
    sub = (torch.arange(size * k, device=dev, dtype=torch.float64) + 0.5) / k - 0.5  # sub-pixel centres
    gy, gx = torch.meshgrid(sub, sub, indexing="ij")
    grid = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, -1, 3)  # (1, P, 3)
    xy = grid @ inv.transpose(1, 2)  # (M, P, 2) photo index coordinates
    h, w = image.shape[-2:]
    norm = torch.stack([xy[..., 0] * (2.0 / max(w - 1, 1)) - 1.0, xy[..., 1] * (2.0 / max(h - 1, 1)) - 1.0], -1)
    norm = norm.reshape(len(m), size * k, size * k, 2).to(dt)
    src = image[None].expand(len(m), -1, -1, -1)
    crops = F.grid_sample(src, norm, mode="bilinear", padding_mode="zeros", align_corners=True)
    return F.avg_pool2d(crops, k) if k > 1 else crops


def oversample_for(matrices: np.ndarray) -> int:
    """Samples per crop pixel along each axis: enough that bilinear samples are at most ~1.5 photo
    pixels apart (photo pixels per crop pixel = 1 / scale of the warp), at most 8."""
    scale = np.sqrt(np.abs(np.linalg.det(np.asarray(matrices)[..., :2, :2]))).min()
    return int(np.clip(np.ceil(1.0 / max(scale, 1e-6) / 1.5), 1, 8))


def reduced(image, matrices: np.ndarray, size: int = CROP):
    """The photo area-reduced by the largest whole factor that still leaves every crop at least
    one reduced pixel per crop pixel (a large face costs no more than a small one), and the
    matrices adjusted to it. Pixel i of the reduced image is the mean of photo pixels
    f*i .. f*i + f - 1, so its centre sits at photo index f*i + (f - 1) / 2. Only the part the
    crops (``size`` x ``size``) sample is reduced, with a margin: the same pixels there as
    reducing the whole photo, which cost more than the rest of the pass (a 1008x756 photo)."""
    import torch.nn.functional as F

    matrices = np.asarray(matrices, np.float64)
    scale = np.sqrt(np.abs(np.linalg.det(matrices[..., :2, :2]))).max()
    f = int(max(1, np.floor(1.0 / max(scale, 1e-6))))
    f = min(f, *image.shape[-2:])
    if f == 1:
        return image, matrices
    h, w = image.shape[-2] // f, image.shape[-1] // f  # avg_pool2d's output (the rest is dropped)
    corners = np.array([[-0.5, -0.5, 1.0], [size - 0.5, -0.5, 1.0], [-0.5, size - 0.5, 1.0],
                        [size - 0.5, size - 0.5, 1.0]])
    seen = corners @ np.linalg.inv(matrices).swapaxes(-1, -2)  # (M, 4, 3): photo index coordinates
    lo = (seen[..., :2].reshape(-1, 2).min(0) - (f - 1) / 2) / f  # reduced index coordinates
    hi = (seen[..., :2].reshape(-1, 2).max(0) - (f - 1) / 2) / f
    x0, y0 = (max(0, int(np.floor(v)) - 2) for v in lo)
    x1, y1 = min(w, int(np.ceil(hi[0])) + 3), min(h, int(np.ceil(hi[1])) + 3)
    if x1 - x0 < 2 or y1 - y0 < 2:  # (nearly) outside the photo: the whole of it, as ever
        x0, y0, x1, y1 = 0, 0, w, h
    part = image[:, y0 * f:y1 * f, x0 * f:x1 * f]
    up = np.array([[f, 0, f * x0 + (f - 1) / 2], [0, f, f * y0 + (f - 1) / 2], [0, 0, 1.0]])  # reduced -> photo
    return F.avg_pool2d(part[None], f, ceil_mode=False)[0], matrices @ up


def onet_landmarks(onet, crops):
    """O-Net on (M, 3, 48, 48) crops of 0..255 pixels -> (M, 5, 2) landmarks in crop index space
    and (M,) face probabilities."""
    import torch

    with torch.inference_mode():
        # channels-last: the same numbers, 3-4x faster on a CPU (O-Net's ceil-mode max pooling is
        # slow on the default layout).
        _, pts, prob = onet(((crops - 127.5) * _NORM).contiguous(memory_format=torch.channels_last))
    pts = torch.stack([pts[:, :5], pts[:, 5:]], -1) * CROP
    return pts.double().cpu().numpy(), prob[:, 1].double().cpu().numpy()


def warp_crops_np(image: np.ndarray, matrices, size: int = CROP, oversample: int = 4) -> np.ndarray:
    """``warp_crops`` in OpenCV, for a CPU: image (H, W, 3) float32; returns (M, 3, size, size)
    float32. The same sub-pixel samples (OpenCV places them to 1/32 pixel), the same zero outside
    the photo; the ``oversample``^2 samples of a crop pixel averaged by an area resize."""
    import cv2

    k = max(1, int(oversample))
    sub = np.array([[1.0 / k, 0, 0.5 / k - 0.5], [0, 1.0 / k, 0.5 / k - 0.5], [0, 0, 1.0]])  # oversampled -> crop
    out = np.empty((len(matrices), 3, size, size), np.float32)
    matrices = np.asarray(matrices, np.float64).reshape(-1, 3, 3)
    inverse = np.linalg.inv(matrices) if len(matrices) else matrices  # (one call: each the same floats)
    for j, inv in enumerate(inverse):
        crop = cv2.warpAffine(image, (inv @ sub)[:2], (size * k, size * k),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
        if k > 1:
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        out[j] = crop.transpose(2, 0, 1)
    return out


def reduced_np(image: np.ndarray, matrices: np.ndarray, size: int = CROP) -> tuple[np.ndarray, np.ndarray]:
    """``reduced`` in numpy and OpenCV: image (H, W, 3), any dtype; returns the part the crops
    sample (with a margin), area-reduced by the same whole factor, as float32, and the matrices
    adjusted to it. Only that part is converted to float, also when nothing is reduced."""
    import cv2

    matrices = np.asarray(matrices, np.float64)
    scale = np.sqrt(np.abs(np.linalg.det(matrices[..., :2, :2]))).max()
    f = int(max(1, np.floor(1.0 / max(scale, 1e-6))))
    f = min(f, *image.shape[:2])
    h, w = image.shape[0] // f, image.shape[1] // f
    corners = np.array([[-0.5, -0.5, 1.0], [size - 0.5, -0.5, 1.0], [-0.5, size - 0.5, 1.0],
                        [size - 0.5, size - 0.5, 1.0]])
    seen = corners @ np.linalg.inv(matrices).swapaxes(-1, -2)
    lo = (seen[..., :2].reshape(-1, 2).min(0) - (f - 1) / 2) / f
    hi = (seen[..., :2].reshape(-1, 2).max(0) - (f - 1) / 2) / f
    x0, y0 = (max(0, int(np.floor(v)) - 2) for v in lo)
    x1, y1 = min(w, int(np.ceil(hi[0])) + 3), min(h, int(np.ceil(hi[1])) + 3)
    if x1 - x0 < 2 or y1 - y0 < 2:
        x0, y0, x1, y1 = 0, 0, w, h
    part = image[y0 * f:y1 * f, x0 * f:x1 * f].astype(np.float32)
    if f > 1:
        part = cv2.resize(part, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    up = np.array([[f, 0, f * x0 + (f - 1) / 2], [0, f, f * y0 + (f - 1) / 2], [0, 0, 1.0]])
    return part, matrices @ up


# Crops per call of OpenCV's O-Net: a whole number of one face's variants, about this many. A
# network that meets a batch size it has not run yet plans and allocates for it again: the second
# pass's calls (14 crops a face, any number of faces) met a new size at almost every call, 15,000
# page faults in 50 calls; in calls of one size each crop costs the same as in larger batches, and
# its outputs are the same floats (each crop's are its own).
ONET_PER_CALL = 16


def onet_landmarks_np(onet, crops: np.ndarray, per_call: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``onet_landmarks`` with ``cv_nets``' O-Net: (M, 3, 48, 48) float32 crops, ``per_call`` of
    them to a call (None: all at once)."""
    x = (crops - np.float32(127.5)) * np.float32(_NORM)
    if not len(x):
        return np.zeros((0, 5, 2)), np.zeros(0)
    step = max(1, per_call or len(x))
    outs = [onet.run(x[i:i + step]) for i in range(0, len(x), step)]
    pts = np.concatenate([o[1] for o in outs]) if len(outs) > 1 else outs[0][1]
    prob = np.concatenate([o[2] for o in outs]) if len(outs) > 1 else outs[0][2]
    pts = np.stack([pts[:, :5], pts[:, 5:]], -1).astype(np.float64) * CROP
    return pts, prob[:, 1].astype(np.float64)


def per_call_of(variants: int) -> int:
    """O-Net's crops per call for faces of ``variants`` crops each: whole faces, ~``ONET_PER_CALL``."""
    return variants * max(1, ONET_PER_CALL // max(1, variants))


def combine(estimates: np.ndarray, iod: np.ndarray) -> np.ndarray:
    """(N, A, 5, 2) estimates (NaN = a variant that saw no face) -> (N, 5, 2): per landmark, the
    mean of the estimates within max(2 x their median distance, 2 % of the IOD) of the median
    (outliers dropped). NaN where no variant gave an estimate."""
    # A landmark no variant saw is 0 while measuring (so numpy has no all-NaN slice to warn of:
    # ``warnings.catch_warnings`` is not thread-safe, and the pass runs on several threads).
    seen = np.isfinite(estimates).all(-1)  # (N, A, 5)
    safe = np.where(seen.any(1)[:, None, :, None], estimates, 0.0)
    med = nanmedian(safe, axis=1)
    d = np.linalg.norm(safe - med, axis=-1)  # (N, A, 5)
    limit = np.maximum(2.0 * nanmedian(d, axis=1), 0.02 * iod[:, None, None])
    keep = ((d <= limit) & seen)[..., None]  # NaN compares False
    total = np.where(keep, np.nan_to_num(estimates), 0.0).sum(1)
    count = keep.sum(1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _map_back(points: np.ndarray, matrices: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """(N, A, 5, 2) crop landmarks -> photo index space, undoing each variant's warp; a mirrored
    variant's landmarks are put back in the unmirrored order first."""
    pts = points.copy()
    pts[:, mirrored] = pts[:, mirrored][:, :, MIRROR]
    inv = np.linalg.inv(matrices)
    return pts @ inv[..., :2, :2].swapaxes(-1, -2) + inv[..., None, :2, 2]


def refine_landmarks(onet, images: list, landmarks: list[np.ndarray], settings: LandmarkSettings) -> list[np.ndarray]:
    """The second pass. images: one (3, H, W) float tensor (0..255) per photo for torch's O-Net, or
    with OpenCV's (``cv_nets``) one (H, W, 3) array, in the pixels the landmarks are in; landmarks: (n_i, 5, 2) per photo. Returns refined (n_i, 5, 2) per photo. Faces
    where O-Net no longer sees a face in the canonical crop (probability < 0.5 on every variant)
    keep their landmarks, and so do faces whose eyes would move more than ``max_shift``."""
    variants = settings.variants()
    on_cpu = is_cv_net(onet)  # numpy images and OpenCV's O-Net; else torch tensors and torch's
    mirrored = variants[:, 3] > 0
    owner = np.concatenate([np.full(len(lm), i) for i, lm in enumerate(landmarks)]).astype(int) \
        if landmarks else np.zeros(0, int)
    current = np.concatenate([np.asarray(lm, np.float64).reshape(-1, 5, 2) for lm in landmarks]) \
        if landmarks else np.zeros((0, 5, 2))
    first = current.copy()
    first_iod = np.maximum(np.linalg.norm(first[:, 1] - first[:, 0], axis=-1), 1e-9)
    active = np.ones(len(current), bool)
    for _ in range(settings.rounds):
        idx = np.nonzero(active)[0]
        if len(idx) == 0:
            break
        mats = canonical_matrices(current[idx], variants)  # (n, A, 3, 3)
        crops = []
        for i in sorted(set(owner[idx].tolist())):  # (as ``np.unique``, in a tenth of its time)
            sel = owner[idx] == i
            if on_cpu:
                img, m = reduced_np(images[i], mats[sel].reshape(-1, 3, 3))
                crops.append((sel, warp_crops_np(img, m, oversample=oversample_for(m))))
            else:
                img, m = reduced(images[i], mats[sel].reshape(-1, 3, 3))
                crops.append((sel, warp_crops(img, m, oversample=oversample_for(m))))
        order = np.arange(len(idx) * len(variants)).reshape(len(idx), len(variants))
        if on_cpu:
            batch = np.empty((len(idx) * len(variants), 3, CROP, CROP), np.float32)
            for sel, c in crops:
                batch[order[sel].ravel()] = c
            pts, prob = onet_landmarks_np(onet, batch, per_call_of(len(variants)))
        else:
            import torch

            like = crops[0][1]
            batch = torch.empty((len(idx) * len(variants), 3, CROP, CROP), dtype=like.dtype, device=like.device)
            for sel, c in crops:
                batch[torch.as_tensor(order[sel].ravel(), device=batch.device)] = c
            pts, prob = onet_landmarks(onet, batch)
        pts = pts.reshape(len(idx), len(variants), 5, 2)
        prob = prob.reshape(len(idx), len(variants))
        back = _map_back(pts, mats, mirrored)
        iod = np.linalg.norm(current[idx, 1] - current[idx, 0], axis=-1)
        back[prob < 0.5] = np.nan
        new = combine(back, iod)
        good = np.isfinite(new).all(axis=(1, 2))
        moved = np.linalg.norm(new[:, :2] - current[idx, :2], axis=-1).max(1) / np.maximum(iod, 1e-9)
        current[idx[good]] = new[good]
        active[idx] = good & (moved > settings.tolerance)
    drift = np.linalg.norm(current[:, :2] - first[:, :2], axis=-1).max(1) / first_iod
    current[drift > settings.max_shift] = first[drift > settings.max_shift]
    out, start = [], 0
    for lm in landmarks:
        out.append(current[start:start + len(lm)])
        start += len(lm)
    return out


def second_pass(onet, photos: list, detections: list[FaceDetection], settings: LandmarkSettings,
                device, workers: int = 1) -> list[np.ndarray]:
    """Refined landmarks (n_faces, 5, 2, in upright original pixels) for each photo's detection.
    ``photos``: the decoded photos the detection ran on (``photos.Decoded``). Faces beyond the
    ``max_faces`` largest keep MTCNN's landmarks. ``workers`` > 1 (a CPU): the photos are split
    into that many groups run side by side (as the detector's batches: one torch thread each)."""
    if workers > 1 and len(photos) > 1:
        from concurrent.futures import ThreadPoolExecutor

        groups = [list(range(len(photos)))[k::workers] for k in range(workers)]
        groups = [g for g in groups if g]
        run = lambda g: _second_pass(onet, [photos[i] for i in g], [detections[i] for i in g],  # noqa: E731
                                     settings, device)
        with ThreadPoolExecutor(len(groups), thread_name_prefix="landmarks") as pool:
            found = list(pool.map(run, groups))
        out: list = [None] * len(photos)
        for g, lms in zip(groups, found):
            for i, lm in zip(g, lms):
                out[i] = lm
        return out
    return _second_pass(onet, photos, detections, settings, device)


def is_cv_net(net) -> bool:
    """Whether ``net`` is OpenCV's (``cv_nets.CvNet``: numpy in and out) rather than a torch module."""
    from .cv_nets import CvNet  # (no torch there)

    return isinstance(net, CvNet)


def _second_pass(onet, photos: list, detections: list[FaceDetection], settings: LandmarkSettings,
                 device) -> list[np.ndarray]:
    on_cpu = is_cv_net(onet)
    images, lms, chosen = [], [], []
    for photo, det in zip(photos, detections):
        sx, sy = photo.scale_xy
        n = min(len(det.faces), settings.max_faces)
        lm = np.array([f.landmarks for f in det.faces[:n]], np.float64).reshape(-1, 5, 2) * (sx, sy)
        chosen.append(n)
        lms.append(lm)
        if not n:
            images.append(None)
        elif on_cpu:  # the 8-bit pixels: only the part the crops see becomes float (``reduced_np``)
            images.append(photo.array())
        else:
            import torch

            images.append(torch.from_numpy(np.array(photo.image)).to(device).permute(2, 0, 1).float())
    refined = refine_landmarks(onet, images, lms, settings) if settings.rounds > 0 and sum(chosen) else lms
    out = []
    for photo, det, lm, n in zip(photos, detections, refined, chosen):
        sx, sy = photo.scale_xy
        full = np.array([f.landmarks for f in det.faces], np.float64).reshape(-1, 5, 2)
        full[:n] = np.asarray(lm).reshape(-1, 5, 2) / (sx, sy)
        out.append(full)
    return out


def with_landmarks(detection: FaceDetection, landmarks: np.ndarray | None) -> FaceDetection:
    """The detection with each face's landmarks replaced by ``landmarks`` (n_faces, 5, 2); as it
    is when they do not match its faces."""
    if landmarks is None or len(landmarks) != len(detection.faces):
        return detection
    # (x, y) pairs of Python floats from one ``tolist``: a library's open makes 10,000 of these
    faces = tuple(Face(f.box, f.prob, tuple(map(tuple, lm)))
                  for f, lm in zip(detection.faces, np.asarray(landmarks, np.float64).tolist()))
    return FaceDetection(detection.width, detection.height, faces)
