"""Where results and decisions are kept.

Two places, on purpose:

* the **cache** (diskcache, rebuildable): detections, embeddings, transforms, file stats. Keys are
  ``f"{kind}:{content_hash}:{fingerprint}"``; values are JSON bytes or ``.npy`` bytes, never pickle.
  ``SafeDisk`` refuses pickled rows and file names outside the cache directory, so a tampered cache
  cannot run code or read other files: such an entry is treated as missing.
* the **decisions** file (user data, never evicted): verdicts, nudges and the pinned reference, keyed by
  content hash, in a small JSON file replaced atomically on every change.

Keys are text; a key holding a file name that is not valid UTF-8 (``stat:/photos/caf\udce9.jpg``)
is stored as its bytes instead (a BLOB key: it never equals a text key). A cache found damaged at
start or while running (SQLite says corrupt / not a database) is moved aside and a new one started;
any other ``OSError`` or SQLite error at the two folders is a ``FolderError`` naming the folder and
its key (``store.cache_dir``, ``store.data_dir``).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import diskcache
import numpy as np
import platformdirs

from .domain import Verdict
from .folders import FolderError, folder_access, folder_error, out_of_space
from .names import is_printable, printable
from .nudge import Nudge

log = logging.getLogger(__name__)

APP_NAME = "alignimation-tui"


class UnsafeCacheEntry(OSError):
    """Raised inside diskcache for a row we refuse to read; diskcache then reports a miss."""


class SafeDisk(diskcache.Disk):
    """A diskcache Disk that never unpickles and never opens files outside its directory."""

    refused = 0

    def get(self, key, raw):  # keys: only raw (str/bytes/int) keys are ever read back
        if not raw:
            SafeDisk.refused += 1
            raise UnsafeCacheEntry("refusing to unpickle a cache key")
        return super().get(key, raw)

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            SafeDisk.refused += 1
            log.warning("cache: ignored an entry stored as pickle (never unpickled)")
            raise UnsafeCacheEntry("refusing to unpickle a cache value")
        if filename is not None:
            root = os.path.realpath(self._directory)
            full = os.path.realpath(os.path.join(self._directory, filename))
            if os.path.commonpath([root, full]) != root:
                SafeDisk.refused += 1
                log.warning("cache: ignored an entry pointing outside the cache directory")
                raise UnsafeCacheEntry("cache entry points outside the cache directory")
        return super().fetch(mode, filename, value, read)


CACHE_KEY, DATA_KEY = "store.cache_dir", "store.data_dir"


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """A damaged database file (moved aside and rebuilt), as opposed to one we may not write,
    a full disk or a lock (reported, never moved)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name:
        return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def cache_problem(db: Path) -> str | None:
    """Why the cache database is damaged, or None when it is sound (or not there yet). A database
    that cannot be opened for another reason (permissions...) raises ``FolderError``."""
    with folder_access("read the cache in", db.parent, CACHE_KEY):
        if not db.exists():
            return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise _cache_folder_error(exc, "read the cache in", db.parent) from None
        return str(exc)
    if rows != [("ok",)]:
        return "; ".join(str(r[0]) for r in rows[:3])
    return None


def _cache_folder_error(exc: BaseException, what: str, folder: Path) -> FolderError:
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, OSError):
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith("SQLITE_FULL"):
            exc = OSError(28, "no space left on device")
        elif name.startswith("SQLITE_READONLY"):
            exc = OSError(30, "read-only (the cache database cannot be written)")
    return folder_error(exc, what, folder, CACHE_KEY)


def folder_key(folder: Path) -> str:
    resolved = str(Path(folder).expanduser().resolve())
    slug = "".join(c if c.isalnum() else "-" for c in Path(resolved).name)[:40] or "root"
    return f"{slug}-{hashlib.blake2b(os.fsencode(resolved), digest_size=6).hexdigest()}"


def fingerprint(**settings: Any) -> str:
    """A short stable digest of everything that changes a result."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=8).hexdigest()


class Decisions:
    """Verdicts and the pinned reference: user data in one JSON file, replaced atomically."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._data = {"verdicts": {}, "reference": None, "nudges": {}}
        with folder_access("read your decisions in", path.parent, DATA_KEY):
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else None
        if text is not None:
            try:
                loaded = json.loads(text)
                self._data["verdicts"] = {str(k): str(v) for k, v in loaded.get("verdicts", {}).items()
                                          if v in {x.value for x in Verdict}}
                self._data["reference"] = loaded.get("reference")
                self._data["nudges"] = _valid_nudges(loaded.get("nudges") or {})
            except (ValueError, AttributeError) as exc:
                backup = path.with_suffix(".unreadable.json")
                with folder_access("keep the unreadable decisions file aside in", path.parent, DATA_KEY):
                    os.replace(path, backup)
                log.warning("decisions file %s was unreadable (%s); kept it as %s", path, exc, backup)

    def verdict(self, content_hash: str) -> Verdict:
        return Verdict(self._data["verdicts"].get(content_hash, Verdict.AUTO.value))

    def all_verdicts(self) -> dict[str, Verdict]:
        return {k: Verdict(v) for k, v in self._data["verdicts"].items()}

    def set_verdict(self, content_hash: str, verdict: Verdict) -> None:
        with self._lock:
            before = dict(self._data["verdicts"])
            if verdict is Verdict.AUTO:
                self._data["verdicts"].pop(content_hash, None)
            else:
                self._data["verdicts"][content_hash] = verdict.value
            try:
                self._write()
            except BaseException:  # not on disk: not decided either
                self._data["verdicts"] = before
                raise

    def nudge(self, content_hash: str) -> Nudge | None:
        raw = self._data["nudges"].get(content_hash)
        return None if raw is None else Nudge.from_json(raw)

    def set_nudge(self, content_hash: str, nudge: Nudge | None) -> None:
        """Store (or with None / no change, forget) the person's correction of one frame."""
        with self._lock:
            before = dict(self._data["nudges"])
            if nudge is None or nudge.is_identity:
                self._data["nudges"].pop(content_hash, None)
            else:
                self._data["nudges"][content_hash] = nudge.to_json()
            try:
                self._write()
            except BaseException:  # not on disk: not decided either
                self._data["nudges"] = before
                raise

    @property
    def reference(self) -> str | None:
        return self._data["reference"]

    def pin_reference(self, content_hash: str | None) -> None:
        with self._lock:
            before, self._data["reference"] = self._data["reference"], content_hash
            try:
                self._write()
            except BaseException:
                self._data["reference"] = before
                raise

    def _write(self) -> None:
        with folder_access("save your decision in", self.path.parent, DATA_KEY):
            self._write_file()

    def _write_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".decisions-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self._data, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _valid_nudges(raw: dict) -> dict:
    """The stored nudges that can be read; a damaged entry is dropped with a warning, the rest kept."""
    out = {}
    for key, value in raw.items():
        try:
            out[str(key)] = Nudge.from_json(value).to_json()
        except (ValueError, TypeError, AttributeError):
            log.warning("decisions: ignored an unreadable nudge for %s", key)
    return out


class Store:
    """The cache and the decisions for one photo folder."""

    def __init__(self, folder: Path, cache_dir: str = "", data_dir: str = ""):
        key = folder_key(folder)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else (
            Path(platformdirs.user_cache_dir(APP_NAME)) / "folders" / key)
        data_root = Path(data_dir).expanduser() if data_dir else (
            Path(platformdirs.user_data_dir(APP_NAME)) / "folders" / key)
        self.warnings: list[str] = []  # plain sentences for the person (e.g. a cache rebuilt)
        self.on_warning = lambda message: None  # told of warnings that come up while running
        self._rebuild_lock = threading.Lock()
        self.cache = self._open_cache()
        try:
            self.decisions = Decisions(data_root / "decisions.json")
        except BaseException:
            self.cache.close()
            raise

    def _new_cache(self) -> diskcache.Cache:
        # No mmap: a database file truncated under us (a failing disk, a tool) is then an SQLite error we
        # can recover from, not a SIGBUS that kills the process.
        return diskcache.Cache(str(self.cache_dir), disk=SafeDisk, eviction_policy="none", size_limit=2**40,
                               sqlite_mmap_size=0)

    def _open_cache(self) -> diskcache.Cache:
        """Open the cache; a damaged one (a crash mid-write on a bad disk, a truncated copy) is
        moved aside and rebuilt: it only holds what can be computed again."""
        with folder_access("create the cache folder", self.cache_dir, CACHE_KEY):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        problem = cache_problem(self.cache_dir / diskcache.core.DBNAME)
        if problem is None:
            try:
                return self._new_cache()
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    raise _cache_folder_error(exc, "open the cache in", self.cache_dir) from None
                problem = str(exc)
            except OSError as exc:
                raise folder_error(exc, "open the cache in", self.cache_dir, CACHE_KEY) from None
        return self._move_aside(problem)

    def _move_aside(self, problem: str) -> diskcache.Cache:
        aside = self.cache_dir.with_name(f"{self.cache_dir.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        with folder_access("move the damaged cache aside in", self.cache_dir.parent, CACHE_KEY):
            os.replace(self.cache_dir, aside)
            self.cache_dir.mkdir(parents=True)
        message = (f"the cache was damaged ({problem}); it was moved to {aside} and a new one started. "
                   "Your verdicts are kept apart and are safe; detections are redone as needed.")
        log.warning("cache: %s", message)
        self.warnings.append(message)
        try:
            return self._new_cache()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise _cache_folder_error(exc, "start a new cache in", self.cache_dir) from None

    def _rebuild(self, broken: diskcache.Cache, exc: sqlite3.DatabaseError) -> None:
        """The cache went bad while running: move it aside and go on with a new one (once per
        damage, whichever thread notices first)."""
        with self._rebuild_lock:
            if self.cache is not broken:
                return  # another thread rebuilt it already
            try:
                broken.close()
            except Exception:  # closing a damaged database may fail too; it is moved aside anyway
                pass
            self.cache = self._move_aside(str(exc))
        self.on_warning(self.warnings[-1])

    def _cache_call(self, name: str, key: str, *args):
        """``self.cache.<name>(key, *args)`` with the faults handled: a damaged database is rebuilt
        (and the call made again on the new one), anything else is a ``FolderError``."""
        db_key = cache_key(key)
        for attempt in range(2):
            cache = self.cache
            try:
                return getattr(cache, name)(db_key, *args)
            except sqlite3.DatabaseError as exc:
                if attempt or not is_damage(exc):
                    raise _cache_folder_error(exc, "use the cache in", self.cache_dir) from None
                self._rebuild(cache, exc)
            except OSError as exc:
                what = "write to the cache in" if out_of_space(exc) or name == "set" else "use the cache in"
                raise folder_error(exc, what, self.cache_dir, CACHE_KEY) from None

    def close(self) -> None:
        try:
            self.cache.close()
        except sqlite3.DatabaseError:
            pass

    # JSON values -------------------------------------------------------------------------------
    def get_json(self, key: str) -> Any | None:
        raw = self._cache_call("get", key)
        if raw is None:
            return None
        try:
            return json.loads(bytes(raw).decode("utf-8"))
        except (ValueError, TypeError):
            log.warning("cache: entry %s is not valid JSON; treated as missing", printable(key))
            self._cache_call("delete", key)
            return None

    def put_json(self, key: str, value: Any) -> None:
        self._cache_call("set", key, json.dumps(value, separators=(",", ":")).encode("utf-8"))

    # arrays ------------------------------------------------------------------------------------
    def get_array(self, key: str) -> np.ndarray | None:
        raw = self._cache_call("get", key)
        if raw is None:
            return None
        try:
            return np.load(io.BytesIO(bytes(raw)), allow_pickle=False)
        except (ValueError, OSError, TypeError):
            log.warning("cache: entry %s is not a valid array; treated as missing", printable(key))
            self._cache_call("delete", key)
            return None

    def put_array(self, key: str, array: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        self._cache_call("set", key, buf.getvalue())


def cache_key(key: str) -> str | bytes:
    """The key as stored: the text itself, or its bytes when it holds a name that is not UTF-8."""
    return key if is_printable(key) else key.encode("utf-8", "surrogatepass")
