"""The folders we write to (cache, decisions, output, frames): an ``OSError`` there becomes one
plain sentence naming the path and the config key that moves it, never a traceback.

Two kinds, two exit codes in ``--once``:

* ``FolderError`` (exit 2): the folder cannot be used at all (read-only, no permission, not a
  folder, a full disk under the cache): change the key, or fix the folder.
* ``OutOfSpace`` is the test for a write that ran out of room (ENOSPC, EDQUOT, EFBIG: a full disk,
  a quota, a file-size limit); a render that hits it exits 1 and the previous output stays.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .names import printable

SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class FolderError(Exception):
    """An ``OSError`` at one of our folders, as one sentence: what, where, why, which key."""

    def __init__(self, message: str, path: Path | None = None, key: str = ""):
        super().__init__(message)
        self.path, self.key = path, key


def reason(exc: BaseException) -> str:
    """``OSError(EROFS)`` -> "read-only file system"."""
    if isinstance(exc, OSError):
        text = exc.strerror or (os.strerror(exc.errno) if exc.errno else "") or str(exc)
    else:
        text = str(exc)
    text = text.strip().rstrip(".")
    return printable(text[:1].lower() + text[1:]) if text else type(exc).__name__


def out_of_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in SPACE_ERRNOS


def folder_error(exc: BaseException, what: str, path: Path | str, key: str) -> FolderError:
    """``what``: "create the cache folder", "write to the output folder"..."""
    advice = "free some space there" if out_of_space(exc) else "make it writable"
    return FolderError(f"cannot {what} {printable(str(path))}: {reason(exc)}; {advice}, or choose another "
                       f"folder with {key}", Path(path), key)


@contextmanager
def folder_access(what: str, path: Path | str, key: str) -> Iterator[None]:
    """Turn an ``OSError`` inside the block into a ``FolderError`` naming ``path`` and ``key``."""
    try:
        yield
    except FolderError:
        raise
    except OSError as exc:
        raise folder_error(exc, what, path, key) from None
