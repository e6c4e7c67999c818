"""Opening one photo: pixel limit first, reduced-size JPEG decode, EXIF orientation, plain RGB out."""
from __future__ import annotations

import functools
import itertools
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# We check the pixel count ourselves, before decoding, with a message a person understands.
Image.MAX_IMAGE_PIXELS = None

_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that turn the picture by 90 degrees
_ORIENTATION_TAG = 0x0112
# What ImageOps.exif_transpose does for each orientation, and the same as a map of (continuous)
# pixel coordinates, stored picture (w x h) -> upright picture.
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
_TO_UPRIGHT = {1: lambda w, h: ((1, 0, 0), (0, 1, 0)), 2: lambda w, h: ((-1, 0, w), (0, 1, 0)),
               3: lambda w, h: ((-1, 0, w), (0, -1, h)), 4: lambda w, h: ((1, 0, 0), (0, -1, h)),
               5: lambda w, h: ((0, 1, 0), (1, 0, 0)), 6: lambda w, h: ((0, -1, h), (1, 0, 0)),
               7: lambda w, h: ((0, -1, h), (-1, 0, w)), 8: lambda w, h: ((0, 1, 0), (-1, 0, w))}


# Each orientation's turn upright for OpenCV: (flip code or None, then a turn: cv2.rotate's code,
# "transpose" or None), applied turn first. The codes are cv2's constants (ROTATE_90_CLOCKWISE 0,
# ROTATE_180 1, ROTATE_90_COUNTERCLOCKWISE 2; flip 1: left-right, 0: top-bottom, -1: both).
_CV_TURNS = {2: (1, None), 3: (None, 1), 4: (0, None), 5: (None, "transpose"), 6: (None, 0), 7: (-1, "transpose"),
             8: (None, 2)}


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
    """A decoded RGB picture and how its pixels relate to the full-size upright original.

    ``image`` is a Pillow image, or for the render (``open_stored``) a numpy ``(h, w, 3)`` uint8
    array, which OpenCV warps without a copy."""

    image: Image.Image | np.ndarray
    width: int  # upright original size
    height: int
    orientation: int = 1  # the EXIF orientation ``image`` is still stored in (1: upright)
    # ``image``'s pixels as a read-only RGB array, where the decode made one (``open_photo`` of a
    # JPEG): ``array()`` then gives it without copying the Pillow image out again (detection's
    # consumers each did: 10-17 ms a phone photo).
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def stored_size(self) -> tuple[int, int]:
        """Width and height of ``image`` as it is held (before ``orientation`` is applied)."""
        image = self.image
        return (image.shape[1], image.shape[0]) if isinstance(image, np.ndarray) else image.size

    @property
    def upright_size(self) -> tuple[int, int]:
        w, h = self.stored_size
        return (h, w) if self.orientation in _SWAPS_AXES else (w, h)

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Decoded (upright) pixels per original pixel, along x and y (<= 1)."""
        w, h = self.upright_size
        return w / self.width, h / self.height

    def to_upright(self) -> np.ndarray:
        """3x3: ``image``'s pixels -> the upright decoded picture's pixels."""
        return np.array([*_TO_UPRIGHT.get(self.orientation, _TO_UPRIGHT[1])(*self.stored_size), (0, 0, 1)], np.float64)

    def array(self) -> np.ndarray:
        """``image`` as a numpy RGB array (a copy only when it is a Pillow image without ``pixels``)."""
        if isinstance(self.image, np.ndarray):
            return self.image
        if self.pixels is not None:
            return self.pixels
        return np.asarray(self.image if self.image.mode == "RGB" else self.image.convert("RGB"))

    @staticmethod
    def upright_image(image: Image.Image, orientation: int) -> Image.Image:
        """``image`` (stored in ``orientation``) turned upright."""
        method = _TRANSPOSE.get(orientation)
        return image if method is None else image.transpose(method)

    @staticmethod
    def upright_array(array: np.ndarray, orientation: int) -> np.ndarray:
        """``array`` (stored in ``orientation``) turned upright, as a contiguous array. 8-bit
        pictures are turned by OpenCV (a phone photo's quarter-size decode: 0.5 ms, against 6 ms
        for numpy's strided copy; the same pixels)."""
        if orientation in _CV_TURNS and array.dtype == np.uint8 and (
                array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
            import cv2

            flip, turn = _CV_TURNS[orientation]
            out = array if turn is None else cv2.transpose(array) if turn == "transpose" else cv2.rotate(array, turn)
            out = out if flip is None else cv2.flip(out, flip)
            return out.reshape(out.shape[:2] + array.shape[2:])  # (OpenCV drops a single channel's axis)
        if orientation in (2, 3, 4):
            array = array[:, ::-1] if orientation == 2 else array[::-1] if orientation == 4 else array[::-1, ::-1]
        elif orientation in _SWAPS_AXES:  # 5: transpose; 6: turn right; 7: transverse; 8: turn left
            array = array.swapaxes(0, 1)
            array = {5: array, 6: array[:, ::-1], 7: array[::-1, ::-1], 8: array[::-1]}[orientation]
        return np.ascontiguousarray(array)


def _orientation(img: Image.Image) -> int:
    try:
        return img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block must not stop the photo
        return 1


def _upright_size(img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    return (h, w) if _orientation(img) in _SWAPS_AXES else (w, h)


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


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    """The photo opened (its header read, nothing decoded), within ``max_pixels``."""
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
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise PhotoError(f"too large: {w}x{h} is {w * h / 1e6:.0f} MP, above the limit of "
                         f"{max_pixels / 1e6:.0f} MP (scan.max_pixels)")
    return img


def open_photo(path: Path, max_side: int | None = None, max_pixels: int = 120_000_000,
               slack: float = 0.0, resize_within: float = 1.0, upright: bool = True) -> Decoded:
    """Decode ``path`` upright, at most ``max_side`` pixels on the long side (None: full size).

    JPEGs are decoded at a reduced DCT scale when that still covers ``max_side``, so a 12 MP photo
    costs a fraction of a full decode. With ``slack`` > 0 a DCT scale that falls short of
    ``max_side`` by at most that fraction is taken as it is (4032 px -> 1008 px, not 2016 px resized
    to 1024 px: a quarter of the decoding and no resize). With ``resize_within`` > 1 a decoded
    picture up to that factor larger than ``max_side`` is returned as it is (a caller that warps it
    anyway does the scaling in the warp). Never enlarges. ``upright=False`` leaves the picture as
    stored, its EXIF orientation in ``Decoded.orientation``, for a caller that warps it anyway (a
    full-size turn and copy cost half a 12 MP decode).

    An RGB JPEG is decoded by simplejpeg (``_turbo_jpeg``: the same pixels as Pillow's decode at
    the same DCT scale, 20 ms against 24.5 for a phone photo at a quarter here) and turned upright
    in numpy; its array comes along as ``Decoded.pixels``, so ``Decoded.array()`` costs nothing.
    """
    with _open_checked(path, max_pixels) as img:
        w, h = img.size
        up_w, up_h = _upright_size(img)
        long_side = max(w, h)
        target = long_side if max_side is None else min(max_side, long_side)
        scale = _dct_scale(long_side, target, slack) if img.format == "JPEG" and target < long_side else 1
        if img.format == "JPEG" and img.mode == "RGB":
            stored_orientation = _orientation(img)
            array = _turbo_jpeg(path, (w, h), scale)
            if array is not None:  # (else Pillow decodes it below, and says what is wrong with it)
                return _from_array(array, stored_orientation, upright, target, resize_within, (up_w, up_h))
        if scale > 1:
            img.draft("RGB", (max(1, w // scale), max(1, h // scale)))
        orientation = 1 if upright else _orientation(img)
        if orientation not in _TO_UPRIGHT:
            orientation = 1
        try:
            img.load()
            rgb = _to_rgb(ImageOps.exif_transpose(img) if upright else img)
            if rgb is img:  # the decoded pixels themselves, kept (no copy) when the file is closed
                rgb = img._new(img.im)
        except (OSError, SyntaxError, ValueError) as exc:
            raise PhotoError(f"cannot decode (truncated or damaged file): {exc}") from None
    if max(rgb.size) > target * resize_within:
        ratio = target / max(rgb.size)
        new = (max(1, round(rgb.width * ratio)), max(1, round(rgb.height * ratio)))
        rgb = rgb.resize(new, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return Decoded(image=rgb, width=up_w, height=up_h, orientation=orientation)


def _from_array(array: np.ndarray, orientation: int, upright: bool, target: int, resize_within: float,
                size: tuple[int, int]) -> Decoded:
    """``open_photo``'s result from simplejpeg's decode of an RGB JPEG (as stored): the same pixels
    as Pillow's decode at that DCT scale, turned upright in numpy (the same permutation as
    ``exif_transpose``), kept as ``Decoded.pixels`` beside the Pillow image made from them."""
    if orientation not in _TO_UPRIGHT:
        orientation = 1
    if upright:
        array, orientation = Decoded.upright_array(array, orientation), 1
    rgb = Image.fromarray(array)
    if max(rgb.size) > target * resize_within:  # as ``open_photo`` resizes a Pillow decode
        ratio = target / max(rgb.size)
        new = (max(1, round(rgb.width * ratio)), max(1, round(rgb.height * ratio)))
        return Decoded(rgb.resize(new, Image.Resampling.BILINEAR, reducing_gap=2.0), *size, orientation)
    array.flags.writeable = False  # shared by every reader of this decode
    return Decoded(rgb, *size, orientation, pixels=array)


_scratch = threading.local()  # per thread: the buffer ``open_stored(scratch=True)`` decodes into


def _scratch_buffer(size: int) -> np.ndarray:
    buf = getattr(_scratch, "buffer", None)
    if buf is None or buf.size < size:
        buf = _scratch.buffer = np.empty(size, np.uint8)
    return buf[:size]


def open_stored(path: Path, max_side: int, max_pixels: int = 120_000_000, resize_within: float = 2.0,
                scratch: bool = False) -> Decoded:
    """Decode ``path`` for a warp: as stored (its EXIF orientation in ``Decoded.orientation``), as
    a numpy RGB array, at the smallest JPEG DCT scale still covering ``max_side`` (up to
    ``resize_within`` times larger is kept as it is, the warp scales anyway).

    An RGB or grey JPEG goes through simplejpeg (libjpeg-turbo's TurboJPEG API) straight into an
    array: a 12 MP photo at full size in 52 ms here, against 74 ms for Pillow's decode (plus its
    copy into an array) and 85 ms for OpenCV's, the same pixels; the reduced scales cost the same
    in all three. Any other photo, or one simplejpeg finds damaged, goes through ``open_photo``,
    so its errors and formats are the same as everywhere else. ``scratch``: decode into this
    thread's own buffer, reused by its next such decode (a fresh 12 MP array costs ~6 ms of page
    faults); only for a caller that is done with the pixels before it decodes again."""
    with _open_checked(path, max_pixels) as img:
        w, h = img.size
        up_w, up_h = _upright_size(img)
        orientation = _orientation(img)
        if orientation not in _TO_UPRIGHT:
            orientation = 1
        # MPO: a camera's JPEG with more pictures after the first (the one shown), which simplejpeg reads.
        plain = img.format in ("JPEG", "MPO") and img.mode in ("RGB", "L")
    long_side = max(w, h)
    target = min(max_side, long_side)
    array = _turbo_jpeg(path, (w, h), _dct_scale(long_side, target, 0.0), scratch) if plain else None
    if array is None:
        photo = open_photo(path, max_side=max_side, max_pixels=max_pixels, resize_within=resize_within, upright=False)
        return Decoded(photo.array(), photo.width, photo.height, photo.orientation)
    if max(array.shape[:2]) > target * resize_within:
        import cv2

        ratio = target / max(array.shape[:2])
        new = (max(1, round(array.shape[1] * ratio)), max(1, round(array.shape[0] * ratio)))
        array = cv2.resize(array, new, interpolation=cv2.INTER_AREA)
    return Decoded(array, up_w, up_h, orientation)


def _turbo_jpeg(path: Path, size: tuple[int, int], scale: int, scratch: bool = False) -> np.ndarray | None:
    """The JPEG at ``path`` decoded at 1/``scale`` into an RGB array (as stored); None when it
    cannot be: simplejpeg missing, the file gone, damaged or truncated (strict: a warning is a
    failure, and Pillow then says what is wrong), or a size other than libjpeg's for that scale."""
    try:
        import simplejpeg
    except ImportError:
        return None
    w, h = size
    shape = (-(-h // scale), -(-w // scale), 3)  # libjpeg's size at that scale
    try:
        data = Path(path).read_bytes()
        # min_factor pins the scale to 1/scale: simplejpeg would otherwise take the smallest of
        # libjpeg's eighths that covers the size, and the odd eighths decode slower than 1/1.
        array = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=shape[1], min_height=shape[0],
                                       min_factor=scale, strict=True,
                                       buffer=_scratch_buffer(shape[0] * shape[1] * 3) if scratch else None)
    except (OSError, ValueError):
        return None
    if array.shape != shape:
        return None
    return array
