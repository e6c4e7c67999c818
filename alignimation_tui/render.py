"""Writing the animation: one warp per frame from the original straight to the canvas, streamed.

Only one full-size frame is held at a time. The output format follows the suffix: ``.mp4``
(H.264 through imageio-ffmpeg) or ``.gif`` (Pillow, scaled down to ``render.gif_max_width``).
``frames_dir`` also writes each aligned frame as a JPEG.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from .background import replace_background
from .photos import open_photo, upright_size

VIDEO_SUFFIXES = {".mp4", ".gif"}


class RenderError(Exception):
    pass


@dataclass(frozen=True)
class RenderItem:
    path: Path
    name: str
    matrix: np.ndarray  # 3x3, upright original pixels -> canvas pixels
    # Body mode's background removal: the person's uint8 soft mask over the upright original.
    mask: np.ndarray | None = None
    background: str = "keep"
    feather_px: float = 0.0


def _scale_of(matrix: np.ndarray) -> float:
    return math.sqrt(abs(np.linalg.det(matrix[:2, :2])))


def aligned_frame(item: RenderItem, canvas: tuple[int, int], max_pixels: int) -> Image.Image:
    """Decode at the smallest size that still covers the canvas, then warp once onto it."""
    needed = math.ceil(max(upright_size(item.path)) * _scale_of(item.matrix) * 1.05) + 2
    photo = open_photo(item.path, max_side=needed, max_pixels=max_pixels)
    sx, sy = photo.scale_xy
    to_canvas = item.matrix @ np.diag([1 / sx, 1 / sy, 1.0])  # decoded pixels -> canvas
    inv = np.linalg.inv(to_canvas)
    frame = photo.image.transform(canvas, Image.Transform.AFFINE, data=tuple(inv[:2].ravel()),
                                  resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    if item.mask is not None and item.background != "keep":
        frame = replace_background(frame, item.mask, item.matrix, (photo.width, photo.height),
                                   item.background, item.feather_px)
    return frame


def stream_frames(items: Iterable[RenderItem], canvas: tuple[int, int], max_pixels: int) -> Iterator[Image.Image]:
    for item in items:
        yield aligned_frame(item, canvas, max_pixels)


def write_animation(items: list[RenderItem], canvas: tuple[int, int], out: Path, *, fps: float,
                    quality: int, gif_max_width: int, max_pixels: int, frames_dir: Path | None = None,
                    progress: Callable[[int], None] = lambda n: None) -> int:
    """Write ``items`` in order to ``out``; returns the number of frames written."""
    suffix = out.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise RenderError(f"output {out} must end in .mp4 or .gif")
    if not items:
        raise RenderError("no frames to render")
    out.parent.mkdir(parents=True, exist_ok=True)
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)

    def frames() -> Iterator[Image.Image]:
        for i, (item, img) in enumerate(zip(items, stream_frames(items, canvas, max_pixels)), 1):
            if frames_dir is not None:
                img.save(frames_dir / f"{i:05d}_{Path(item.name).stem}.jpg", quality=92)
            progress(i)
            yield img

    if suffix == ".mp4":
        _write_mp4(frames(), out, fps, quality)
    else:
        _write_gif(frames(), out, fps, gif_max_width)
    return len(items)


def _write_mp4(frames: Iterator[Image.Image], out: Path, fps: float, crf: int) -> None:
    import imageio.v2 as imageio

    tmp = out.with_name(f".{out.name}.partial.mp4")
    writer = imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=None,
                                pixelformat="yuv420p", macro_block_size=2,
                                output_params=["-crf", str(crf), "-preset", "fast", "-movflags", "+faststart"])
    try:
        for img in frames:
            writer.append_data(np.asarray(img))
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    tmp.replace(out)


def _write_gif(frames: Iterator[Image.Image], out: Path, fps: float, max_width: int) -> None:
    def small() -> Iterator[Image.Image]:
        for img in frames:
            if img.width > max_width:
                img = img.resize((max_width, max(1, round(img.height * max_width / img.width))),
                                 Image.Resampling.LANCZOS)
            yield img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)

    it = small()
    first = next(it)
    tmp = out.with_name(f".{out.name}.partial.gif")
    try:
        first.save(tmp, format="GIF", save_all=True, append_images=it, duration=round(1000 / fps), loop=0,
                   optimize=False)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
