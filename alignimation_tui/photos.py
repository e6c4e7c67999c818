"""Opening one photo: pixel limit first, reduced-size JPEG decode, EXIF orientation, plain RGB out."""
from __future__ import annotations

import functools
import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# We check the pixel count ourselves, before decoding, with a message a person understands.
Image.MAX_IMAGE_PIXELS = None

_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90 degrees
_ORIENTATION_TAG = 0x0112


@functools.cache
def register_heic() -> bool:
    """Teach Pillow to open HEIC/HEIF (pillow-heif, a dependency); False if it is not installed.
    pillow-heif applies the rotation and mirroring HEIF keeps in its own boxes (irot/imir) and
    resets the EXIF orientation, so the picture comes out upright like any other."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


HEIC_SUFFIXES = (".heic", ".heif", ".hif")


def ensure_decoder(path: Path) -> None:
    """Register the decoder ``path`` needs before Pillow opens it (HEIC's is a plugin)."""
    if Path(path).suffix.lower() in HEIC_SUFFIXES:
        register_heic()


class PhotoError(Exception):
    """A photo that cannot be used; the message says why in plain words."""


@dataclass
class Decoded:
    """An upright RGB picture and how its pixels relate to the full-size upright original."""

    image: Image.Image
    width: int  # upright original size
    height: int

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Decoded pixels per original pixel, along x and y (<= 1)."""
        return self.image.width / self.width, self.image.height / self.height


def _upright_size(img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    try:
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not stop the photo
        orientation = 1
    return (h, w) if orientation in _SWAPS_AXES else (w, h)


def upright_size(path: Path) -> tuple[int, int]:
    """Width and height of the photo as it should be shown, read from its header only."""
    ensure_decoder(path)
    try:
        with Image.open(path) as img:
            return _upright_size(img)
    except (OSError, ValueError) as exc:
        raise PhotoError(f"cannot open: {exc}") from None


def decode_ahead(items: list, decode: Callable, workers: int, ahead: int) -> Iterator[tuple]:
    """Yield ``(item, result, error)`` in order while up to ``ahead`` decodes run in ``workers``
    threads (Pillow releases the GIL while decoding). Memory stays bounded by ``ahead``. Closing
    the generator cancels what has not started."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    pending: deque = deque()
    it = iter(items)
    try:
        for item in itertools.islice(it, ahead):
            pending.append((item, pool.submit(decode, item)))
        while pending:
            item, fut = pending.popleft()
            try:
                result, error = fut.result(), None
            except PhotoError as exc:
                result, error = None, str(exc)
            except Exception as exc:  # one odd file must not stop the others
                result, error = None, f"unexpected error while decoding: {exc!r}"
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append((nxt, pool.submit(decode, nxt)))
            yield item, result, error
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


_END = object()


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if arr.max() > 255 else 255.0
        return Image.fromarray((arr * (255.0 / top)).clip(0, 255).astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _dct_scale(long_side: int, target: int, slack: float) -> int:
    """The largest JPEG DCT reduction (1, 2, 4 or 8) whose long side is still at least
    ``target * (1 - slack)``."""
    for s in (8, 4, 2):
        if long_side // s >= target * (1.0 - slack):
            return s
    return 1


def open_photo(path: Path, max_side: int | None = None, max_pixels: int = 120_000_000,
               slack: float = 0.0, resize_within: float = 1.0) -> Decoded:
    """Decode ``path`` upright, at most ``max_side`` pixels on the long side (None: full size).

    JPEGs are decoded at a reduced DCT scale when that still covers ``max_side``, so a 12 MP photo
    costs a fraction of a full decode. With ``slack`` > 0 a DCT scale that falls short of
    ``max_side`` by at most that fraction is taken as it is (4032 px -> 1008 px, not 2016 px resized
    to 1024 px: a quarter of the decoding and no resize). With ``resize_within`` > 1 a decoded
    picture up to that factor larger than ``max_side`` is returned as it is (a caller that warps it
    anyway does the scaling in the warp). Never enlarges.
    """
    ensure_decoder(path)
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise PhotoError("the file disappeared before it could be read") from None
    except UnidentifiedImageError:
        size = Path(path).stat().st_size if Path(path).exists() else 0
        raise PhotoError("the file is empty (0 bytes)" if size == 0 else "not an image Pillow can read") from None
    except OSError as exc:
        raise PhotoError(f"cannot open: {exc}") from None
    with img:
        w, h = img.size
        if w * h > max_pixels:
            raise PhotoError(f"too large: {w}x{h} is {w * h / 1e6:.0f} MP, above the limit of "
                             f"{max_pixels / 1e6:.0f} MP (scan.max_pixels)")
        up_w, up_h = _upright_size(img)
        long_side = max(w, h)
        target = long_side if max_side is None else min(max_side, long_side)
        if img.format == "JPEG" and target < long_side:
            scale = _dct_scale(long_side, target, slack)
            if scale > 1:
                img.draft("RGB", (max(1, w // scale), max(1, h // scale)))
        try:
            img.load()
            upright = ImageOps.exif_transpose(img)
            rgb = _to_rgb(upright)
        except (OSError, SyntaxError, ValueError) as exc:
            raise PhotoError(f"cannot decode (truncated or damaged file): {exc}") from None
    if max(rgb.size) > target * resize_within:
        ratio = target / max(rgb.size)
        new = (max(1, round(rgb.width * ratio)), max(1, round(rgb.height * ratio)))
        rgb = rgb.resize(new, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return Decoded(image=rgb, width=up_w, height=up_h)
