"""File names that are not valid UTF-8 (old Latin-1 camera imports, Samba shares).

Python hands us such a name as a ``str`` with lone surrogates (``os.fsdecode``: byte 0xE9 becomes
U+DCE9). The path itself keeps working for every file operation, but the text cannot be encoded
as UTF-8: not into SQLite, a terminal, a caption or JSON. So:

* on screen, in captions and in messages, a name is shown with each undecodable byte written as
  ``\\xNN`` (``caf\\xe9_photo.jpg``), as Python's ``backslashreplace`` does;
* in JSON (``--json``, the sidecar), ``"path"`` is that printable text, and ``"path_bytes"`` holds
  the exact bytes of the path, base64-encoded, only for such a name; every string in our JSON is
  valid Unicode, so any strict parser reads it.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any


def printable(text: str) -> str:
    """``text`` with every byte that was not valid UTF-8 written as ``\\xNN`` (any other lone
    surrogate as ``\\uNNNN``); valid text is returned unchanged."""
    if is_printable(text):
        return text
    return "".join(_escape(c) for c in text)


def _escape(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return f"\\u{code:04x}"
    return c


def is_printable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def path_fields(path: Path | str, key: str = "path") -> dict[str, str]:
    """``{key: printable text}``, plus ``{key + "_bytes": base64 of the exact bytes}`` when the
    path is not valid UTF-8."""
    text = str(path)
    if is_printable(text):
        return {key: text}
    return {key: printable(text), f"{key}_bytes": base64.b64encode(os.fsencode(text)).decode("ascii")}


def json_safe(value: Any) -> Any:
    """``value`` with every string made printable (a reason or a message may quote a path)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)) if isinstance(k, str) else k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
