"""Medians as numpy gives them, without numpy's masked arrays.

``np.median`` imports ``numpy.ma`` on its first call (8-18 ms of a small folder's first run,
only to check its result for NaN), and ``np.nanmedian`` builds a masked array along a short axis.
These give the same floats: the middle value of the sorted values, or the two middle values' sum
halved.
"""
from __future__ import annotations

import numpy as np


def median(a, axis: int | None = None):
    """``np.median(a, axis)`` for float64 or integer ``a`` (not empty along ``axis``): the same
    floats, as a float64 scalar (``axis`` None, or a 1-D ``a``) or array."""
    a = np.asarray(a)
    if axis is None:
        a, axis = a.ravel(), 0
    n = a.shape[axis]
    if n == 0 or a.dtype.kind not in "fiub":
        return np.median(a, axis=axis)  # (numpy's own answer, and warning, for what is not asked here)
    ordered = np.sort(a, axis=axis)  # (NaN last)
    # As numpy's mean of the middle one or two: a sum from 0.0 (so -0.0 comes out 0.0), then halved
    high = np.take(ordered, n // 2, axis=axis).astype(np.float64)
    middle = 0.0 + high if n % 2 else (0.0 + np.take(ordered, n // 2 - 1, axis=axis).astype(np.float64) + high) / 2.0
    if a.dtype.kind == "f":
        middle = np.where(np.isnan(np.take(ordered, n - 1, axis=axis)), np.nan, middle)
    return middle[()] if np.ndim(middle) == 0 else middle


def nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    """``np.nanmedian(a, axis, keepdims=True)`` for float ``a``: the same floats (NaN for a slice
    with no number), without a warning and a quarter of the time. numpy's own builds a masked
    array along a short axis (0.3 ms a call, twice per photo and round of the second pass, holding
    the interpreter lock that the other detection thread waits for). As there: the middle number,
    or the sum of the two middle numbers halved."""
    a = np.asarray(a)
    missing = np.isnan(a)
    counts = a.shape[axis] - missing.sum(axis=axis, keepdims=True)
    if a.shape[axis] == 0:
        return np.full(counts.shape, np.nan)
    ordered = np.sort(np.where(missing, np.inf, a), axis=axis)  # the numbers first, ascending
    high = counts // 2
    low = np.where(counts % 2 == 1, high, high - 1)
    low_high = np.take_along_axis(ordered, np.concatenate([low, high], axis=axis), axis=axis)
    middle = np.add(*np.split(low_high, 2, axis=axis)) / 2.0
    return np.where(counts > 0, middle, np.nan)
