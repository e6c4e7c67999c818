"""The face steps and the body steps behind one small interface (``Mode``), so the pipeline never
branches on the mode: ``mode_for(config)`` picks one, the pipeline calls it."""
from __future__ import annotations

from .base import Mode, ModeContext, Reference


def mode_for(context: ModeContext) -> Mode:
    """The steps for ``context.config.mode``; body mode's heavy imports stay out of face mode."""
    if context.config.mode == "body":
        from .body import BodyMode

        return BodyMode(context)
    from .face import FaceMode

    return FaceMode(context)


__all__ = ["Mode", "ModeContext", "Reference", "mode_for"]
