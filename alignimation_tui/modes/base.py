"""What a mode is (``Mode``), what it may use of the pipeline (``ModeContext``), what the rest of the
program may read of a detection and a subject (``Detection``, ``Subject``), and the reference every
mode registers onto (``Reference``).

A mode owns everything that depends on what is registered (a face's landmarks, a person's mask and
keypoints, points marked by hand): detection and its cache, choosing the subject, its config
section, its default output size, the models it needs, what the render needs beyond the matrix
(body mode's masks), and where the subject is on the canvas for the framing. Written once here, for
every mode: choosing the reference (named, pinned, or the sticky automatic one), the refinement's
settings, building transforms, and registration from the subject's points (a mode with more to
register by, such as body mode's masks, overrides ``register``). Scanning, verdicts, the framing
itself and rendering are the pipeline's, the same for every mode. A new mode is one module: a
``Mode`` subclass, registered with ``modes.register_mode``.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, ClassVar, Protocol, runtime_checkable

import numpy as np

from .. import register as reg
from ..config import Config, ConfigError
from ..detect.face import torch_threads
from ..domain import Box, FacingScores, FrameResult, FrameStatus, Transform, Verdict
from ..framing import SubjectOnCanvas
from ..render import RenderItem
from ..fingerprint import fingerprint
from ..store import Store

Progress = Callable[[FrameResult], None]
Point = tuple[float, float]
# Chosen in ``select`` and kept through registration (registered, so ``a`` can put them back in):
LEFT_OUT = (FrameStatus.TURNED, FrameStatus.STRANGER)


@runtime_checkable
class Detection(Protocol):
    """Everything found in one photo: its upright size and every candidate's box (the faces, the
    people), in the order a subject's ``index`` counts them."""

    width: int
    height: int

    @property
    def boxes(self) -> tuple[Box, ...]: ...


@runtime_checkable
class Subject(Protocol):
    """The one candidate chosen as the person in a photo, as the table, the preview, the nudge,
    the selection and ``--json`` see it."""

    @property
    def index(self) -> int: ...  # which of the detection's boxes; also its sharpness in the quality

    @property
    def box(self) -> Box: ...  # the subject's box, upright photo pixels (the colour region)

    @property
    def confidence(self) -> float: ...  # the detector's score, as the table shows it

    @property
    def points(self) -> tuple[Point, ...]: ...  # the anchor points registered and drawn (NaN: missing)

    @property
    def facing(self) -> FacingScores | None: ...  # the facing scores a row shows; None when not measured

    @property
    def pivot(self) -> tuple[Point, ...] | None: ...  # two points: the nudge's centre and unit


@dataclass(frozen=True)
class Reference:
    hash: str
    landmarks: np.ndarray  # (K, 2) the reference's keypoints in its upright pixels
    canvas: tuple[int, int]  # the registration canvas: the reference's framing
    scale: float  # reference pixels -> canvas pixels


class ModeContext(Protocol):
    """The part of the pipeline a mode uses (``Pipeline`` is one)."""

    config: Config
    store: Store
    device: str
    results: dict[str, FrameResult]
    notices: list[str]

    def timed(self, stage: str) -> AbstractContextManager: ...

    def decode_in_batches(self, todo: list[FrameResult], decode: Callable, batch_size: int,
                          flush: Callable[[list], None], progress: Progress,
                          cancel: threading.Event | None, ahead: int | None = None) -> int: ...

    def named_reference_hash(self) -> str | None: ...


class Mode(ABC):
    """One way of finding and registering the subject (face, body, ...)."""

    name: ClassVar[str]  # the registry's key: config ``mode`` and ``--mode``
    subject_word: ClassVar[str] = "subject"  # for messages: "face", "person"
    default_size: ClassVar[str] = "square"  # render.size = "auto": a preset of ``framing.SIZE_PRESETS`` or "photos"
    config_sections: ClassVar[dict[str, type]] = {}  # this mode's own config sections: name -> dataclass
    required_models: ClassVar[tuple] = ()  # ``models.ModelFile``s a run cannot do without
    detection_modules: ClassVar[tuple[str, ...]] = ()  # heavy imports detection needs (see ``preload_modules``)
    keeps_neutral: ClassVar[bool] = False  # the colour match keeps near-grey pixels grey (``colour``)
    names_itself: ClassVar[bool] = True  # the status bar names the mode (face mode, the classic, does not)

    def __init__(self, context: ModeContext):
        self.ctx = context

    @property
    def auto_reference_key(self) -> str:
        """Where the automatic reference is kept (sticky: see ``reference_hash``)."""
        return f"reference:auto:{self.name}"

    def section(self, name: str):
        """One of this mode's config sections (its defaults when the file has none)."""
        return self.ctx.config.section(name)

    # fingerprints and the detection cache ----------------------------------------------------------
    @property
    @abstractmethod
    def detect_fp(self) -> str:
        """Covers the detector and every setting that changes a detection."""

    def register_fp(self, ref: Reference) -> str:
        """Covers the reference and every setting that changes a transform (never the framing)."""
        rc = self.ctx.config.register
        return fingerprint(ref=ref.hash, canvas=ref.canvas, weights=list(self.point_weights()),
                           detect=self.detect_fp, refine=[rc.refine, rc.sigma, rc.work_size, rc.iterations])

    @abstractmethod
    def cached_detection(self, content_hash: str):
        """The stored detection of a photo, or None."""

    def stored_keys(self, content_hash: str) -> list[str]:
        """The store keys ``cached_detection``, ``cached_quality`` and ``cached_picture`` read for a
        photo (the scan reads them ahead, many to a query). Default: none (each is read alone)."""
        return []

    def cached_quality(self, content_hash: str):
        """The stored ``domain.FrameQuality`` of a detected photo, or None (default: none kept)."""
        return None

    def cached_picture(self, content_hash: str):
        """The stored ``borders.PictureBox`` of a photo, or None (default: none kept)."""
        return None

    @abstractmethod
    def needs_detection(self, r: FrameResult) -> bool:
        """Whether ``r`` (a readable photo) lacks something detection stores."""

    # models and words ---------------------------------------------------------------------------
    @property
    def identity_on(self) -> bool:
        """Whether the subject is chosen by identity (face embeddings)."""
        return False

    def warm_up(self) -> None:
        """Load what detection needs now rather than on the first photo (the app does this before
        its screen appears). Default: nothing."""

    def status_text(self, device: str) -> str:
        """What the status bar says of the mode and its models."""
        return f"{self.name} · {device}"

    def report(self, r: FrameResult) -> dict:
        """This mode's own fields of a photo's ``--json`` line (face mode: faces, identity)."""
        return {}

    # the steps ----------------------------------------------------------------------------------
    @abstractmethod
    def detect(self, todo: list[FrameResult], progress: Progress, cancel: threading.Event | None) -> int:
        """Detect in ``todo`` (every one needs it); store the results. Returns photos decoded."""

    @abstractmethod
    def select(self) -> None:
        """Choose the subject in every detected photo; sets ``subject``, ``status`` and ``error``."""

    # the reference --------------------------------------------------------------------------------
    def reference_hash(self, candidate: Callable[[FrameResult], bool]) -> str | None:
        """The reference: the one named (``register.reference``) or pinned, which must be a
        ``candidate``; else the automatic one, which is sticky: once chosen it stays while it is
        usable, so a photo added later (even one dated earlier) is registered against it, not the
        other way round. Usable: a candidate, not rejected, and not turned unless accepted."""
        p = self.ctx
        named = p.named_reference_hash()
        if named is not None:
            r = p.results[named]
            if not candidate(r):
                raise ConfigError("register.reference", f"{r.frame.path.name} has no usable {self.subject_word} "
                                  f"({self.why_unusable(r)})")
            return named

        def usable(r: FrameResult | None) -> bool:
            return (r is not None and candidate(r) and r.verdict is not Verdict.REJECTED
                    and (r.status not in LEFT_OUT or r.verdict is Verdict.ACCEPTED))

        stored = (p.store.get_json(self.auto_reference_key) or {}).get("hash")
        if stored and usable(p.results.get(stored)):
            return stored
        first = next((h for h, r in p.results.items() if usable(r)), None)  # results are in date order
        if first is not None:
            p.store.put_json(self.auto_reference_key, {"hash": first})
        return first

    def why_unusable(self, r: FrameResult) -> str:
        """Why photo ``r``, named as the reference, cannot be one."""
        return r.error or r.status.value

    def reference_of(self, h: str | None) -> Reference | None:
        """The reference built from photo ``h``'s subject: its points and its registration canvas."""
        r = self.ctx.results.get(h) if h else None
        if r is None or r.subject is None or r.detection is None:
            return None
        canvas, scale = reg.canvas_for(r.detection.width, r.detection.height, self.ctx.config.register.long_side)
        return Reference(h, np.asarray(r.subject.points, np.float64), canvas, scale)

    def choose_reference(self) -> Reference | None:
        """The frame every other is registered onto. Default: among the photos with a subject."""
        return self.reference_of(self.reference_hash(lambda r: r.subject is not None))

    # identity ---------------------------------------------------------------------------------------
    def vouched(self, among) -> list[str]:
        """The photos of ``among`` (hashes) the person vouched for as the subject: accepted, and the
        named or pinned reference (``detect.identity.prototypes`` adds their faces as examples)."""
        p = self.ctx
        results, accepted = p.results, Verdict.ACCEPTED
        out = [h for h in among if results[h].verdict is accepted]
        pinned = p.named_reference_hash()
        if pinned in among and pinned not in out:
            out.append(pinned)
        return out

    def judge_identity(self, r: FrameResult, distance: float | None) -> bool:
        """With the subject's face ``distance`` from the subject's identity: ``stranger`` (True)
        beyond ``identity.max_distance``, kept but doubted beyond ``identity.doubt_distance``. An
        accepted photo is the person's, whatever the distance."""
        cfg = self.ctx.config.identity
        r.identity_doubt = None
        if distance is None or r.verdict is Verdict.ACCEPTED:
            return False
        if distance > cfg.max_distance:
            r.status = FrameStatus.STRANGER  # registered all the same: `a` puts it back
            r.error = f"another person: {distance:.2f} from the subject (identity.max_distance {cfg.max_distance:g})"
            return True
        if distance > cfg.doubt_distance:
            r.identity_doubt = f"maybe another person: {distance:.2f} from the subject"
        return False

    # registration ---------------------------------------------------------------------------------
    def refine_settings(self) -> reg.RefineSettings | None:
        """``[register]``'s semantic refinement, or None when it is off."""
        rc = self.ctx.config.register
        return reg.RefineSettings(rc.sigma, rc.work_size, rc.iterations, batch_size=rc.batch_size) \
            if rc.refine else None

    @property
    def preload_modules(self) -> tuple[str, ...]:
        """What ``models.preload`` imports before detection: the mode's detection modules, and
        kornia (torch) only when the registration's refinement is on."""
        return tuple(self.detection_modules) + (("kornia.geometry",) if self.refine_settings() is not None else ())

    @staticmethod
    def make_transform(matrix: np.ndarray, canvas: tuple[int, int], residual: float) -> Transform:
        return Transform(tuple(tuple(float(v) for v in row) for row in matrix), tuple(canvas), float(residual))

    def point_weights(self) -> np.ndarray:
        """The weight of each of a subject's points in the fit (default: all the same)."""
        r = next((r for r in self.ctx.results.values() if r.subject is not None), None)
        return np.ones(len(r.subject.points) if r is not None else 0)

    def transform_key(self, r: FrameResult, fp: str) -> str:
        # The subject's points are part of the key: a different choice (identity weights installed,
        # another min_confidence) must not reuse a transform fitted to another subject. ("face": the
        # name the key had before the modes shared this; it keeps face mode's cache.) Every frame's
        # key is asked for whenever one photo arrives: the last one made is kept with what made it.
        # (Kept with the subject object it was made for: a subject is frozen, so the same object
        # has the same points, and comparing it is cheaper than comparing the points.)
        subject = r.subject
        last = r.extra.get("transform_key_of")
        if last is not None and last[0] is subject and last[1] == fp:
            return last[2]
        key = f"transform:{r.frame.hash}:{fingerprint(fp=fp, face=subject.points)}"
        r.extra["transform_key_of"] = (subject, fp, key)
        return key

    def register(self, ref: Reference, compute: bool) -> None:
        """Give every subject a transform onto ``ref``'s canvas: stored ones are read; the others
        computed (``compute``: closed form from the subject's points, then the batched refinement
        when ``register.refine``) or marked ``no stored transform``."""
        p = self.ctx
        subjects = [r for r in p.results.values() if r.subject is not None]
        if not subjects:
            return
        fp = self.register_fp(ref)
        todo = []
        keys = {}
        stale = []  # not loaded yet for this reference, settings and subject
        transform_key = self.transform_key
        for r in subjects:
            extra = r.extra
            last = extra.get("transform_key_of")  # (``transform_key``'s own check, without the call)
            key = last[2] if last is not None and last[0] is r.subject and last[1] == fp else transform_key(r, fp)
            keys[r.frame.hash] = key
            if r.transform is None or extra.get("transform_key") != key:
                stale.append(r)
        with p.store.read_ahead():
            p.store.prefetch([keys[r.frame.hash] for r in stale])
            for r in stale:
                key = keys[r.frame.hash]
                cached = p.store.get_json(key)
                if cached is not None:
                    r.transform = Transform.from_json(cached)
                    r.extra["transform_key"] = key
                else:
                    todo.append(r)
        if not compute:
            for r in todo:
                r.error = "no stored transform"
            todo = []
        if todo:
            weights = np.asarray(self.point_weights(), np.float64)
            src = np.stack([np.asarray(r.subject.points, np.float64) for r in todo])
            sizes = np.array([[r.detection.width, r.detection.height] for r in todo], np.float64)
            ref_box = p.results[ref.hash].subject.box
            # On a CPU the refinement's many small ops run fastest on one thread (see face.AUTO_BATCH);
            # the closed form alone needs no torch.
            refine = self.refine_settings()
            with torch_threads(1) if p.device == "cpu" and refine is not None else nullcontext():
                matrices, _, _ = reg.register_frames(
                    src, np.tile(weights, (len(todo), 1)), sizes, ref.landmarks, weights, ref.canvas, ref.scale,
                    boxes=np.array([r.subject.box for r in todo]), ref_box=np.asarray(ref_box),
                    settings=refine, device=p.device)
            residuals = reg.residual_pct(matrices, src, ref.landmarks * ref.scale, ref.canvas[1])
            for r, m, res in zip(todo, matrices, residuals):
                r.transform = self.make_transform(m, ref.canvas, res)
                p.store.put_json(keys[r.frame.hash], r.transform.to_json())
                r.extra["transform_key"] = keys[r.frame.hash]
        aligned = FrameStatus.ALIGNED
        for r in subjects:
            if r.transform is not None and r.status not in LEFT_OUT:
                r.status = aligned

    # render and framing ---------------------------------------------------------------------------
    def render_items(self, kept: list[FrameResult], items: list[RenderItem]) -> list[RenderItem]:
        """What the render needs beyond the matrix (body mode: masks). Default: ``items``."""
        return items

    def colour_region(self, r: FrameResult) -> Box | None:
        """The box (upright photo pixels) whose colours ``render.match_colour`` steadies."""
        return r.subject.box if r.subject is not None else None

    def subject_on_canvas(self, ref: Reference, kept: list[FrameResult]) -> SubjectOnCanvas | None:
        """Where the subject is on the registration canvas, for the framing (``kept``: the frames
        in the animation, registered). Default: the reference subject's box, through its own
        registration (centred, its height ``render.body_height`` of the output)."""
        r = self.ctx.results.get(ref.hash)
        if r is None or r.subject is None or r.transform is None:
            return None
        return box_on_canvas(r.subject.box, r.transform)


def box_on_canvas(box: Box, transform: Transform) -> SubjectOnCanvas:
    """``box`` (upright photo pixels) through ``transform``: its bounding box on the canvas."""
    x0, y0, x1, y1 = box
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], np.float64)
    on_canvas = corners @ np.asarray(transform.matrix, np.float64).T
    (cx0, cy0), (cx1, cy1) = on_canvas[:, :2].min(0), on_canvas[:, :2].max(0)
    return SubjectOnCanvas.from_box(cx0, cy0, cx1, cy1)
