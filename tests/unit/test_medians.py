"""``medians.median`` gives ``np.median``'s floats, bit for bit, without importing numpy.ma."""
import subprocess
import sys

import numpy as np
import pytest

from alignimation_tui.medians import median


@pytest.mark.parametrize("kind", ["float", "ties", "nan", "int16"])
def test_the_same_floats_as_numpy(kind):
    rng = np.random.default_rng({"float": 1, "ties": 2, "nan": 3, "int16": 4}[kind])
    for trial in range(400):
        shape = tuple(int(s) for s in rng.integers(1, 9, size=rng.integers(1, 4)))
        a = rng.normal(size=shape) * 10.0 ** int(rng.integers(-3, 4))
        if kind == "ties":
            a = np.round(a)  # equal middles, and -0.0 (numpy's mean of them is 0.0)
        elif kind == "nan":
            a[rng.random(shape) < 0.2] = np.nan
        elif kind == "int16":
            a = rng.integers(-300, 300, size=shape).astype(np.int16)
        for axis in [None, *range(a.ndim)]:
            expected, got = np.median(a, axis=axis), median(a, axis=axis)
            assert type(got) is type(expected)
            assert np.asarray(got).tobytes() == np.asarray(expected).tobytes(), (a, axis)


def test_long_series_and_nanmedian_of_what_is_there():
    rng = np.random.default_rng(5)
    for n in (599, 600, 601, 10_000, 10_001):
        a = rng.normal(size=n)
        assert np.asarray(median(a)).tobytes() == np.asarray(np.median(a)).tobytes()
        a[rng.random(n) < 0.3] = np.nan
        assert median(a[~np.isnan(a)]) == np.nanmedian(a)  # (how outliers.judge takes it)


def test_numpy_ma_is_not_imported():
    code = ("import sys, numpy as np\nfrom alignimation_tui.medians import median\n"
            "median(np.arange(5.0)); median(np.ones((3, 2)), axis=0)\nprint('numpy.ma' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
