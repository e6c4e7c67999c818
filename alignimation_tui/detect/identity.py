"""Which face in each photo is the subject.

With face embeddings (identity matching on): the subject's identity is the medoid of the largest
cluster of faces, built first from photos that hold a single face (group photos add noise), so a
friend who shows up often does not drag it. Photos the person vouched for (accepted, or pinned as
the reference) add their face as more examples of the subject (``prototypes``): a photo of the
person far from the folder's medoid (a child among adult photos) brings its like back in. Each
photo takes its face closest to any example; a photo whose closest face is farther than
``identity.max_distance`` is another person (``stranger``).

Without embeddings (the weights are not installed; identity matching off): each photo takes the
face nearest to where the subject usually is, at the size they usually are. "Usually" is the
reference photo's face when there is one, else the median over single-face photos. The cost is
the distance between face centres in face sizes plus the log of the size ratio; ties go to the
larger face.
"""
from __future__ import annotations

import math

import numpy as np

from ..domain import FaceDetection
from ..medians import median

MIN_SEEDS = 3
MAX_SEEDS = 1000  # the medoid of 1,000 spread seeds: 8 MB; of 10,000 photos' seeds, 95 GiB (N x N x 128)


def identity_seeds(embeddings: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The photos the identity is made from: all of them, or beyond MAX_SEEDS the photos with the
    smallest content hashes (single faces first): a random sample, spread over the years, that a
    new photo changes only if its hash is among them (so the medoid, and every frame's identity
    distance, stays put as photos arrive); O(MAX_SEEDS^2) whatever the folder."""
    if len(embeddings) <= MAX_SEEDS:
        return embeddings
    singles = {h: e for h, e in embeddings.items() if len(e) == 1}
    if len(singles) >= MIN_SEEDS:
        embeddings = singles
    return {h: embeddings[h] for h in sorted(embeddings)[:MAX_SEEDS]}


def identity_embedding(embeddings: dict[str, np.ndarray], max_distance: float) -> np.ndarray | None:
    embeddings = identity_seeds(embeddings)
    singles = [e[0] for e in embeddings.values() if len(e) == 1]
    seeds = singles if len(singles) >= MIN_SEEDS else [row for e in embeddings.values() for row in e]
    if not seeds:
        return None
    x = np.stack(seeds).astype(np.float64)
    sq = np.einsum("ij,ij->i", x, x)  # |a-b|^2 = |a|^2 + |b|^2 - 2ab: (N, N), not (N, N, D)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0))
    close = dist <= max_distance
    core = int(np.argmax(close.sum(axis=1)))
    members = np.flatnonzero(close[core])
    medoid = members[int(np.argmin(dist[np.ix_(members, members)].sum(axis=1)))]
    return x[medoid]


def choose_by_identity(embeddings: np.ndarray, identity: np.ndarray,
                       max_distance: float) -> tuple[int | None, float | None]:
    if len(embeddings) == 0:
        return None, None
    d = np.linalg.norm(embeddings.astype(np.float64) - identity[None, :], axis=1)
    best = int(np.argmin(d))
    return (best if d[best] <= max_distance else None), float(d[best])


def closest_face(embeddings: np.ndarray, prototypes: np.ndarray) -> tuple[int | None, float | None]:
    """The face (row of ``embeddings``) nearest to any of ``prototypes`` (P, D), and that distance."""
    if len(embeddings) == 0 or len(prototypes) == 0:
        return None, None
    d = np.linalg.norm(embeddings.astype(np.float64)[:, None, :] - prototypes[None, :, :], axis=-1).min(axis=1)
    best = int(np.argmin(d))
    return best, float(d[best])


def prototypes(embeddings: dict[str, np.ndarray], max_distance: float, vouched: list[str]) -> np.ndarray | None:
    """(P, D): the folder's identity (``identity_embedding``), then for each photo in ``vouched``
    (accepted or pinned) its face nearest to that identity; None without any embedding."""
    medoid = identity_embedding(embeddings, max_distance)
    if medoid is None:
        return None
    out = [medoid]
    for h in vouched:
        e = embeddings.get(h)
        index, _ = closest_face(e, medoid[None]) if e is not None else (None, None)
        if index is not None:
            out.append(e[index].astype(np.float64))
    return np.stack(out)


def _normalised(det: FaceDetection, i: int) -> tuple[float, float, float]:
    """Face centre as an offset from the photo's centre, and face size, in long-side units."""
    face = det.faces[i]
    long_side = max(det.width, det.height)
    cx, cy = face.centre
    return (cx - det.width / 2) / long_side, (cy - det.height / 2) / long_side, face.size / long_side


def anchor_face(detections: dict[str, FaceDetection], reference: str | None) -> tuple[float, float, float] | None:
    ref = detections.get(reference) if reference else None
    if ref is not None and ref.faces:
        return _normalised(ref, 0)  # faces are sorted largest first
    pool = [d for d in detections.values() if len(d.faces) == 1] or [d for d in detections.values() if d.faces]
    if not pool:
        return None
    return tuple(float(v) for v in median([_normalised(d, 0) for d in pool], axis=0))


def choose_by_position(det: FaceDetection, anchor: tuple[float, float, float] | None) -> int | None:
    if not det.faces:
        return None
    if anchor is None or len(det.faces) == 1:
        return 0
    ax, ay, asize = anchor

    def cost(i: int) -> tuple[float, float]:
        x, y, size = _normalised(det, i)
        centre = math.hypot(x - ax, y - ay) / max(asize, 1e-6)
        return centre + abs(math.log(max(size, 1e-6) / max(asize, 1e-6))), -size

    return min(range(len(det.faces)), key=cost)
