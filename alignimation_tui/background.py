"""Background removal for body mode: the person's soft mask, warped with the frame's own transform
and feathered, keeps the person over a new background ("white", "black", "blur" or "#rrggbb").

Pure functions on Pillow images; ``render`` calls ``replace_background`` once per frame.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageColor, ImageFilter

NAMED = {"white": (255, 255, 255), "black": (0, 0, 0)}
BLUR_FRACTION = 0.03  # the "blur" background's radius, as a fraction of the frame's long side


def warp_mask(mask: np.ndarray, matrix: np.ndarray, original_size: tuple[int, int],
              canvas: tuple[int, int]) -> Image.Image:
    """A uint8 mask covering the upright original (any resolution) onto the canvas through the
    frame's 3x3 ``matrix`` (original pixels -> canvas pixels), exactly as the frame is warped."""
    rows, cols = mask.shape
    w, h = original_size
    to_canvas = np.asarray(matrix, np.float64) @ np.diag([w / cols, h / rows, 1.0])
    inv = np.linalg.inv(to_canvas)
    return Image.fromarray(np.asarray(mask, np.uint8)).transform(
        canvas, Image.Transform.AFFINE, data=tuple(inv[:2].ravel()), resample=Image.Resampling.BILINEAR,
        fillcolor=0)


def composite(image: Image.Image | np.ndarray, mask: Image.Image | np.ndarray, background: str,
              feather_px: float = 0.0) -> Image.Image:
    """The person (where ``mask`` is high) over ``background``. ``mask``: same size as the image,
    uint8 0..255 or float 0..1. ``feather_px`` softens the outline (a Gaussian of that diameter),
    so the person does not look cut out with scissors."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    img = img.convert("RGB")
    if background == "keep":
        return img
    if not isinstance(mask, Image.Image):
        arr = np.asarray(mask)
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
        mask = Image.fromarray(arr)
    mask = mask.convert("L")
    if mask.size != img.size:
        raise ValueError(f"mask is {mask.size[0]}x{mask.size[1]}, image is {img.size[0]}x{img.size[1]}")
    if feather_px > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(feather_px / 2))
    if background == "blur":
        back = img.filter(ImageFilter.GaussianBlur(max(2.0, BLUR_FRACTION * max(img.size))))
    else:
        back = Image.new("RGB", img.size, NAMED.get(background) or ImageColor.getrgb(background))
    return Image.composite(img, back, mask)


def replace_background(frame: Image.Image, mask: np.ndarray, matrix: np.ndarray,
                       original_size: tuple[int, int], background: str, feather_px: float) -> Image.Image:
    """One aligned frame with its background replaced; ``mask`` covers the upright original."""
    if background == "keep":
        return frame
    return composite(frame, warp_mask(mask, matrix, original_size, frame.size), background, feather_px)
