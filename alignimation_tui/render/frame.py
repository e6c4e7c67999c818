"""One output picture: decode, warp once onto the canvas, fill the border, write the caption.

The composition is layered so that a background step slots in: the warp gives the photo's pixels
*premultiplied* by their coverage (bilinear edges fade to black) and the coverage itself as an
alpha; ``composite`` lays them over a background. A per-frame subject mask (body mode) multiplies
into both — pixels and alpha — before ``composite``, and picks the background.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..photos import Decoded, open_stored, upright_size

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
def _font(pixels: int):
    from PIL import ImageFont  # (its FreeType part: imported only when a caption is drawn)

    return ImageFont.load_default(size=pixels)  # Pillow's bundled font (Aileron) when FreeType is there


def draw_caption(img: Image.Image, text: str, style: CaptionStyle) -> None:
    if not text:
        return
    px = max(8, round(img.height * style.size))
    font = _font(px)
    stroke = max(1, px // 12)
    from PIL import ImageDraw

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


def decode_for(path: Path, matrix: np.ndarray, max_pixels: int, size: tuple[int, int] | None = None,
               scratch: bool = False) -> Decoded:
    """Decode at the smallest size that still covers the canvas at this transform's scale
    (``scratch``: into the thread's reused buffer, see ``open_stored``)."""
    size = size or upright_size(path)
    needed = math.ceil(max(size) * _scale_of(matrix) * 1.05) + 2
    # The warp resamples anyway: a decode up to twice the needed size (the JPEG DCT scale above
    # it) is warped as it is, not resized first (resizing a 12 MP decode cost more than the warp),
    # and not turned upright either: the warp does that too.
    return open_stored(path, max_side=needed, max_pixels=max_pixels, resize_within=2.0, scratch=scratch)


# Our pixel coordinates put a pixel's centre at +0.5 (as Pillow does); OpenCV's at the integer.
_HALF = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
_UNHALF = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])


def _canvas_to_photo(photo: Decoded, matrix: np.ndarray) -> np.ndarray:
    """3x3: canvas pixel -> ``photo.image``'s pixel (as stored), pixel centres at +0.5."""
    sx, sy = photo.scale_xy
    to_canvas = np.asarray(matrix, np.float64) @ np.diag([1 / sx, 1 / sy, 1.0]) @ photo.to_upright()  # decoded -> canvas
    return np.linalg.inv(to_canvas)


# OpenCV's warps index the source in 16 bits: a side this long (a panorama) goes through Pillow.
CV_MAX_SIDE = 32767


# OpenCV's bilinear warp is vectorised for 4 channels and not for 3: the same bytes in under half
# the time (a 1080x1080 frame of a 250x250 photo: 2.4 ms against 5.5 here, the channel added and
# taken off again included), and the fourth channel, opaque in the photo and clear outside it,
# comes out as the photo's coverage, the same bytes as warping a mask. Adding the channel is a pass
# over the photo, so photos of up to this many times the frame's pixels go that way.
FOUR_CHANNELS_UP_TO = 2.0


def _cv_inverse(inverse: np.ndarray) -> np.ndarray:
    """``_canvas_to_photo`` as OpenCV's 2x3 inverse map (its pixel centres at the integer)."""
    return (_UNHALF @ inverse @ _HALF)[:2]


def _four_channels(source: np.ndarray, size: tuple[int, int]) -> bool:
    return (source.ndim == 3 and source.shape[2] == 3 and max(source.shape[:2]) < CV_MAX_SIDE
            and source.shape[0] * source.shape[1] <= FOUR_CHANNELS_UP_TO * size[0] * size[1])


def _warp_rgba(source: np.ndarray, photo: Decoded, matrix: np.ndarray, size: tuple[int, int], fill) -> np.ndarray:
    import cv2

    return cv2.warpAffine(cv2.cvtColor(source, cv2.COLOR_RGB2RGBA), _cv_inverse(_canvas_to_photo(photo, matrix)),
                          tuple(size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(*fill, 0))


def _warp(source: np.ndarray, photo: Decoded, matrix: np.ndarray, size: tuple[int, int], fill) -> np.ndarray:
    import cv2

    if _four_channels(source, size):
        return cv2.cvtColor(_warp_rgba(source, photo, matrix, size, fill), cv2.COLOR_RGBA2RGB)
    inverse = _canvas_to_photo(photo, matrix)
    if max(source.shape[:2]) >= CV_MAX_SIDE:
        return np.array(Image.fromarray(source).transform(tuple(size), Image.Transform.AFFINE,
                                                          data=tuple(inverse[:2].ravel()),
                                                          resample=Image.Resampling.BILINEAR, fillcolor=fill))
    return cv2.warpAffine(source, _cv_inverse(inverse), tuple(size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=fill)


def _warp_on_black(source: np.ndarray, photo: Decoded, matrix: np.ndarray,
                   size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The photo warped onto black, and its coverage (``warp_coverage``)."""
    import cv2

    if _four_channels(source, size):
        rgba = _warp_rgba(source, photo, matrix, size, (0, 0, 0))
        return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB), cv2.extractChannel(rgba, 3)
    return _warp(source, photo, matrix, size, (0, 0, 0)), warp_coverage(photo, matrix, size)


def warp(photo: Decoded, matrix: np.ndarray, size: tuple[int, int], fill=(0, 0, 0)) -> np.ndarray:
    """The photo on the canvas (``size``), bilinear, ``fill`` where it does not reach (its edges
    blended into it): an RGB array. OpenCV's warp, several times faster than Pillow's."""
    return _warp(photo.array(), photo, matrix, size, tuple(int(v) for v in fill))


def warp_coverage(photo: Decoded, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Alpha: where the photo covers the canvas (255), its edges blended like the pixels."""
    w, h = photo.stored_size
    return _warp(np.full((h, w), 255, np.uint8), photo, matrix, size, 0)


def covers(photo: Decoded, matrix: np.ndarray, size: tuple[int, int]) -> bool:
    """Whether the photo covers the whole output (every output corner maps inside the photo), so
    no fill shows. With the face framed close, most frames do."""
    inv = np.linalg.inv(np.asarray(matrix, np.float64))
    w, h = size
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ inv.T
    x, y = corners[:, 0] / corners[:, 2], corners[:, 1] / corners[:, 2]
    return bool((x >= 0).all() and (y >= 0).all() and (x <= photo.width).all() and (y <= photo.height).all())


def blurred_cover(photo: Decoded, size: tuple[int, int],
                  gain: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The photo scaled to cover ``size`` and blurred: a background for the uncovered border.
    ``gain``: a colour correction, of the blurred picture before it is scaled up to ``size``."""
    import cv2

    small = (max(1, size[0] // 8), max(1, size[1] // 8))
    array = photo.array()
    up_w, up_h = photo.upright_size
    factor = int(min(up_w / small[0], up_h / small[1]) // 2)
    if factor > 1:  # an area reduction first, to about twice the small size
        w, h = photo.stored_size
        array = cv2.resize(array, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    array = Decoded.upright_array(array, photo.orientation)
    h, w = array.shape[:2]  # the centre part with the output's shape (as ImageOps.fit)
    keep_w, keep_h = min(w, h * small[0] / small[1]), min(h, w * small[1] / small[0])
    x0, y0 = round((w - keep_w) / 2), round((h - keep_h) / 2)
    array = array[y0:y0 + max(1, round(keep_h)), x0:x0 + max(1, round(keep_w))]
    cover = cv2.resize(array, small, interpolation=cv2.INTER_LINEAR)
    cover = cv2.GaussianBlur(cover, (0, 0), max(small) / 40)
    if gain is not None:
        cover = gain(cover)
    return cv2.resize(cover, tuple(size), interpolation=cv2.INTER_LINEAR)


def composite(premultiplied: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``premultiplied + background * (1 - alpha)``, rounded, in uint8, written into
    ``premultiplied`` (a fresh warp) and returned. Where the photo covers the pixel (255) it
    stays as it is; where it does not reach (0) the background is added; only the few pixels of
    its blended edge are weighed, with the same arithmetic as over the whole frame: the same
    bytes, in 3 ms instead of 7.5 ms at 1080x1080 here."""
    import cv2

    out = np.asarray(premultiplied, np.uint8)
    if not out.flags.writeable:
        out = out.copy()
    alpha, background = np.asarray(alpha, np.uint8), np.asarray(background, np.uint8)
    cv2.add(out, background, dst=out, mask=cv2.compare(alpha, 0, cv2.CMP_EQ))
    edge = cv2.findNonZero(cv2.inRange(alpha, 1, 254))
    if edge is not None:
        xs, ys = edge.reshape(-1, 2).T
        left = cv2.merge([255 - alpha[ys, xs][:, None]] * 3)
        out[ys, xs] = cv2.add(out[ys, xs][:, None], cv2.multiply(background[ys, xs][:, None], left,
                                                                 scale=1 / 255))[:, 0]
    return out


def compose(path: Path, matrix: np.ndarray, size: tuple[int, int], fill: str, max_pixels: int,
            photo_size: tuple[int, int] | None = None, picture=None) -> Image.Image:
    """The aligned picture of one photo on an output of ``size`` (caption not included).
    ``picture``: the box (upright original pixels) that is picture, not padding (``borders``)."""
    return compose_decoded(decode_for(path, matrix, max_pixels, photo_size), matrix, size, fill, picture)


def within(photo: Decoded, matrix: np.ndarray, picture) -> tuple[Decoded, np.ndarray]:
    """The decoded photo cropped to ``picture`` (x0, y0, x1, y1 in upright original pixels, rounded
    inwards to decoded pixels), as a photo of its own, and the matrix from its pixels to the canvas:
    what lies outside is then outside the photo for the warp, the coverage and the blurred fill.
    A photo decoded as stored is cropped as stored (a view of its array, nothing turned)."""
    sx, sy = photo.scale_xy
    x0, y0 = math.ceil(picture[0] * sx - 1e-6), math.ceil(picture[1] * sy - 1e-6)
    x1, y1 = math.floor(picture[2] * sx + 1e-6), math.floor(picture[3] * sy + 1e-6)
    iw, ih = photo.upright_size
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(iw, x1), min(ih, y1)
    if (x0, y0, x1, y1) == (0, 0, iw, ih) or x1 - x0 < 2 or y1 - y0 < 2:
        return photo, matrix
    # The upright box in the stored picture's pixels (the orientation only turns and mirrors).
    corners = np.linalg.inv(photo.to_upright()) @ np.array([[x0, x1], [y0, y1], [1.0, 1.0]])
    (u0, u1), (v0, v1) = np.sort(np.rint(corners[:2]).astype(int), axis=1)
    image = photo.image
    cut = image[v0:v1, u0:u1] if isinstance(image, np.ndarray) else image.crop((u0, v0, u1, v1))
    cropped = Decoded(cut, (x1 - x0) / sx, (y1 - y0) / sy, photo.orientation)
    shift = np.array([[1.0, 0.0, x0 / sx], [0.0, 1.0, y0 / sy], [0.0, 0.0, 1.0]])
    return cropped, np.asarray(matrix, np.float64) @ shift


def compose_decoded(photo: Decoded, matrix: np.ndarray, size: tuple[int, int], fill: str,
                    picture=None) -> Image.Image:
    """``compose`` for a photo already decoded (at any size: ``matrix`` maps its original pixels)."""
    return Image.fromarray(compose_array(photo, matrix, size, fill, picture))


def compose_array(photo: Decoded, matrix: np.ndarray, size: tuple[int, int], fill: str,
                  picture=None, gain: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """``compose_decoded`` as an RGB array. ``gain``: a colour correction of the photo's pixels
    (``ColourGain.apply``). A solid ``fill`` stays the colour asked for in every frame: where it
    shows, the photo is corrected before the warp. So is a decode with fewer pixels than the
    frame (a small photo, scaled up: a look-up over a 250x250 photo instead of a 1080x1080
    frame). Otherwise the picture is corrected after the warp. The blurred fill is made of the
    photo, so it takes the same correction either way."""
    if picture is not None:
        photo, matrix = within(photo, matrix, picture)
    solid = fill_rgb(fill)
    source = photo.array()
    covered = covers(photo, matrix, size)
    before = gain is not None and ((solid is not None and not covered)
                                   or source.shape[0] * source.shape[1] < size[0] * size[1])
    if before:
        source = gain(source)
    after = gain if gain is not None and not before else (lambda array: array)
    if covered:
        return after(_warp(source, photo, matrix, size, solid or (0, 0, 0)))
    if solid is not None:
        return _warp(source, photo, matrix, size, solid)
    # The blurred fill is made of the photo as decoded; corrected with it, before or after.
    cover = blurred_cover(photo, size, gain if before else None)
    return after(composite(*_warp_on_black(source, photo, matrix, size), cover))
