"""The sidecar: a JSON file beside every render saying exactly what went into it.

Written next to the animation as ``NAME.SUFFIX.json`` (``timelapse.mp4`` -> ``timelapse.mp4.json``,
so an MP4 and a GIF of the same name do not share one), and as ``sidecar.json`` inside a frames
folder. Per frame: path, content hash, date, the 3x3 transform from the upright original to the
output (smoothing and crop included), the output size, verdict, status, residual and caption.
Every string is valid Unicode: a path that is not UTF-8 is written as in ``--json`` (``names``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .staging import Staged

SIDECAR_VERSION = 1
_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)
FRAMES_SIDECAR = "sidecar.json"


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def stage_json(path: Path, data: Any) -> Staged:
    """Write ``data`` to a staged file beside ``path`` (``staging``), complete and fsync'd, and
    return it; the caller renames it into place (with the animation it describes). Nothing is left
    behind on failure."""
    staged = Staged.file(path)
    try:
        with open(staged.path, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)
            json.dump(data, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        staged.discard()
        raise
    return staged


def read_sidecar(path: Path) -> dict:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("version") != SIDECAR_VERSION:
        raise ValueError(f"{path}: unknown sidecar version {data.get('version')!r}")
    for frame in data["frames"]:
        frame["transform"] = np.asarray(frame["transform"], np.float64)
    return data
