"""A picture drawn with half-block characters: two pixels per cell, one as the foreground of "▀"
and one as the background. Works in any terminal with colour, over SSH, and in snapshots.

``halfblock_lines`` does the per-pixel work and may run on any thread (the preview worker calls
it), so the event loop only hands over finished lines."""
from __future__ import annotations

from PIL import Image
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from ...preview import fit


def halfblock_lines(image: Image.Image, width: int, height: int) -> list[Strip]:
    """``image`` fitted into ``width`` x ``height`` cells, centred, as strips."""
    if width <= 0 or height <= 0:
        return []
    size, _ = fit(image.size, (width, height * 2))
    img = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    w, h = img.size
    data = img.tobytes()
    pad_left = (width - w) // 2
    top_pad = (height - (h + 1) // 2) // 2
    blank = Strip([Segment(" " * width)], width)
    lines = [blank] * top_pad
    for y in range(0, h, 2):
        segs = [Segment(" " * pad_left)] if pad_left else []
        row, below = y * w * 3, (y + 1) * w * 3
        for x in range(w):
            i = row + 3 * x
            fg = Color.from_rgb(data[i], data[i + 1], data[i + 2])
            bg = Color.from_rgb(data[below + 3 * x], data[below + 3 * x + 1], data[below + 3 * x + 2]) \
                if y + 1 < h else None
            segs.append(Segment("▀", Style.from_color(fg, bg)))
        rest = width - pad_left - w
        if rest > 0:
            segs.append(Segment(" " * rest))
        lines.append(Strip(Segment.simplify(segs), width))
    return lines


class HalfBlockImage(Widget):
    DEFAULT_CSS = "HalfBlockImage { width: 1fr; height: 1fr; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self._lines: list[Strip] = []

    @property
    def cell_size(self) -> tuple[int, int]:
        return self.size.width, self.size.height

    def set_lines(self, lines: list[Strip]) -> None:
        self._lines = lines
        self.refresh()

    show = set_lines

    def on_resize(self) -> None:
        request = getattr(self.app, "request_preview", None)
        if request is not None:
            request()

    def render_line(self, y: int) -> Strip:
        if y < len(self._lines):
            return self._lines[y].crop(0, self.size.width)
        return Strip.blank(self.size.width)
