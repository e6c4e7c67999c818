"""The person's decisions about a folder's photos: verdicts, nudges and the pinned reference.

User data, never evicted and never rebuilt, unlike the cache (``store``), with which it shares only
the folder it belongs to. One small JSON file, ``decisions.json`` in the folder's data directory
(``store.data_dir``), changed read-modify-write under a lock and replaced atomically on every
change, keeping what this version does not understand, so two processes on one folder (an app and
a cron job) never lose each other's decisions (``Decisions``).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .domain import Nudge, Verdict
from .folders import folder_access
from .names import printable

log = logging.getLogger(__name__)

DATA_KEY = "store.data_dir"


@dataclass(frozen=True)
class DecisionChanges:
    """What another process changed in the decisions file since this one last read it: the new
    verdict (AUTO when removed) and nudge (None when removed) of every photo whose entry changed,
    and the pinned reference (``reference_changed`` says whether it moved)."""

    verdicts: dict[str, Verdict]
    nudges: dict[str, Nudge | None]
    reference_changed: bool
    reference: str | None

    def __bool__(self) -> bool:
        return bool(self.verdicts or self.nudges or self.reference_changed)


KNOWN_VERDICTS = {v.value for v in Verdict}


def _understood(raw: dict) -> tuple[dict, str | None, dict, dict[str, Any]]:
    """The verdicts, reference and nudges this version reads out of ``raw`` (the whole file), and
    what it does not understand (``{"verdicts.abc": value, ...}``), which is kept in the file as it is."""
    verdicts, nudges, ignored = {}, {}, {}
    stored = raw.get("verdicts")
    if isinstance(stored, dict):
        for key, value in stored.items():
            if isinstance(value, str) and value in KNOWN_VERDICTS:
                verdicts[key] = value
            else:
                ignored[f"verdicts.{key}"] = value
    elif stored is not None:
        ignored["verdicts"] = stored
    reference = raw.get("reference")
    if reference is not None and not isinstance(reference, str):
        ignored["reference"], reference = reference, None
    stored = raw.get("nudges")
    if isinstance(stored, dict):
        for key, value in stored.items():
            try:
                nudges[key] = Nudge.from_json(value).to_json()
            except (ValueError, TypeError, AttributeError):
                ignored[f"nudges.{key}"] = value
    elif stored is not None:
        ignored["nudges"] = stored
    for key, value in raw.items():
        if key not in ("verdicts", "reference", "nudges"):
            ignored[key] = value
    return verdicts, reference, nudges, ignored


def _table(raw: dict, name: str) -> dict:
    """``raw[name]`` as a dict we may change; a value there this version cannot read is kept
    beside it (``name`` + ``.unreadable``), never dropped."""
    table = raw.get(name)
    if isinstance(table, dict):
        return table
    if table is not None:
        raw[f"{name}.unreadable"] = table
    raw[name] = {}
    return raw[name]


class Decisions:
    """Verdicts, nudges and the pinned reference: user data in one JSON file.

    One writer at a time, any number of processes: every change is a read-modify-write under an
    ``fcntl.flock`` on ``decisions.json.lock`` beside it: the file is read afresh, this process's one
    change is made to it and it is replaced atomically (a temporary file, fsync, rename), so two
    instances never undo each other. Entries this version does not understand (unknown keys, a
    verdict it does not know, a nudge it cannot read, a reference that is not a name) are kept in
    the file as they are, said once by key (``notices``) and otherwise ignored. Only a file that is
    not JSON at all (or not a JSON object) is moved aside, to a new numbered name
    (``decisions.unreadable.json``, ``decisions.unreadable-2.json``, ...).

    ``changed_on_disk()`` and ``reload()`` tell a long-running front end what another process
    changed. A write that fails raises (a ``FolderError``) and changes nothing here either."""

    def __init__(self, path: Path):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock = threading.RLock()
        self._verdicts: dict[str, str] = {}
        self._reference: str | None = None
        self._nudges: dict[str, dict] = {}
        self._stamp: tuple | None = None
        self._reported: set[str] = set()
        self.notices: list[str] = []  # plain sentences (entries ignored, a file moved aside)
        self.on_notice: Callable[[str], None] = lambda message: None
        with self._lock:
            self._adopt(*self._read())

    # reading -----------------------------------------------------------------------------------
    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _read(self, locked: bool = False) -> tuple[dict, tuple | None]:
        """The whole file as a dict (empty when there is none) and its stamp. A file that is not
        JSON is moved aside (under the lock) and reads as empty."""
        problem = None
        with folder_access("read your decisions in", self.path.parent, DATA_KEY):
            stamp = self._file_stamp()
            try:
                text = self.path.read_text(encoding="utf-8") if stamp is not None else None
            except FileNotFoundError:
                text, stamp = None, None
            except UnicodeDecodeError as exc:
                text, problem = "", f"not UTF-8: {exc.reason} at byte {exc.start}"
        if text is None:
            return {}, None
        try:
            if problem is not None:
                raise ValueError(problem)
            raw = json.loads(text)
        except ValueError as exc:
            problem = str(exc)
        else:
            if isinstance(raw, dict):
                return raw, stamp
            problem = f"it holds a JSON {type(raw).__name__}, not an object"
        if not locked:
            with self._file_lock("keep the unreadable decisions file aside in"):
                return self._read(locked=True)  # afresh: another process may have moved it already
        self._move_aside(problem)
        return {}, None

    def _move_aside(self, problem: str) -> None:
        with folder_access("keep the unreadable decisions file aside in", self.path.parent, DATA_KEY):
            for n in range(1, 10_000):
                backup = self.path.with_name(f"{self.path.stem}.unreadable{'' if n == 1 else f'-{n}'}.json")
                try:
                    os.link(self.path, backup)  # never over an earlier backup
                except FileExistsError:
                    continue
                except OSError:  # a file system without hard links
                    if backup.exists():
                        continue
                    os.replace(self.path, backup)
                    break
                os.unlink(self.path)
                break
        self._notice(f"the decisions file {printable(str(self.path))} was not readable JSON ({problem}); "
                     f"it was kept as {printable(backup.name)} and a new one started")

    def _notice(self, message: str) -> None:
        log.warning("decisions: %s", message)
        self.notices.append(message)
        self.on_notice(message)

    def _adopt(self, raw: dict, stamp: tuple | None) -> None:
        self._verdicts, self._reference, self._nudges, ignored = _understood(raw)
        self._stamp = stamp
        new = [k for k in ignored if k not in self._reported]
        if new:
            self._reported.update(new)
            shown = ", ".join(f"{printable(k)} = {printable(json.dumps(ignored[k]))[:40]}" for k in new[:8])
            more = f" and {len(new) - 8} more" if len(new) > 8 else ""
            self._notice(f"{printable(self.path.name)}: kept but ignored what this version does not understand: "
                         f"{shown}{more}")

    # what is decided ---------------------------------------------------------------------------
    def verdict(self, content_hash: str) -> Verdict:
        return Verdict(self._verdicts.get(content_hash, Verdict.AUTO.value))

    def all_verdicts(self) -> dict[str, Verdict]:
        return {k: Verdict(v) for k, v in self._verdicts.items()}

    def nudge(self, content_hash: str) -> Nudge | None:
        raw = self._nudges.get(content_hash)
        return None if raw is None else Nudge.from_json(raw)

    def all_nudges(self) -> dict[str, Nudge]:
        return {k: Nudge.from_json(v) for k, v in self._nudges.items()}

    @property
    def reference(self) -> str | None:
        return self._reference

    # changes by others -------------------------------------------------------------------------
    def changed_on_disk(self) -> bool:
        """Whether the file changed since this instance last read or wrote it (cheap: one stat)."""
        try:
            return self._file_stamp() != self._stamp
        except OSError:
            return False

    def reload(self) -> DecisionChanges:
        """Read the file again if it changed on disk; what changed (falsy when nothing did)."""
        with self._lock:
            if not self.changed_on_disk():
                return DecisionChanges({}, {}, False, self._reference)
            before = (dict(self._verdicts), dict(self._nudges), self._reference)
            self._adopt(*self._read())
            verdicts = {h: self.verdict(h) for h in set(before[0]) | set(self._verdicts)
                        if before[0].get(h) != self._verdicts.get(h)}
            nudges = {h: self.nudge(h) for h in set(before[1]) | set(self._nudges)
                      if before[1].get(h) != self._nudges.get(h)}
            return DecisionChanges(verdicts, nudges, before[2] != self._reference, self._reference)

    # changes by this process -------------------------------------------------------------------
    def set_verdict(self, content_hash: str, verdict: Verdict) -> None:
        def change(raw: dict) -> None:
            table = _table(raw, "verdicts")
            if verdict is Verdict.AUTO:
                table.pop(content_hash, None)
            else:
                table[content_hash] = verdict.value

        self._change(change)

    def set_nudge(self, content_hash: str, nudge: Nudge | None) -> None:
        """Store (or with None / no change, forget) the person's correction of one frame."""
        def change(raw: dict) -> None:
            table = _table(raw, "nudges")
            if nudge is None or nudge.is_identity:
                table.pop(content_hash, None)
            else:
                table[content_hash] = nudge.to_json()

        self._change(change)

    def pin_reference(self, content_hash: str | None) -> None:
        def change(raw: dict) -> None:
            raw["reference"] = content_hash

        self._change(change)

    def _change(self, change: Callable[[dict], None]) -> None:
        """Read the file afresh under the lock, make ``change`` to it, replace it; only then is the
        change made here too (not on disk: not decided either)."""
        with self._lock, self._file_lock("save your decision in"):
            raw, _ = self._read(locked=True)
            for key, empty in (("verdicts", {}), ("reference", None), ("nudges", {})):
                raw.setdefault(key, empty)  # the file's whole shape, as every version wrote it
            change(raw)
            with folder_access("save your decision in", self.path.parent, DATA_KEY):
                self._write_file(raw)
            self._adopt(raw, self._file_stamp())

    @contextmanager
    def _file_lock(self, what: str) -> Iterator[None]:
        with folder_access(what, self.path.parent, DATA_KEY):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write_file(self, raw: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".decisions-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(raw, fh, indent=1, sort_keys=True)
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
