"""What a mode is (``Mode``), what it may use of the pipeline (``ModeContext``), and the reference
both modes register onto (``Reference``).

A mode owns everything that depends on what is registered (a face's landmarks, a person's mask and
keypoints): detection and its cache, choosing the subject, the reference, registration and its
cache fingerprint, what the render needs beyond the matrix (body mode's masks), and where the
subject is on the canvas for the framing. Scanning, verdicts, the framing itself and rendering are
the pipeline's, the same for every mode.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..config import Config
from ..domain import FrameResult
from ..framing import SubjectOnCanvas
from ..render import RenderItem
from ..store import Store

Progress = Callable[[FrameResult], None]


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
                          cancel: threading.Event | None) -> int: ...

    def named_reference_hash(self) -> str | None: ...


class Mode(ABC):
    """One way of finding and registering the subject (face or body)."""

    name: str  # "face" or "body"
    subject_word: str  # "face" or "person", for messages

    def __init__(self, context: ModeContext):
        self.ctx = context

    # fingerprints and the detection cache ----------------------------------------------------------
    @property
    @abstractmethod
    def detect_fp(self) -> str:
        """Covers the detector and every setting that changes a detection."""

    @abstractmethod
    def register_fp(self, ref: Reference) -> str:
        """Covers the reference and every setting that changes a transform (never the framing)."""

    @abstractmethod
    def cached_detection(self, content_hash: str):
        """The stored detection of a photo, or None."""

    def cached_quality(self, content_hash: str):
        """The stored ``curate.FrameQuality`` of a detected photo, or None (default: none kept)."""
        return None

    def cached_picture(self, content_hash: str):
        """The stored ``borders.PictureBox`` of a photo, or None (default: none kept)."""
        return None

    @abstractmethod
    def needs_detection(self, r: FrameResult) -> bool:
        """Whether ``r`` (a readable photo) lacks something detection stores."""

    # models -------------------------------------------------------------------------------------
    @property
    def identity_on(self) -> bool:
        """Whether the subject is chosen by identity (face embeddings)."""
        return False

    def warm_up(self) -> None:
        """Load what detection needs now rather than on the first photo (the app does this before
        its screen appears). Default: nothing."""

    # the steps ----------------------------------------------------------------------------------
    @abstractmethod
    def detect(self, todo: list[FrameResult], progress: Progress, cancel: threading.Event | None) -> int:
        """Detect in ``todo`` (every one needs it); store the results. Returns photos decoded."""

    @abstractmethod
    def select(self) -> None:
        """Choose the subject in every detected photo; sets ``subject``, ``status`` and ``error``."""

    @abstractmethod
    def choose_reference(self) -> Reference | None:
        """The frame every other is registered onto (named, pinned or the sticky automatic one)."""

    @abstractmethod
    def register(self, ref: Reference, compute: bool) -> None:
        """Give every subject a transform onto ``ref``'s canvas: stored ones are read; the others
        computed (``compute``) or marked ``no stored transform``."""

    def render_items(self, kept: list[FrameResult], items: list[RenderItem]) -> list[RenderItem]:
        """What the render needs beyond the matrix (body mode: masks). Default: ``items``."""
        return items

    @abstractmethod
    def colour_region(self, r: FrameResult) -> tuple[float, float, float, float] | None:
        """The box (upright photo pixels) whose colours ``render.match_colour`` steadies."""

    @abstractmethod
    def subject_on_canvas(self, ref: Reference, kept: list[FrameResult]) -> SubjectOnCanvas | None:
        """Where the subject is on the registration canvas, for the framing (``kept``: the frames
        in the animation, registered)."""
