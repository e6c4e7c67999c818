"""``mode = "auto"`` (the default): which mode a folder gets, decided once from a sample of its photos.

A photo shows a body when BlazePose finds a person whose hips are in the photo and who stands at
least ``BODY_HEIGHTS`` face heights tall in it (the mask's height against three eye-to-mouth
distances): a whole-body or knee-up shot, a side view of a belly. A face close-up, a head and
shoulders portrait or a waist-up news photo is 1.3-5 face heights (the shared samples: 1.3-3.5,
one half-body web photo 5.1; whole bodies 7.6-9.1). The folder goes to body mode when more than
half of the sampled photos show a body, else to face mode (looking stops once the majority is
decided: 0.2-0.35 s on the sample folders); the choice and its reason are kept in
the store, so a folder does not change mode as photos arrive (``--mode`` or ``mode`` in the config
overrides it). An empty folder is face mode until it has photos (the choice is not kept).
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE = 9  # photos looked at, spread over the folder in name order
DECODE_SIDE = 512
BODY_HEIGHTS = 5.5
CLOSE_UP_MARGIN = 0.85  # ``too_close_for_a_body``: MTCNN's face may be up to 15 % larger than BlazePose's
CLOSE_UP_MIN_PROB = 0.95  # and only a face MTCNN is sure of says a photo is a close-up
STORE_KEY = "mode:auto"


@dataclass(frozen=True)
class ModeChoice:
    mode: str  # "face" or "body"
    reason: str  # "7 of 9 sampled photos show the body to the hips"

    @property
    def label(self) -> str:
        return f"{self.mode} (auto: {self.reason})"

    def to_json(self) -> dict:
        return {"mode": self.mode, "reason": self.reason}


def face_height(eyes: np.ndarray, mouth: np.ndarray) -> float:
    """A face's height, as both rules measure it: three eye-to-mouth distances."""
    return 3.0 * float(np.linalg.norm(np.asarray(eyes, np.float64) - np.asarray(mouth, np.float64)))


def shows_body(poses, image_height: int) -> bool:
    """Whether any of ``poses`` (``detect.blazepose.Pose``) is a body in view down to the hips."""
    from ..detect.blazepose import POINT_NAMES

    for pose in poses:
        pts = pose.points
        at = lambda name: pts[POINT_NAMES.index(name)]  # noqa: E731
        hips_in = all(at(h)[4] >= 0 and 0 <= at(h)[1] <= image_height for h in ("left_hip", "right_hip"))
        face = face_height((at("left_eye")[:2] + at("right_eye")[:2]) / 2,
                           (at("mouth_left")[:2] + at("mouth_right")[:2]) / 2)
        rows = np.nonzero((pose.mask >= 0.5).any(1))[0]
        if not hips_in or face <= 0 or len(rows) == 0:
            continue
        height = (rows[-1] - rows[0] + 1) / pose.mask.shape[0] * image_height
        if height >= BODY_HEIGHTS * face:
            return True
    return False


def sample(paths: list[Path], n: int = SAMPLE) -> list[Path]:
    paths = sorted(paths)
    if len(paths) <= n:
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, n).round().astype(int)]


def too_close_for_a_body(faces, image_height: int) -> bool:
    """Whether the largest of MTCNN's ``faces`` (``domain.Face``, in the photo's pixels) is too big
    for anyone in the photo to stand ``BODY_HEIGHTS`` face heights tall in it: a close-up, known
    without the pose model. Faces measured as ``shows_body`` does (three eye-to-mouth distances),
    with a margin for the two models placing the points a little differently."""
    for face in faces:
        if face.prob < CLOSE_UP_MIN_PROB:  # a doubtful face (a poster, a pattern) decides nothing
            continue
        pts = np.asarray(face.landmarks, np.float64)
        if image_height < CLOSE_UP_MARGIN * BODY_HEIGHTS * face_height(pts[:2].mean(0), pts[3:5].mean(0)):
            return True
    return False


def decide(paths: list[Path], max_pixels: int, find_faces=None, close_up=None, seen=None) -> ModeChoice | None:
    """Look at a sample of ``paths``; None when there is no photo to look at. ``find_faces``: MTCNN
    on a decoded photo (``detect.face.FaceDetector.detect`` of one), asked first: a photo whose face
    is too big for a body (``too_close_for_a_body``) needs no pose model; a face folder then never
    loads it (0.1-0.3 s of a small folder's run). ``close_up``: called once, at the first such
    photo (the folder is likely to be face mode, whose every face is described). ``seen(path,
    photo, detection)``: told of each photo ``find_faces`` looked at (face mode then takes the
    detection instead of detecting that photo again: ``Pipeline.looked_faces``)."""
    from ..detect.face import side_by_side
    from ..photos import PhotoError, open_photo

    model, looked, bodies = None, 0, 0
    picked = sample(paths)

    def look(path: Path):
        """The photo decoded, and MTCNN's faces in it (None without ``find_faces``)."""
        photo = open_photo(path, max_side=DECODE_SIDE, max_pixels=max_pixels, resize_within=1.3)
        if find_faces is None:
            return photo, None
        detection = find_faces(photo)
        if seen is not None:
            seen(path, photo, detection)
        return photo, detection.faces

    # The photos are decoded and MTCNN looks at them on two threads side by side, ahead of the pose
    # model: at once those any majority needs, then one by one while it is undecided.
    with side_by_side(2) as pool:
        ahead = deque(pool.submit(look, path) for path in picked[:len(picked) // 2 + 1])
        try:
            for path in picked:
                if 2 * bodies > len(picked) or 2 * (looked - bodies) >= len(picked):
                    break  # the majority is decided: the rest cannot change it
                if not ahead:
                    ahead.append(pool.submit(look, path))
                try:
                    photo, faces = ahead.popleft().result()
                except (PhotoError, OSError) as exc:
                    log.info("auto mode: skipped %s: %s", path.name, exc)
                    continue
                looked += 1
                if faces is not None and too_close_for_a_body(faces, photo.height):
                    if close_up is not None:
                        close_up()
                        close_up = None  # once
                    continue  # (faces and height in the photo's own upright pixels)
                if model is None:
                    from ..detect.blazepose import BlazePose

                    model = BlazePose(max_persons=2, second_pass=False)  # the pose's extent is enough here
                rgb = photo.array()
                bodies += shows_body(model.detect(rgb, (64, 64)), rgb.shape[0])
        finally:
            for rest in ahead:  # looked at no more
                rest.cancel()
    if not looked:
        return None
    if bodies * 2 > looked:
        return ModeChoice("body", f"{bodies} of {looked} sampled photos show the body to the hips")
    return ModeChoice("face", f"{bodies} of {looked} sampled photos show a whole body" if bodies
                      else f"none of {looked} sampled photos shows a whole body")


def choose_mode(store, paths: list[Path], max_pixels: int, find_faces=None, close_up=None, seen=None) -> ModeChoice:
    """The folder's mode: the one kept in ``store``, else decided now (and kept). ``close_up``:
    called when the look first meets a close-up, ``seen`` of each photo looked at (see ``decide``)."""
    kept = store.get_json(STORE_KEY)
    if isinstance(kept, dict) and kept.get("mode") in ("face", "body"):
        return ModeChoice(kept["mode"], str(kept.get("reason", "")))
    choice = decide(paths, max_pixels, find_faces, close_up, seen)
    if choice is None:
        return ModeChoice("face", "no photos yet")
    store.put_json(STORE_KEY, choice.to_json())
    return choice
