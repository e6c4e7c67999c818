"""Messages the pipeline worker posts to the app: small values, never live pipeline objects."""
from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message
from textual.strip import Strip

from ..preview import FrameView
from ..triage import FrameRow


@dataclass
class RowsChanged(Message):
    rows: list[FrameRow]


@dataclass
class RowsRemoved(Message):
    hashes: list[str]


@dataclass
class ViewsChanged(Message):
    """What the preview needs of the frames that changed (immutable copies)."""

    views: list[FrameView]


@dataclass
class DecisionApplied(Message):
    """The worker uses the app's decision number ``seq`` on ``hash`` now (its rows show it)."""

    hash: str
    seq: int


@dataclass
class PipelineState(Message):
    """What the status bar shows besides the counts."""

    reference: str  # the reference photo's name, "" while there is none
    queue: int  # photos waiting for the worker (including ones still being copied)
    busy: str  # what the worker is doing now, "" when idle
    identity_on: bool
    device: str
    mode: str
    models: str = ""  # what the status bar says of the mode and its models (``Mode.status_text``)
    subject_word: str = "subject"
    reference_hash: str = ""
    output_size: tuple = ()  # the output picture's size, (width, height); () while there is no framing
    # the framing's 3x3 (the reference's canvas -> the output picture), the same for every frame: a
    # frame's view holds its registration alone, so a framing that moves (it follows the kept
    # frames' eyes) changes one state, not every view
    framing: tuple = ()


@dataclass
class Notice(Message):
    text: str
    severity: str = "information"


@dataclass
class RenderProgress(Message):
    done: int
    total: int


@dataclass
class RenderFinished(Message):
    path: str
    frames: int
    error: str = ""
    unchanged: bool = False  # the file already held this render: nothing was written


@dataclass
class PreviewReady(Message):
    hash: str
    mode: str
    lines: object  # the picture, ready for the preview widget: half-block strips built on the
    # preview worker's thread, or a PIL image sized for the graphics protocol
    caption: str
