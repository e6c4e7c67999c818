"""A small folder's first ``--once``, a whole process as a newcomer runs it (issue #32): it loads
only what the photos at hand need, and prints each photo's name as it is."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Libraries and modules a folder of face close-ups rendered to an MP4, with no config file, never
# needs: the config's TOML reader and its did-you-mean, the progress bar (the log is not a
# terminal), emoji codes, the caption's font and drawing, the background replacement, the GIF
# writer, the morph, the pose model, torch, and numpy's masked arrays (``np.median`` imports them:
# ``medians.median`` does not).
NOT_NEEDED = ("tomllib", "difflib", "rich.progress", "rich._emoji_codes", "PIL.ImageDraw", "PIL.ImageFont",
              "PIL.ImageFilter", "PIL.GifImagePlugin", "alignimation_tui.render.morph",
              "alignimation_tui.background", "alignimation_tui.detect.blazepose", "ai_edge_litert", "torch",
              "numpy.ma")
RUN = ("import gc, sys, json\n"
       "from alignimation_tui.cli import main\n"
       "rc = main(sys.argv[1:])\n"
       "print(json.dumps([rc, sorted(sys.modules), gc.isenabled(), gc.get_freeze_count()]))\n")


def _once(folder: Path, tmp_path: Path, *extra: str) -> tuple[int, set[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("CACHE", "DATA", "CONFIG"):
        env[f"XDG_{name}_HOME"] = str(tmp_path / name.lower())
    done = subprocess.run([sys.executable, "-c", RUN, str(folder), "--once", "--out", str(tmp_path / "o.mp4"),
                           *extra], capture_output=True, text=True, env=env, timeout=600)
    rc, modules, collecting, frozen = json.loads(done.stdout.strip().splitlines()[-1])
    # the imports ran with the garbage collector off; it is on again, what they made out of its sight
    assert collecting and frozen > 10_000, (collecting, frozen)
    return rc, set(modules), done.stderr


def test_a_first_run_loads_only_what_the_photos_need(samples, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted((samples / "faces_jerry").glob("*.jpg"))[:8]:
        shutil.copy(path, folder / path.name)
    shutil.copy(samples / "faces_jerry" / "val_2.jpg", folder / "a:smile:b.jpg")  # rich's emoji code
    rc, modules, err = _once(folder, tmp_path / "first")
    assert rc == 0, err
    assert "alignimation_tui.detect.cv_nets" in modules and "cv2" in modules  # (it did detect)
    assert sorted(m for m in NOT_NEEDED if m in modules) == []
    # the name as it is, in the progress lines and the summary
    lines = err.splitlines()
    assert any(line.startswith("detecting ") and line.endswith(" a:smile:b.jpg") for line in lines), err
    assert "\N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES}" not in err

    # what a config file and a caption need is still loaded when they are there
    config = tmp_path / "config.toml"
    config.write_text('[render.caption]\nformat = "{index}/{count}"\n')
    rc, modules, err = _once(folder, tmp_path / "captioned", "--config", str(config))
    assert rc == 0, err
    assert {"tomllib", "PIL.ImageDraw", "PIL.ImageFont"} <= modules
