"""Where results and decisions are kept.

Two places, on purpose:

* the **cache** (diskcache, rebuildable): detections, embeddings, transforms, file stats. Keys are
  ``f"{kind}:{content_hash}:{fingerprint}"``; values are JSON bytes or ``.npy`` bytes, never pickle.
  ``SafeDisk`` refuses pickled rows and file names outside the cache directory, so a tampered cache
  cannot run code or read other files: such an entry is treated as missing.
* the **decisions** file (user data, never evicted): verdicts, nudges and the pinned reference, keyed by
  content hash: its rules are in ``decisions`` (``Decisions``); the store opens it beside the cache.

Keys are text; a key holding a file name that is not valid UTF-8 (``stat:/photos/caf\udce9.jpg``)
is stored as its bytes instead (a BLOB key: it never equals a text key). A cache found damaged at
start or while running (SQLite says corrupt / not a database) is moved aside and a new one started;
any other ``OSError`` or SQLite error at the two folders is a ``FolderError`` naming the folder and
its key (``store.cache_dir``, ``store.data_dir``).
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import diskcache
import numpy as np
import platformdirs

from .folders import FolderError, folder_access, folder_error, out_of_space
from .names import is_printable, printable
from .decisions import DATA_KEY, DecisionChanges, Decisions  # noqa: F401  (the decisions file: its own module)
from .fingerprint import fingerprint  # noqa: F401  (the store's keys are made with it)

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


CACHE_KEY = "store.cache_dir"
PREFETCH_CHUNK = 400  # keys per query (SQLite allows 999 parameters in old builds)
SQLITE_CACHE_PAGES = 1024  # SQLite's page cache, in pages of 4 KB


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
        else:  # SQLite's own words ("disk I/O error", "unable to open database file") hide the cause
            exc = _file_system_fault(folder) or exc
    return folder_error(exc, what, folder, CACHE_KEY)


def _file_system_fault(folder: Path) -> OSError | None:
    """What the file system under ``folder`` says is wrong, where it can: mounted read-only, or
    no space left. SQLite reports both as other errors when it cannot make or grow its -shm file
    (an existing cache on a full disk: SQLITE_IOERR_SHMSIZE; on a read-only one: SQLITE_CANTOPEN)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # (no statvfs on Windows)
        return None
    if st.f_flag & getattr(os, "ST_RDONLY", 1):
        return OSError(errno.EROFS, os.strerror(errno.EROFS))
    if st.f_bavail == 0:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def folder_key(folder: Path) -> str:
    resolved = str(Path(folder).expanduser().resolve())
    slug = "".join(c if c.isalnum() else "-" for c in Path(resolved).name)[:40] or "root"
    return f"{slug}-{hashlib.blake2b(os.fsencode(resolved), digest_size=6).hexdigest()}"


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
        self._tolerant, self._retry_seconds, self._failed_at = False, 10.0, None
        self._ahead: dict[str, bytes | None] = {}  # values read ahead (``read_ahead``), each given once
        self.cache = self._open_cache()
        try:
            self.decisions = Decisions(data_root / "decisions.json")
        except BaseException:
            self.cache.close()
            raise
        self.warnings.extend(self.decisions.notices)
        self.decisions.on_notice = self._warn

    def _warn(self, message: str) -> None:
        """A warning that came up while running: kept, and told to ``on_warning``."""
        self.warnings.append(message)
        self.on_warning(message)

    def _new_cache(self) -> diskcache.Cache:
        # No mmap: a database file truncated under us (a failing disk, a tool) is then an SQLite error we
        # can recover from, not a SIGBUS that kills the process.
        # SQLite's page cache at 4 MB, not diskcache's 32 MB: a library's open reads each value once,
        # and a 10,000-photo cache (33 MB) otherwise stays in memory whole, read or not again.
        return diskcache.Cache(str(self.cache_dir), disk=SafeDisk, eviction_policy="none", size_limit=2**40,
                               sqlite_mmap_size=0, sqlite_cache_size=SQLITE_CACHE_PAGES)

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

    # faults while running -----------------------------------------------------------------------
    def keep_going_on_write_faults(self, retry_seconds: float = 10.0) -> None:
        """From now on (a long-running app, after the store opened), a cache that cannot be used
        (a full disk, a read-only or removed folder) is a warning naming the folder and
        ``store.cache_dir``, said once, not an error: reads miss, writes are skipped and work goes
        on without caching. The next write after ``retry_seconds`` tries again (the folder is made
        and the cache opened again when it was removed); when one succeeds, a warning says so.
        Without this call (``--once``) every fault is a ``FolderError``."""
        self._tolerant = True
        self._retry_seconds = retry_seconds

    @property
    def degraded(self) -> bool:
        """Whether the cache is being skipped for a fault (see ``keep_going_on_write_faults``)."""
        return self._failed_at is not None

    def _degrade(self, exc: FolderError) -> None:
        first = self._failed_at is None
        self._failed_at = time.monotonic()
        if first:
            log.warning("cache: %s", exc)
            self._warn(f"{exc}. Going on without the cache meanwhile (results are not kept for the next start); "
                       f"trying again every {self._retry_seconds:g} s")

    def _retry_due(self) -> bool:
        if self._failed_at is None:
            return True
        if time.monotonic() - self._failed_at < self._retry_seconds:
            return False
        if not (self.cache_dir / diskcache.core.DBNAME).exists():  # removed: start it again
            try:
                old, self.cache = self.cache, self._open_cache()
                try:
                    old.close()
                except Exception:  # its files are gone
                    pass
            except FolderError:
                self._failed_at = time.monotonic()
                return False
        return True

    def _cache_call(self, name: str, key: str, *args):
        """``self.cache.<name>(key, *args)`` with the faults handled: a damaged database is rebuilt
        (and the call made again on the new one); anything else is a ``FolderError``, or with
        ``keep_going_on_write_faults`` a warning and a miss."""
        if self._ahead:
            if name == "get" and key in self._ahead:
                return self._ahead.pop(key)
            self._ahead.pop(key, None)  # written or deleted: read afresh next time
        if not self._tolerant:
            return self._cache_call_strict(name, key, *args)
        writing = name in ("set", "delete")
        if writing and self._failed_at is None and not (self.cache_dir / diskcache.core.DBNAME).exists():
            # removed under us: SQLite would go on writing into the deleted file, all of it lost
            self._degrade(FolderError(f"cannot write to the cache in {printable(str(self.cache_dir))}: it was "
                                      f"removed; choose another folder with {CACHE_KEY} to keep it elsewhere",
                                      self.cache_dir, CACHE_KEY))
            self._failed_at -= self._retry_seconds  # start it again now
        if writing and not self._retry_due():
            return None
        try:
            value = self._cache_call_strict(name, key, *args)
        except FolderError as exc:
            self._degrade(exc)
            return None
        if writing and self._failed_at is not None:
            self._failed_at = None
            self._warn(f"the cache in {printable(str(self.cache_dir))} can be written again; results are cached again")
        return value

    def _cache_call_strict(self, name: str, key: str, *args):
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

    # reading ahead -------------------------------------------------------------------------------
    @contextmanager
    def read_ahead(self) -> Iterator[None]:
        """Within this block, ``prefetch`` may read values ahead; what is left unread is dropped at
        its end (never given out later, however stale)."""
        try:
            yield
        finally:
            self._ahead.clear()

    def prefetch(self, keys: list[str]) -> None:
        """Read ``keys`` now, a few hundred to a query instead of one query each (opening 1000
        cached frames reads 6000 values); the next ``get_json`` / ``get_array`` of each is answered
        from what was read, once (a key written or deleted meanwhile is read afresh). Rows are read
        as ``get`` reads them (``SafeDisk.fetch``). Only a shortcut: on any fault nothing is read
        ahead, and the gets meet the fault as they always did. Use inside ``read_ahead``."""
        keys = [k for k in dict.fromkeys(keys) if k not in self._ahead]
        if not keys or self._failed_at is not None:
            return
        cache, found, now = self.cache, {}, time.time()
        try:
            for start in range(0, len(keys), PREFETCH_CHUNK):
                chunk = keys[start:start + PREFETCH_CHUNK]
                db_keys = [cache_key(k) for k in chunk]
                rows = cache._sql(
                    "SELECT key, mode, filename, value FROM Cache WHERE raw = 1"
                    " AND (expire_time IS NULL OR expire_time > ?)"
                    f" AND key IN ({','.join('?' * len(chunk))})", (now, *db_keys)).fetchall()
                values = {db_key: cache._disk.fetch(mode, filename, value, False)
                          for db_key, mode, filename, value in rows}
                found.update((k, values.get(db_key)) for k, db_key in zip(chunk, db_keys))
        except Exception as exc:  # noqa: BLE001 (the per-key reads report it, as before)
            log.debug("cache: nothing read ahead (%s)", exc)
            return
        self._ahead.update(found)

    def keep_newest(self, prefix: str, keep: int) -> None:
        """Delete all but the ``keep`` newest values whose (text) keys start with ``prefix``: a
        cache's own housekeeping of values kept per setting. On any fault nothing is deleted."""
        if self._failed_at is not None:
            return
        try:
            rows = self.cache._sql("SELECT key FROM Cache WHERE raw = 1 AND key >= ? AND key < ?"
                                   " ORDER BY store_time DESC", (prefix, prefix + "\U0010ffff")).fetchall()
        except Exception as exc:  # noqa: BLE001 (housekeeping only: the values stay)
            log.debug("cache: nothing deleted (%s)", exc)
            return
        for (key,) in rows[keep:]:
            if isinstance(key, str) and key.startswith(prefix):
                self._cache_call("delete", key)

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
            return load_npy(bytes(raw))
        except (ValueError, OSError, TypeError):
            log.warning("cache: entry %s is not a valid array; treated as missing", printable(key))
            self._cache_call("delete", key)
            return None

    def put_array(self, key: str, array: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
        self._cache_call("set", key, buf.getvalue())


# The header ``np.save`` writes for a plain C-ordered array (format 1.0): read here without
# ``np.load``, whose header parser (``ast.literal_eval``) was a fifth of opening 1000 cached frames
# (one landmarks array each). Anything else goes to ``np.load``, as before.
_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_NPY_HEADER = re.compile(r"\{'descr': '([<>|=]?[biuf][1-8])', 'fortran_order': False, 'shape': \((|\d+,|\d+(?:, \d+)+)\), \} *\n")


def load_npy(raw: bytes) -> np.ndarray:
    """The array in ``raw`` (``.npy`` bytes), as ``np.load(..., allow_pickle=False)`` reads it."""
    if raw[:8] == _NPY_MAGIC and len(raw) >= 10:
        end = 10 + int.from_bytes(raw[8:10], "little")
        m = _NPY_HEADER.fullmatch(raw[10:end].decode("latin1"))
        if m is not None:
            shape = tuple(int(v) for v in m.group(2).split(",") if v)
            count = math.prod(shape)
            dtype = np.dtype(m.group(1))
            if len(raw) - end < count * dtype.itemsize:
                raise ValueError("the array's data is shorter than its header says")
            return np.frombuffer(raw, dtype, count, offset=end).reshape(shape).copy()
    return np.load(io.BytesIO(raw), allow_pickle=False)


def cache_key(key: str) -> str | bytes:
    """The key as stored: the text itself, or its bytes when it holds a name that is not UTF-8."""
    return key if is_printable(key) else key.encode("utf-8", "surrogatepass")
