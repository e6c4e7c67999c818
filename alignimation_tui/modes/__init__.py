"""The registry of modes: a name -> its ``Mode`` class (``modes.base``), where the config's and the
command line's choices come from, so the pipeline never branches on the mode.

The built-in modes are imported on first use (body mode's imports stay out of face mode); a mode
defined anywhere else (a plugin, a test) is added with ``register_mode``. This module imports
nothing of the package, so ``config`` and ``cli`` can read the choices without an import circle.
"""
from __future__ import annotations

import importlib

_BUILTIN = {"face": "alignimation_tui.modes.face:FaceMode", "body": "alignimation_tui.modes.body:BodyMode"}
_modes: dict[str, object] = dict(_BUILTIN)


def register_mode(cls):
    """Add (or replace) the mode ``cls.name``; usable as a class decorator."""
    _modes[cls.name] = cls
    return cls


def unregister_mode(name: str) -> None:
    """Forget a mode added with ``register_mode`` (a built-in one goes back to the built-in)."""
    if name in _BUILTIN:
        _modes[name] = _BUILTIN[name]
    else:
        _modes.pop(name, None)


def mode_names() -> tuple[str, ...]:
    return tuple(_modes)


def mode_class(name: str):
    """The ``Mode`` class registered as ``name`` (KeyError when there is none)."""
    entry = _modes[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = _modes[name] = getattr(importlib.import_module(module), attr)
    return entry


def mode_for(context):
    """The steps for ``context.config.mode``, bound to ``context`` (the pipeline)."""
    return mode_class(context.config.mode)(context)


def mode_sections() -> dict[str, type]:
    """Config section name -> its dataclass, for every registered mode's own sections."""
    out: dict[str, type] = {}
    for name in _modes:
        out.update(mode_class(name).config_sections)
    return out


__all__ = ["mode_class", "mode_for", "mode_names", "mode_sections", "register_mode", "unregister_mode"]
