"""One output picture: decode, warp once onto the canvas, fill the border, write the caption.

The composition is layered so that a background step slots in: the warp gives the photo's pixels
*premultiplied* by their coverage (bilinear edges fade to black) and the coverage itself as an
alpha; ``composite`` lays them over a background. A per-frame subject mask (body mode) multiplies
into both — pixels and alpha — before ``composite``, and picks the background.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from ..photos import Decoded, open_photo, upright_size

CAPTION_POSITIONS = ("bottom-left", "bottom", "bottom-right", "top-left", "top", "top-right")
_HEX = re.compile(r"#[0-9a-fA-F]{6}")
_NAMED = {"black": (0, 0, 0), "white": (255, 255, 255)}


def fill_rgb(value: str) -> tuple[int, int, int] | None:
    """The solid colour for ``fill``; None for 'blur'."""
    if value in _NAMED:
        return _NAMED[value]
    if _HEX.fullmatch(value):
        return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))
    return None


@dataclass(frozen=True)
class CaptionStyle:
    format: str  # strftime codes and {index} {count} {name} {date} {days} {weeks}
    position: str = "bottom-left"
    size: float = 0.05  # text height as a fraction of the frame height


def caption_text(fmt: str, *, index: int, count: int, taken_at: datetime | None, first: datetime | None,
                 name: str) -> str:
    """``fmt`` with ``{index}`` (1-based), ``{count}``, ``{name}``, ``{date}``, ``{days}`` and
    ``{weeks}`` (whole days/weeks since the first photo) filled in, then strftime codes (``%Y``)."""
    days = (taken_at - first).days if taken_at is not None and first is not None else 0
    text = fmt.format(index=index, count=count, name=name.replace("%", "%%"), date=taken_at,
                      days=days, weeks=days // 7)
    return taken_at.strftime(text) if taken_at is not None else text.replace("%%", "%")


@lru_cache(maxsize=8)
def _font(pixels: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=pixels)  # Pillow's bundled font (Aileron) when FreeType is there


def draw_caption(img: Image.Image, text: str, style: CaptionStyle) -> None:
    if not text:
        return
    px = max(8, round(img.height * style.size))
    font = _font(px)
    stroke = max(1, px // 12)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    margin = round(px * 0.6)
    vertical, _, horizontal = style.position.partition("-")
    horizontal = horizontal or "centre"
    x = {"left": margin, "right": img.width - margin - (x1 - x0), "centre": (img.width - (x1 - x0)) // 2}[horizontal]
    y = margin if vertical == "top" else img.height - margin - (y1 - y0)
    draw.text((x - x0, y - y0), text, font=font, fill=(255, 255, 255), stroke_width=stroke, stroke_fill=(0, 0, 0))


def _scale_of(matrix: np.ndarray) -> float:
    return math.sqrt(abs(np.linalg.det(matrix[:2, :2])))


def decode_for(path: Path, matrix: np.ndarray, max_pixels: int, size: tuple[int, int] | None = None) -> Decoded:
    """Decode at the smallest size that still covers the canvas at this transform's scale."""
    size = size or upright_size(path)
    needed = math.ceil(max(size) * _scale_of(matrix) * 1.05) + 2
    # The warp resamples anyway: a decode up to twice the needed size (the JPEG DCT scale above
    # it) is warped as it is, not resized first (resizing a 12 MP decode cost more than the warp),
    # and not turned upright either: the warp does that too.
    return open_photo(path, max_side=needed, max_pixels=max_pixels, resize_within=2.0, upright=False)


def _affine(photo: Decoded, matrix: np.ndarray) -> tuple:
    sx, sy = photo.scale_xy
    to_canvas = np.asarray(matrix, np.float64) @ np.diag([1 / sx, 1 / sy, 1.0]) @ photo.to_upright()  # decoded -> canvas
    return tuple(np.linalg.inv(to_canvas)[:2].ravel())


def warp(photo: Decoded, matrix: np.ndarray, size: tuple[int, int], fill=(0, 0, 0)) -> Image.Image:
    return photo.image.transform(size, Image.Transform.AFFINE, data=_affine(photo, matrix),
                                 resample=Image.Resampling.BILINEAR, fillcolor=fill)


def warp_coverage(photo: Decoded, matrix: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Alpha: where the photo covers the canvas (255), its edges blended like the pixels."""
    solid = Image.new("L", photo.image.size, 255)
    return solid.transform(size, Image.Transform.AFFINE, data=_affine(photo, matrix),
                           resample=Image.Resampling.BILINEAR, fillcolor=0)


def covers(photo: Decoded, matrix: np.ndarray, size: tuple[int, int]) -> bool:
    """Whether the photo covers the whole output (every output corner maps inside the photo), so
    no fill shows. With the face framed close, most frames do."""
    inv = np.linalg.inv(np.asarray(matrix, np.float64))
    w, h = size
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ inv.T
    x, y = corners[:, 0] / corners[:, 2], corners[:, 1] / corners[:, 2]
    return bool((x >= 0).all() and (y >= 0).all() and (x <= photo.width).all() and (y <= photo.height).all())


def blurred_cover(photo: Decoded, size: tuple[int, int]) -> Image.Image:
    """The photo scaled to cover ``size`` and blurred: a background for the uncovered border."""
    small = (max(1, size[0] // 8), max(1, size[1] // 8))
    image = photo.image
    up_w, up_h = photo.upright_size
    factor = int(min(up_w / small[0], up_h / small[1]) // 2)
    if factor > 1:  # a fast box reduction first: fitting a 12 MP decode directly cost ~30 ms
        image = image.reduce(factor)
    image = photo.upright_image(image, photo.orientation)
    cover = ImageOps.fit(image, small, Image.Resampling.BILINEAR)
    cover = cover.filter(ImageFilter.GaussianBlur(max(small) / 40))
    return cover.resize(size, Image.Resampling.BILINEAR)


def composite(premultiplied: Image.Image, alpha: Image.Image, background: Image.Image) -> Image.Image:
    """``premultiplied + background * (1 - alpha)``."""
    fg = np.asarray(premultiplied, np.uint16)
    a = np.asarray(alpha, np.uint16)[..., None]
    bg = np.asarray(background, np.uint16)
    out = fg + (bg * (255 - a) + 127) // 255
    return Image.fromarray(np.minimum(out, 255).astype(np.uint8))


def compose(path: Path, matrix: np.ndarray, size: tuple[int, int], fill: str, max_pixels: int,
            photo_size: tuple[int, int] | None = None, picture=None) -> Image.Image:
    """The aligned picture of one photo on an output of ``size`` (caption not included).
    ``picture``: the box (upright original pixels) that is picture, not padding (``borders``)."""
    return compose_decoded(decode_for(path, matrix, max_pixels, photo_size), matrix, size, fill, picture)


def within(photo: Decoded, matrix: np.ndarray, picture) -> tuple[Decoded, np.ndarray]:
    """The decoded photo cropped to ``picture`` (x0, y0, x1, y1 in original pixels, rounded inwards
    to decoded pixels), as a photo of its own, and the matrix from its pixels to the canvas: what
    lies outside is then outside the photo for the warp, the coverage and the blurred fill."""
    if photo.orientation != 1:  # decoded as stored (decode_for): the box is upright, so the picture first
        photo = Decoded(photo.upright_image(photo.image, photo.orientation), photo.width, photo.height)
    sx, sy = photo.scale_xy
    x0, y0 = math.ceil(picture[0] * sx - 1e-6), math.ceil(picture[1] * sy - 1e-6)
    x1, y1 = math.floor(picture[2] * sx + 1e-6), math.floor(picture[3] * sy + 1e-6)
    iw, ih = photo.image.size
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(iw, x1), min(ih, y1)
    if (x0, y0, x1, y1) == (0, 0, iw, ih) or x1 - x0 < 2 or y1 - y0 < 2:
        return photo, matrix
    cropped = Decoded(photo.image.crop((x0, y0, x1, y1)), (x1 - x0) / sx, (y1 - y0) / sy)
    shift = np.array([[1.0, 0.0, x0 / sx], [0.0, 1.0, y0 / sy], [0.0, 0.0, 1.0]])
    return cropped, np.asarray(matrix, np.float64) @ shift


def compose_decoded(photo: Decoded, matrix: np.ndarray, size: tuple[int, int], fill: str,
                    picture=None) -> Image.Image:
    """``compose`` for a photo already decoded (at any size: ``matrix`` maps its original pixels)."""
    if picture is not None:
        photo, matrix = within(photo, matrix, picture)
    solid = fill_rgb(fill)
    if solid is not None:
        return warp(photo, matrix, size, solid)
    if covers(photo, matrix, size):
        return warp(photo, matrix, size)
    return composite(warp(photo, matrix, size), warp_coverage(photo, matrix, size), blurred_cover(photo, size))
