"""`--once` as a newcomer meets it: a log file gets whole lines (a long path is never cut in two),
and an empty folder says it is empty, not that no face was found."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alignimation_tui.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_empty_folder_says_there_are_no_photos(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a photo")
    code = main([str(empty), "--once", "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"no photos in {empty} (looked for .jpg, .jpeg, .png, .heic, " in err
    assert "no photo has a usable face" not in err
    assert not (tmp_path / "o.mp4").exists()


def test_demo_into_a_long_folder_name_keeps_every_path_on_one_line_of_the_log(tmp_path):
    folder = tmp_path / ("a-folder-name-long-enough-to-pass-eighty-columns-on-its-own-" * 2 + "demo")
    log = tmp_path / "log"
    with log.open("w") as stderr:  # a file: not a terminal
        done = subprocess.run([sys.executable, "-m", "alignimation_tui", "demo", str(folder), "--once"],
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"},
                              stdout=subprocess.DEVNULL, stderr=stderr, timeout=600)
    text = log.read_text()
    assert done.returncode == 0, text
    lines = text.splitlines()
    assert any(line.startswith(f"{folder} — 13 photos in ") for line in lines), text
    assert any(line.startswith(f"wrote {tmp_path / folder.name}-timelapse.mp4 (") for line in lines), text
    progress = ("detecting ", "rendering ")  # these name the output's file alone, not a path
    assert all(str(folder) in line for line in lines
               if folder.name[:40] in line and not line.startswith(progress)), "a path cut in two"
    # progress in the log as plain lines (a cron job's log is not empty for minutes), never a
    # terminal control sequence, and nothing from the body model's runtime
    assert "\x1b" not in text and "TensorFlow Lite" not in text
    detecting = [line for line in lines if line.startswith("detecting ")]
    assert len(detecting) >= 5 and detecting[-1].startswith("detecting 13/13 (100%)"), detecting
    assert any(line.startswith("rendering ") and "(100%)" in line for line in lines), text
    # the mode's line, longer than 80 columns, stays one line too
    assert any(line.startswith("mode: face (auto: ") and line.endswith("shows a whole body)") for line in lines), text
