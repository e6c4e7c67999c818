"""Which files in a folder are photos, what their content hash is, and when they were taken."""
from __future__ import annotations

import functools
import hashlib
import os
import re
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from .domain import Frame
from .photos import HEIC_SUFFIXES as HEIC_EXTENSIONS, ensure_decoder, register_heic

# Photo formats read here (Pillow, and pillow-heif for HEIC/HEIF, which is a regular dependency).
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".webp", ".tif", ".tiff"}
HEIC_SUFFIXES = set(HEIC_EXTENSIONS)
AVIF_SUFFIXES = {".avif"}
# Photo-like files no installed decoder reads: they get a failed row that says so by name,
# instead of being skipped silently.
RAW_SUFFIXES = {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
                ".rw2", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".mrw", ".raw"}
OTHER_PHOTO_LIKE = {".jxl"}

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_DATETIME = 306
# EXIF's "YYYY:MM:DD HH:MM:SS", two digits a field: what ``strptime("%Y:%m:%d %H:%M:%S")`` reads
# (a value out of range is a ValueError either way); anything else still goes to strptime.
_EXIF_DATETIME = re.compile(r"(\d{4}):(\d\d):(\d\d) (\d\d):(\d\d):(\d\d)", re.ASCII)

# IMG_20240102_..., PXL_20240102..., 2024-01-02 ..., 2024_01_02, 20240102
_NAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)[-_.]?(0[1-9]|1[0-2])[-_.]?(0[1-9]|[12]\d|3[01])(?!\d)"
                        r"(?:[-_ T.]?([01]\d|2[0-3])[-_.:]?([0-5]\d)[-_.:]?([0-5]\d)(?!\d))?")


@functools.cache
def _avif_available() -> bool:
    from PIL import features

    return bool(features.check("avif"))


def readable_suffixes() -> set[str]:
    """Suffixes of the photos the installed decoders read."""
    return (PHOTO_SUFFIXES | (HEIC_SUFFIXES if register_heic() else set())
            | (AVIF_SUFFIXES if _avif_available() else set()))


def photo_suffixes() -> set[str]:
    """Suffixes of every file taken for a photo: the readable ones and those that look like photos
    but that no installed decoder reads (they are listed as failed, with the reason)."""
    return PHOTO_SUFFIXES | HEIC_SUFFIXES | AVIF_SUFFIXES | RAW_SUFFIXES | OTHER_PHOTO_LIKE


def unreadable_format(path: Path) -> str | None:
    """Why a photo-like file cannot be read here, from its suffix alone; None when it can be."""
    suffix = path.suffix.lower()
    if suffix in PHOTO_SUFFIXES or suffix in readable_suffixes():  # (Pillow's own: asks no plug-in)
        return None
    if suffix in HEIC_SUFFIXES:
        return ("a HEIC/HEIF photo, but no HEIC decoder is installed: reinstall alignimation-tui "
                "(it needs pillow-heif)")
    readable = "JPEG, PNG, WebP, TIFF" + (", HEIC" if register_heic() else "") + \
        (", AVIF" if _avif_available() else "")
    if suffix in RAW_SUFFIXES:
        return (f"a camera RAW file ({suffix}); only {readable} are read: export it to JPEG "
                "(or keep the camera's JPEG beside it)")
    return f"a {suffix} picture, a format no installed decoder reads; only {readable} are read"


class Listed(NamedTuple):
    """A photo file found in the folder, and whether it is a symbolic link (or may be one: the
    folder could not say), which is resolved and checked before it is read."""

    path: Path
    link: bool


def list_photos(folder: Path, exclude: set[Path] = frozenset()) -> list[Path]:
    """Photo files directly inside ``folder``: no hidden files, no sub-folders, none of ``exclude``."""
    return [listed.path for listed in list_photo_files(folder, exclude)]


def list_photo_files(folder: Path, exclude: set[Path] = frozenset()) -> list[Listed]:
    """``list_photos``, each with whether it is a link (the folder's listing says, for nothing:
    a library's scan asked every photo's file again, 10,000 system calls)."""
    return [Listed(Path(path), link) for _, path, link in photo_entries(folder, exclude)]


def photo_entries(folder: Path, exclude: set[Path] = frozenset()) -> list[tuple[str, str, bool]]:
    """``list_photo_files`` as (name, path as text, whether it is a link): no ``Path`` made."""
    suffixes = photo_suffixes()
    excluded = {os.path.realpath(p) for p in exclude}
    excluded_names = {os.path.basename(p) for p in excluded}  # a file not of these names is not excluded
    real_folder = os.path.realpath(folder)
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or os.path.splitext(entry.name)[1].lower() not in suffixes:
                continue
            link = False
            try:
                if entry.is_symlink():  # kept even when broken or looping: it gets a failed row saying why
                    link = True
                    if entry.is_dir():
                        continue
                elif not entry.is_file():
                    continue
            except OSError:
                link = True  # not known: resolved below
            # A file that is not a link is where the folder really is (one realpath, not one per photo).
            if link:
                real = os.path.realpath(entry.path)
            elif entry.name in excluded_names:
                real = os.path.join(real_folder, entry.name)
            else:
                real = None
            if real not in excluded:
                found.append((os.path.normcase(entry.name), entry.name, entry.path, link))
    # In name order, as Paths in one folder compare; sorted as strings (comparing 10,000 Paths took 0.15 s)
    found.sort(key=lambda item: item[0])
    return [(name, path, link) for _, name, path, link in found]


def link_problem(path: Path, folder: Path, follow_outside: bool) -> str | None:
    """Why a symbolic link must not be read as a photo, or None (not a link, or a fine one)."""
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return f"a symbolic link to a file that does not exist ({os.readlink(path)})"
    except (OSError, RuntimeError):
        return "a symbolic link that loops back on itself"
    root = Path(folder).resolve()
    if not follow_outside and root not in target.parents:
        return (f"a symbolic link to a file outside the folder ({target}); set scan.follow_symlinks = true "
                "to use it")
    return None


def unreadable_frame(path: Path) -> Frame:
    """A stand-in Frame for a path that cannot be read (keyed by the path, as there are no bytes)."""
    try:
        mtime = path.lstat().st_mtime
    except OSError:
        mtime = 0.0
    when = name_date(path.name)
    return Frame(path=path, hash="path-" + hashlib.blake2b(os.fsencode(path), digest_size=12).hexdigest(),
                 taken_at=when or from_timestamp(mtime), date_source="name" if when else "mtime",
                 file_size=0)


def from_timestamp(seconds: float) -> datetime:
    """A file's mtime as a local date; one the platform cannot represent (a clock set to year
    30000, a negative stamp on some systems) becomes the epoch."""
    try:
        return datetime.fromtimestamp(seconds)
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(0)


def content_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _parse_exif_datetime(value) -> datetime | None:
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    if not isinstance(value, str):
        return None
    text = value.strip().rstrip("\x00")[:19]
    try:
        if (m := _EXIF_DATETIME.fullmatch(text)) is not None:  # as strptime reads it, without its import
            return datetime(*map(int, m.groups()))  # (and its first call: 4-10 ms of the scan)
        return datetime.strptime(text, "%Y:%m:%d %H:%M:%S")  # the odd ones: " 5" for 05 and the like
    except ValueError:
        return None


def exif_date(path: Path) -> datetime | None:
    ensure_decoder(path)
    try:
        with Image.open(path) as img:
            exif = img.getexif()
            found = _parse_exif_datetime(exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL))
            return found or _parse_exif_datetime(exif.get(_DATETIME))
    except Exception:  # unreadable photos get a date from the name or mtime; decode reports them
        return None


def name_date(name: str) -> datetime | None:
    for m in _NAME_DATE.finditer(name):
        y, mo, d, hh, mm, ss = m.groups()
        try:
            return datetime(int(y), int(mo), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
        except ValueError:
            continue
    return None


def taken_at(path: Path, mtime: float) -> tuple[datetime, str]:
    if (found := exif_date(path)) is not None:
        return found, "exif"
    if (found := name_date(path.name)) is not None:
        return found, "name"
    return from_timestamp(mtime), "mtime"


# What of a file's ``os.stat`` says it is the one hashed before (``stamp_numbers``, in this order)
STAMP_NUMBERS = ("size", "mtime_ns", "ino", "ctime_ns")


def stamp_numbers(st: os.stat_result) -> tuple[int, int, int, int]:
    """The file's size, modification time, inode and change time. The inode and the change time
    too: a photo re-exported, copied with ``cp -p`` or moved over another keeps neither, even when
    its size and modification time are the same as the old one's (tools set those; nothing sets
    the ctime). ``folder_record`` keeps and compares these, as the scan's stat records do."""
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def _stamp(path: Path, st: os.stat_result) -> dict:
    """What says the file is the one hashed before: its path and ``stamp_numbers``."""
    return {"path": str(path), **dict(zip(STAMP_NUMBERS, stamp_numbers(st)))}


def stat_matches(path: Path, cached: dict | None, st: os.stat_result | None = None) -> bool:
    """Whether ``cached`` (a record from ``read_frame``) still describes the file at ``path``;
    ``st``: its ``os.stat`` when the caller has it."""
    if not cached:
        return False
    try:
        stamp = _stamp(path, st if st is not None else path.stat())
    except OSError:
        return False
    return all(cached.get(k) == v for k, v in stamp.items())


def read_frame(path: Path, cached: dict | None = None, st: os.stat_result | None = None) -> tuple[Frame, dict]:
    """Build a Frame for ``path``. ``cached`` is a previous result for the same path, size and
    mtime (from the store), which spares reading the file again. Returns the frame and the record
    to cache. ``st``: the file's ``os.stat`` when the caller has it (taken just before)."""
    st = st if st is not None else path.stat()
    stamp = _stamp(path, st)
    if cached and all(cached.get(k) == v for k, v in stamp.items()):
        record = cached
    else:
        when, source = taken_at(path, st.st_mtime)
        record = {**stamp, "hash": content_hash(path), "taken_at": when.isoformat(), "date_source": source}
    frame = Frame(path=path, hash=record["hash"], taken_at=datetime.fromisoformat(record["taken_at"]),
                  date_source=record["date_source"], file_size=st.st_size)
    return frame, record
