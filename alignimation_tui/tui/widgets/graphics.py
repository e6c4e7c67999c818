"""Which picture protocol the preview uses, and the preview widget for it.

``auto``: Kitty's graphics protocol or Sixel when the terminal says it supports them (asked
through textual-image, before Textual takes over the terminal), else half-block characters.
Under tmux, auto asks tmux which features the attached terminal has (``tmux display -p
'#{client_termfeatures}'``): Sixel when tmux says ``sixel`` (it draws Sixel itself; it has no Kitty
graphics), half-blocks otherwise. Under screen, and over SSH (where a late answer from the
terminal would arrive as keystrokes), auto means half-blocks, unless TERM names Kitty.
``preview.graphics`` forces one.

Half-blocks stay our own widget (halfblock.py): textual-image's half-cell renderer resamples and
walks every pixel on the event loop at each render, ours builds the lines on the preview worker's
thread, which keeps the screen responsive while detection runs (bench/bench_tui.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Mapping

from PIL import Image

from ...preview import fit
from .halfblock import HalfBlockImage

GRAPHICS = ("kitty", "sixel", "halfblock")


def _is_tty() -> bool:
    return all(s is not None and s.isatty() for s in (sys.__stdin__, sys.__stdout__))


def probe_terminal() -> str:
    """Ask the terminal (only before Textual starts): importing textual-image's renderables does."""
    from textual_image.renderable import Image as Best, SixelImage, TGPImage

    return "kitty" if Best is TGPImage else "sixel" if Best is SixelImage else "halfblock"


def tmux_features() -> set[str]:
    """The features tmux knows the attached terminal has (``terminal-features`` in tmux.conf, or
    what the terminal told tmux): e.g. {"256", "RGB", "sixel"}; empty when tmux does not answer."""
    try:
        done = subprocess.run(["tmux", "display-message", "-p", "#{client_termfeatures}"], capture_output=True,
                              text=True, timeout=2, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return set()
    return {f.strip() for f in done.stdout.split(",") if f.strip()} if done.returncode == 0 else set()


def choose_graphics(setting: str, environ: Mapping[str, str] = os.environ, is_tty: bool | None = None,
                    probe: Callable[[], str] = probe_terminal,
                    tmux: Callable[[], set[str]] = tmux_features) -> str:
    """"kitty", "sixel" or "halfblock" for the ``preview.graphics`` setting in this terminal."""
    if setting != "auto":
        return setting
    if not (_is_tty() if is_tty is None else is_tty):
        return "halfblock"
    term = environ.get("TERM", "")
    if environ.get("TMUX") or term.startswith("tmux"):
        return "sixel" if "sixel" in tmux() else "halfblock"
    if environ.get("STY") or term.startswith("screen"):
        return "halfblock"
    if environ.get("SSH_CONNECTION") or environ.get("SSH_TTY"):
        return "kitty" if term == "xterm-kitty" else "halfblock"
    return probe()


def prepare(kind: str) -> None:
    """Load textual-image's widgets for ``kind`` now, while we still own the terminal: the import
    asks the terminal for its cell size in pixels (a read from stdin that Textual would steal)."""
    if kind != "halfblock":
        import textual_image.widget  # noqa: F401


def padded(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """``image`` fitted into ``box`` pixels, centred on black: the widget fills its cells exactly."""
    size, _ = fit(image.size, box)
    out = Image.new("RGB", box)
    out.paste(image.convert("RGB").resize(size, Image.Resampling.BILINEAR),
              ((box[0] - size[0]) // 2, (box[1] - size[1]) // 2))
    return out


def cell_pixels() -> tuple[int, int]:
    from textual_image._terminal import get_cell_size

    size = get_cell_size()
    return size.width, size.height


def preview_widget(kind: str, widget_id: str):
    """The preview widget for ``kind``; every kind has ``cell_size`` and ``show(payload)``."""
    if kind == "halfblock":
        return HalfBlockImage(id=widget_id)
    from textual_image.widget import SixelImage, TGPImage

    base = TGPImage if kind == "kitty" else SixelImage

    class GraphicsImage(base, Renderable=base._Renderable):  # type: ignore[misc, valid-type, call-arg]
        DEFAULT_CSS = "GraphicsImage { width: 1fr; height: 1fr; }"

        @property
        def cell_size(self) -> tuple[int, int]:
            return self.size.width, self.size.height

        def show(self, payload) -> None:
            self.image = payload

        def on_resize(self) -> None:
            request = getattr(self.app, "request_preview", None)
            if request is not None:
                request()

    return GraphicsImage(id=widget_id)
