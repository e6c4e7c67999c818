"""Writing the animation: one warp per frame from the original straight to the output, streamed.

* ``geometry``: temporal smoothing of the transforms; the area every frame covers (shared crop).
* ``timing``: fps or total duration, holds, crossfades.
* ``frame``: decode, warp, fill the border, caption (the seam for a background step is there).
* ``writers``: MP4, GIF, WebP, streaming, partial file renamed into place.
* ``sidecar``: the JSON beside every render.
"""
from .animation import (Layout, RenderError, RenderItem, RenderResult, RenderSettings, frame_file_name,
                        plan_layout, write_animation)
from .frame import CAPTION_POSITIONS, CaptionStyle, compose
from .sidecar import FRAMES_SIDECAR, read_sidecar, sidecar_path
from .writers import OUTPUT_SUFFIXES

__all__ = ["CAPTION_POSITIONS", "CaptionStyle", "FRAMES_SIDECAR", "Layout", "OUTPUT_SUFFIXES", "RenderError",
           "RenderItem", "RenderResult", "RenderSettings", "compose", "frame_file_name", "plan_layout", "read_sidecar", "sidecar_path", "write_animation"]
