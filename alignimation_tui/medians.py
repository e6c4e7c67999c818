"""The median as ``np.median`` gives it, without importing numpy's masked arrays.

``np.median`` imports ``numpy.ma`` on its first call (8-18 ms of a small folder's first run,
only to check its result for NaN). This gives the same floats for float64 and integer arrays:
the middle value of the sorted values, or the two middle values' sum halved. A NaN in a slice
gives NaN, as numpy does.
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
