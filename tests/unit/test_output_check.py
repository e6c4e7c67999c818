"""The output is never a photo: not one in the folder, and not the file a photo in the folder links
to, whatever its name. (Only the photos named like the output, or that are links, are resolved: a
library has 10,000 photos.)"""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from alignimation_tui.config import Config
from alignimation_tui.pipeline import OutputError, Pipeline


@pytest.fixture
def linked(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "holiday.webp"
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(target)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(folder / "plain.jpg")
    os.symlink(target, folder / "linked.webp")
    return folder, target


def test_the_file_a_photo_links_to_is_refused_as_the_output(linked):
    folder, target = linked
    config = replace(Config(), mode="face", scan=replace(Config().scan, follow_symlinks=True))
    pipeline = Pipeline(folder, config)
    try:
        pipeline.scan()
        assert any(r.frame.path.name == "linked.webp" for r in pipeline.results.values())
        with pytest.raises(OutputError, match="refusing"):
            pipeline.check_output(target)  # another name than the link's
        pipeline.check_output(target.with_name("other.webp"))
        pipeline.check_output(folder.parent / "plain.mp4")
        with pytest.raises(OutputError, match="refusing"):
            pipeline.check_output(folder / "plain.jpg")
    finally:
        pipeline.close()
