import numpy as np
import pytest

from alignimation_tui.detect.identity import (anchor_face, choose_by_identity, choose_by_position,
                                              identity_embedding)
from alignimation_tui.domain import Face, FaceDetection


def face(cx, cy, size, prob=0.99):
    h = size / 2
    lm = ((cx - 0.2 * size, cy - 0.1 * size), (cx + 0.2 * size, cy - 0.1 * size), (cx, cy + 0.05 * size),
          (cx - 0.15 * size, cy + 0.25 * size), (cx + 0.15 * size, cy + 0.25 * size))
    return Face((cx - h, cy - h, cx + h, cy + h), prob, lm)


def det(*faces, w=1000, h=800):
    return FaceDetection(w, h, tuple(sorted(faces, key=lambda f: -f.size)))


def unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def test_identity_is_the_subject_not_a_frequent_friend():
    rng = np.random.default_rng(1)
    me, friend = unit(rng.normal(size=512)), unit(rng.normal(size=512))
    noisy = lambda v: unit(v + rng.normal(scale=0.02, size=512))  # noqa: E731
    embeddings = {f"solo{i}": np.stack([noisy(me)]) for i in range(5)}
    embeddings |= {f"group{i}": np.stack([noisy(friend), noisy(me)]) for i in range(8)}
    embeddings["friend_alone"] = np.stack([noisy(friend)])
    ident = identity_embedding(embeddings, max_distance=1.0)
    assert np.linalg.norm(ident - me) < 0.5
    index, dist = choose_by_identity(embeddings["group3"], ident, 1.0)
    assert index == 1 and dist < 0.8
    assert choose_by_identity(embeddings["friend_alone"], ident, 1.0)[0] is None
    assert choose_by_identity(np.zeros((0, 512)), ident, 1.0) == (None, None)


def test_fallback_takes_the_face_where_the_subject_usually_is():
    dets = {f"s{i}": det(face(500 + i, 380, 200)) for i in range(4)}
    # A group photo: a bigger stranger on the left, the subject in the usual spot.
    dets["group"] = det(face(180, 350, 260), face(505, 390, 190), face(850, 400, 120))
    anchor = anchor_face(dets, reference=None)
    chosen = choose_by_position(dets["group"], anchor)
    assert dets["group"].faces[chosen].centre == (505, 390)


def test_fallback_follows_the_reference_when_named():
    dets = {"ref": det(face(200, 300, 150)), "other": det(face(800, 300, 150), face(210, 310, 140))}
    chosen = choose_by_position(dets["other"], anchor_face(dets, reference="ref"))
    assert dets["other"].faces[chosen].centre == (210, 310)


def test_no_faces_no_subject():
    assert choose_by_position(det(), (0, 0, 0.2)) is None


@pytest.mark.parametrize("n", [1, 2])
def test_few_seeds_fall_back_to_all_faces(n):
    rng = np.random.default_rng(2)
    me = unit(rng.normal(size=512))
    embeddings = {f"g{i}": np.stack([unit(me + rng.normal(scale=0.02, size=512)), unit(rng.normal(size=512))])
                  for i in range(n + 2)}
    ident = identity_embedding(embeddings, 1.0)
    assert np.linalg.norm(ident - me) < 0.5


def test_identity_of_a_library_of_ten_thousand_is_bounded_and_steady():
    """A selfie a day for 27 years: the identity comes from a bounded sample (its N x N x 128
    differences took 95 GiB at 10,000 photos: MemoryError), the subject's, with a few strangers in
    the folder; and a photo arriving later does not move it unless it falls in the sample."""
    import hashlib
    import tracemalloc

    rng = np.random.default_rng(3)
    me = unit(rng.normal(size=128)) * 0.6
    embeddings = {}
    for i in range(10_000):
        key = hashlib.sha256(str(i).encode()).hexdigest()
        person = me if i % 50 else unit(rng.normal(size=128)) * 0.6  # one photo in 50 a stranger
        embeddings[key] = (person + rng.normal(scale=0.02, size=128))[None].astype(np.float32)
    tracemalloc.start()
    centre = identity_embedding(embeddings, 0.65)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6, peak
    assert np.linalg.norm(centre - me) < 0.3  # the subject (each photo is 0.23 from it; a stranger 0.85)
    late = {"f" * 64: (me + rng.normal(scale=0.02, size=128))[None].astype(np.float32)}  # the largest hash
    assert np.array_equal(identity_embedding(embeddings | late, 0.65), centre)
