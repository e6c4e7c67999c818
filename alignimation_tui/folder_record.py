"""The folder record: a cached folder's whole state after its open, kept as one value, so that the
next open of the folder, every photo unchanged, rebuilds that state in one read instead of reading
four values a photo and choosing and registering again (10,000 photos: 1.8 s).

What it holds: per photo, its file's stamp as the scan checks it (name, size, modification and
change times, inode), its frame, detection, quality, picture, subject, transform, status and
reasons, and its table row; for the folder, the reference, the framing and the notices the pass
made. It is only a cache, in the store's cache (``Store.put_json``: JSON bytes, one transaction;
of two processes the last writer wins, each record whole), one per version and settings (the newest
few kept). It never reads or writes the decisions file beyond what the store already read.

The app checks the record before its screen (``check``: the listing, a ``stat`` a photo, the
rows) and rebuilds the pipeline's state from it on its worker once the screen is drawn
(``rebuild``); ``restore`` does both.

It is used only when all of this is as it was when it was written, else the usual scan runs (and
the app writes a new record once that open's state is final):

* the code (a digest of the package's sources) and the record's format;
* the settings (the whole config, the mode chosen), whether the face descriptor is installed and,
  for photos a plug-in decodes (HEIC), the plug-in;
* the photos: the same names, each file's stamp (one ``stat`` a photo, as the scan);
* each photo's verdict and nudge, the pinned reference, the automatic reference the store keeps.

A folder with a photo that is a link, unreadable, a duplicate of another, new or not detected, or a
mode other than face mode, gets no record. A record that does not parse, or does not hold what it
should, is ignored (and written again): JSON only, nothing in it is run or opened.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import logging
import math
import os
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

import numpy as np

from .borders import PictureBox
from .domain import (Face, FaceDetection, FacingScores, Frame, FrameQuality, FrameResult, FrameStatus, Nudge,
                     Subject, Transform, Verdict)
from .fingerprint import fingerprint
from .framing import Framing
from .scan import PHOTO_SUFFIXES, STAMP_NUMBERS, photo_entries, readable_suffixes, stamp_numbers
from .triage import FrameRow

log = logging.getLogger(__name__)

FORMAT = 4
KEY = "folder-record"  # ...":{fingerprint}": one record per version and settings, the newest few kept
RECORDS_KEPT = 3
RECORDED_MODES = ("face",)
# Every field of a result, as the record keeps it (a field added to ``FrameResult`` and not here
# gives no record, never a record that leaves it out: see ``_recordable``). ``extra`` holds only
# what is measured again from the rest (``transform_key``, the key a transform was loaded under, too).
RESULT_FIELDS = ("frame", "status", "verdict", "detection", "subject", "transform", "error", "extra", "quality",
                 "skip_reason", "nudge", "outlier_reason", "unsure_reason", "identity_doubt", "picture")
ROW_FIELDS = tuple(f.name for f in fields(FrameRow) if f.name != "hash")
# A row is made as ``FrameRow(hash, *values)``: its hash must come first (else no record)
_ROW_IN_ORDER = tuple(f.name for f in fields(FrameRow)) == ("hash", *ROW_FIELDS)
_SORT_VALUES = ROW_FIELDS.index("sort_values")
_SORTED_DATE = 1  # where the date is among a row's sort values (``triage.frame_row``)
# The floats of a photo: its transform's matrix (9) and residual, its subject's facing scores (3)
# and identity distance, its picture box (4); of a face: its box (4), probability and landmarks (10).
PHOTO_FLOATS = 18
FACE_FLOATS = 15
_STATUS = {s.value: s for s in FrameStatus}
_VERDICT = {v.value: v for v in Verdict}


@functools.cache
def code_digest() -> str:
    """A digest of the package's sources: another version of the code makes another state."""
    root = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.blake2b(digest_size=12)
    for name in sorted(_sources(root, "")):
        h.update(os.fsencode(name))
        with open(os.path.join(root, name), "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def _sources(root: str, under: str) -> list[str]:
    """The ``.py`` files in ``root``/``under`` and below, relative to ``root``."""
    found = []
    with os.scandir(os.path.join(root, under)) as entries:
        for entry in entries:
            name = os.path.join(under, entry.name)
            if entry.is_dir() and not entry.name.startswith((".", "__")):
                found += _sources(root, name)
            elif entry.name.endswith(".py"):
                found.append(name)
    return found


def record_fingerprint(p) -> str:
    """Everything besides the photos and the decisions that the state is made from."""
    return fingerprint(format=FORMAT, code=code_digest(), config=repr(p.config), mode=p.mode.name,
                       identity=bool(p.mode.identity_on), folder=os.fspath(p.folder))


@dataclass
class Checked:
    """A record that holds for the folder as it is now (``check``): each photo's table row now, the
    pipeline's state when ``rebuild`` makes it."""

    rows: dict[str, FrameRow]
    record: dict
    paths: dict[str, str]  # photo name -> its path, as the folder's listing spells it
    blobs: tuple[bytes, bytes, bytes]  # the faces', the photos' and the sharpness' float64 bytes
    faces: int  # how many faces the photos have in all
    notices: list[str]
    # Photos the folder holds that the record does not (added since it was written; not links), as
    # the listing spells their paths: the state is the record's and these are read as new photos are.
    added: list[str] = field(default_factory=list)


# writing ----------------------------------------------------------------------------------------
def _recordable(p) -> bool:
    return (p.mode.name in RECORDED_MODES and tuple(f.name for f in fields(FrameResult)) == RESULT_FIELDS
            and _ROW_IN_ORDER
            and not p.unscanned and p.reference is not None and p.framing is not None)


def make_record(p, stamps: dict[str, dict], listed: int, rows: dict[str, FrameRow],
                notices: list[str]) -> dict | None:
    """The record of pipeline ``p``'s state as its open left it (None when it cannot have one).
    ``stamps``: hash -> the stat record the scan matched its file against (``Pipeline.scan_stamps``);
    ``listed``: the photos the folder listed; ``rows``: hash -> its table row; ``notices``: what
    the open's pass said. Text and whole numbers are JSON; the floats are float64 arrays, each in one
    base64 string (parsing 60 floats a photo as JSON text was most of the time of reading it)."""
    if not _recordable(p) or len(p.results) != listed or len(stamps) != listed:
        return None
    decisions = p.store.decisions
    photos, faces, per_photo, sharpness = [], [], [], []
    for h, r in p.results.items():
        stamp, row = stamps.get(h), rows.get(h)
        det, subject, t, q, pic = r.detection, r.subject, r.transform, r.quality, r.picture
        if stamp is None or row is None or not isinstance(det, FaceDetection) or r.extra.get("unreadable"):
            return None
        chosen = None
        numbers = [math.nan] * PHOTO_FLOATS
        if subject is not None:
            at = next((i for i, f in enumerate(det.faces) if f is subject.face), None)
            if not isinstance(subject, Subject) or at is None:
                return None
            chosen = [subject.face_index, at, subject.identity_distance is not None]
            s = subject.scores
            numbers[10:14] = [s.eye_ratio, s.mouth_ratio, s.yaw_deg,
                              math.nan if subject.identity_distance is None else subject.identity_distance]
        if t is not None:
            numbers[0:10] = [v for row_ in t.matrix for v in row_] + [t.residual_pct]
            if len(t.matrix) != 3 or len(numbers) != PHOTO_FLOATS:
                return None
        if pic is not None:
            numbers[14:18] = pic.box
        for f in det.faces:
            faces.append([*f.box, f.prob, *(c for point in f.landmarks for c in point)])
            if len(f.box) != 4 or len(f.landmarks) != 5:
                return None
        if q is not None:
            sharpness.extend(q.sharpness)
        per_photo.append(numbers)
        key = r.extra.get("transform_key")  # (whether the registration loaded its transform under it)
        verdict, nudge = decisions.verdict(h), decisions.nudge(h)
        if verdict is not r.verdict or nudge != r.nudge:
            return None  # a decision the state does not hold yet (a key pressed meanwhile): no record
        photos.append([
            r.frame.name, *(stamp[k] for k in STAMP_NUMBERS), h,
            r.frame.taken_at.isoformat(), r.frame.date_source, r.frame.file_size, r.status.value,
            verdict.value, None if nudge is None else nudge.to_json(),
            r.error, r.skip_reason, r.outlier_reason, r.unsure_reason, r.identity_doubt,
            det.width, det.height, len(det.faces), chosen,
            None if q is None else [q.dhash, len(q.sharpness)], pic is not None,
            None if t is None else list(t.canvas), isinstance(key, str),
            [_row_value(name, getattr(row, name)) for name in ROW_FIELDS]])
    f = p.framing
    return {"format": FORMAT, "fingerprint": record_fingerprint(p), "reference": p.reference.hash,
            "pinned": decisions.reference, "auto_reference": p.store.get_json(p.mode.auto_reference_key),
            "framing": [list(f.size), np.asarray(f.matrix, np.float64).tolist(), list(f.anchor), f.unit, f.style],
            "notices": list(notices), "row_fields": list(ROW_FIELDS), "photos": photos,
            # the suffixes of its photos that a plug-in decodes (HEIC...): a record for while it is installed
            "plugins": sorted({os.path.splitext(r.frame.name)[1].lower() for r in p.results.values()}
                              - PHOTO_SUFFIXES),
            "faces": _floats(faces, FACE_FLOATS), "numbers": _floats(per_photo, PHOTO_FLOATS),
            "sharpness": _floats([[v] for v in sharpness], 1)}


def _floats(values: list, width: int) -> str:
    """``values`` (rows of ``width`` floats) as base64 text of their float64 bytes (little-endian)."""
    return base64.b64encode(np.asarray(values, "<f8").reshape(-1, width).tobytes()).decode("ascii")


def _row_value(name: str, value):
    if name == "sort_values":  # its date (the frame's) as ISO text: see ``_sort_values``
        if [k for k, v in enumerate(value) if isinstance(v, datetime)] != [_SORTED_DATE]:
            raise ValueError("a row's sort values have their date elsewhere")
        return [v.isoformat() if k == _SORTED_DATE else v for k, v in enumerate(value)]
    return value


def _sort_values(values: list) -> tuple:
    values[_SORTED_DATE] = datetime.fromisoformat(values[_SORTED_DATE])
    return tuple(values)


def write(p, stamps: dict[str, dict], listed: int, rows: dict[str, FrameRow], notices: list[str]) -> bool:
    """Store the record of ``p``'s state (``make_record``); whether one was written."""
    try:
        record = make_record(p, stamps, listed, rows, notices)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a value it cannot keep: no record
        log.debug("folder record: not written (%s)", exc)
        return False
    if record is None:
        return False
    p.store.put_json(record_key(p), record)
    p.store.keep_newest(f"{KEY}:", RECORDS_KEPT)
    return True


def record_key(p) -> str:
    """Where the record of pipeline ``p``'s version and settings is kept: two versions of the app,
    or two configs, on one folder each keep their own (rather than each writing over the other's)."""
    return f"{KEY}:{record_fingerprint(p)}"


# reading ----------------------------------------------------------------------------------------
def check(p, exclude: set[Path] = frozenset()) -> Checked | None:
    """The record, when it holds for pipeline ``p``'s folder as it is now (the code, the settings,
    every photo's stamp and decisions, the references), with each photo's table row; else None.
    Photos added to the folder since do not undo it (a week's new photos, another process's run):
    they are ``Checked.added``, read afterwards as new photos are. A photo gone, edited or moved,
    or a link, does: the scan runs. Nothing of ``p`` is changed: ``rebuild`` makes its state."""
    record = p.store.get_json(record_key(p))
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    try:
        if record.get("fingerprint") != record_fingerprint(p) or record.get("row_fields") != list(ROW_FIELDS) \
                or p.mode.name not in RECORDED_MODES or not _ROW_IN_ORDER:
            return None
        if record["pinned"] != p.store.decisions.reference \
                or record["auto_reference"] != p.store.get_json(p.mode.auto_reference_key):
            return None
        if record["plugins"] and not set(record["plugins"]) <= readable_suffixes():
            return None  # a photo no decoder reads any more: a failed row, as the scan says
        listed = photo_entries(p.folder, exclude)
        photos = record["photos"]
        if len(listed) < len(photos) or any(link for _, _, link in listed):
            return None  # a photo gone; a link is resolved and checked by the scan
        paths = {name: path for name, path, _ in listed}
        checked = _check_photos(p, record, photos, paths)  # (None unless each recorded photo is there)
        if checked is not None and len(listed) > len(photos):
            recorded = {photo[0] for photo in photos}
            checked.added = [path for name, path in paths.items() if name not in recorded]
        return checked
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        log.warning("folder record: ignored (%s)", exc)
        return None
    except OSError:  # the folder cannot be listed now: the scan says why
        return None


def _blob(text: str, floats: int) -> bytes:
    data = base64.b64decode(text.encode("ascii"), validate=True)
    if len(data) != floats * 8:
        raise ValueError("the record's numbers are not as many as its photos say")
    return data


def _check_photos(p, record: dict, photos: list, paths: dict[str, str]) -> Checked | None:
    stat = os.stat
    rows: dict[str, FrameRow] = {}
    verdicts, nudges = {}, {}
    faces = sharp = 0
    for (name, size, mtime_ns, ino, ctime_ns, h, taken_at, _, _, status, verdict, nudge, *_, count, subject,
         quality, _, _, _, row) in photos:
        text = paths.get(name)
        if text is None:
            return None
        try:
            st = stat(text)
        except OSError:
            return None
        if stamp_numbers(st) != (size, mtime_ns, ino, ctime_ns):
            return None  # edited, re-exported, moved over: the scan reads it again
        if verdict != "auto":
            verdicts[h] = verdict
        if nudge is not None:
            nudges[h] = nudge
        if status not in _STATUS or (subject is not None and not 0 <= subject[1] < count) \
                or len(row) != len(ROW_FIELDS):
            raise ValueError(f"a photo's subject, status or row is not one of its own ({name!r})")
        faces += count
        sharp += quality[1] if quality is not None else 0
        row[_SORT_VALUES] = _sort_values(row[_SORT_VALUES])
        rows[h] = FrameRow(h, *row)  # (its fields in order: the hash, then ROW_FIELDS)
    if len(rows) != len(photos) or record["reference"] not in rows or not _same_decisions(p, rows, verdicts, nudges):
        return None
    blobs = (_blob(record["faces"], faces * FACE_FLOATS), _blob(record["numbers"], len(photos) * PHOTO_FLOATS),
             _blob(record["sharpness"], sharp))
    return Checked(rows, record, paths, blobs, faces, [str(n) for n in record["notices"]])


def _same_decisions(p, photos: dict, verdicts: dict[str, str], nudges: dict[str, dict]) -> bool:
    """Whether the verdicts and nudges of the folder's ``photos`` (hashes) in the decisions file are
    the record's (``verdicts``, ``nudges``: those that are not "auto" or none): a pass over what was
    decided, not a look-up per photo."""
    decisions = p.store.decisions
    now = {h: v.value for h, v in decisions.all_verdicts().items() if h in photos and v is not Verdict.AUTO}
    if now != verdicts:
        return False
    now_nudges = {h: n.to_json() for h, n in decisions.all_nudges().items() if h in photos}
    return now_nudges == nudges


def recorded_stamps(checked: Checked) -> dict[str, dict]:
    """Hash -> the stamp (``STAMP_NUMBERS``) each of the record's photos was checked against: what
    ``make_record`` keeps of a photo's stat record."""
    n = len(STAMP_NUMBERS)
    return {photo[1 + n]: dict(zip(STAMP_NUMBERS, photo[1:1 + n])) for photo in checked.record["photos"]}


def rebuild(p, checked: Checked) -> bool:
    """Pipeline ``p``'s state (its results, the reference, the framing: what ``scan`` with
    ``known_only`` and ``process([], compute=False)`` make) from a ``check``ed record; whether it
    was made (if not, ``p`` is not changed and the scan is the way)."""
    try:
        made = _rebuild(p, checked)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        log.warning("folder record: not used (%s)", exc)
        return False
    return made


def restore(p, exclude: set[Path] = frozenset()) -> Checked | None:
    """``check`` and ``rebuild`` in one: the checked record when ``p``'s state was made from it."""
    checked = check(p, exclude)
    return checked if checked is not None and rebuild(p, checked) else None


def _rebuild(p, checked: Checked) -> bool:
    record, photos = checked.record, checked.record["photos"]
    min_confidence = p.config.detect.min_confidence
    faces_at = np.frombuffer(checked.blobs[0], "<f8").reshape(-1, FACE_FLOATS).tolist()
    numbers_of = np.frombuffer(checked.blobs[1], "<f8").reshape(-1, PHOTO_FLOATS).tolist()
    sharp_of = np.frombuffer(checked.blobs[2], "<f8").tolist()
    results: dict[str, FrameResult] = {}
    loaded: list[FrameResult] = []  # those whose transform the registration had loaded under its key
    folder = p.folder
    next_face = next_sharp = 0
    for (name, _, _, _, _, h, taken_at, date_source, file_size, status, verdict, nudge, error, skip_reason,
         outlier_reason, unsure_reason, identity_doubt, width, height, count, subject, quality, picture, canvas,
         keyed, _), numbers in zip(photos, numbers_of):
        faces = tuple(Face((v[0], v[1], v[2], v[3]), v[4], ((v[5], v[6]), (v[7], v[8]), (v[9], v[10]),
                                                             (v[11], v[12]), (v[13], v[14])))
                      for v in faces_at[next_face:next_face + count])
        next_face += count
        chosen = None
        if subject is not None:
            index, at, has_distance = subject
            face = faces[at]
            if face.prob < min_confidence:
                return False
            chosen = Subject(index, face, FacingScores(numbers[10], numbers[11], numbers[12]),
                             numbers[13] if has_distance else None)
        transform = None
        if canvas is not None:
            m = numbers
            transform = Transform(((m[0], m[1], m[2]), (m[3], m[4], m[5]), (m[6], m[7], m[8])),
                                  (canvas[0], canvas[1]), m[9])
        kept_quality = None
        if quality is not None:
            dhash, many = quality
            kept_quality = FrameQuality(dhash, tuple(sharp_of[next_sharp:next_sharp + many]))
            next_sharp += many
        r = FrameResult(
            frame=Frame(folder / name, h, datetime.fromisoformat(taken_at), date_source, file_size),
            status=_STATUS[status], verdict=_VERDICT[verdict], detection=FaceDetection(width, height, faces),
            subject=chosen, transform=transform, error=error, quality=kept_quality, skip_reason=skip_reason,
            nudge=None if nudge is None else Nudge.from_json(nudge), outlier_reason=outlier_reason,
            unsure_reason=unsure_reason, identity_doubt=identity_doubt,
            picture=PictureBox((numbers[14], numbers[15], numbers[16], numbers[17])) if picture else None)
        if keyed:
            loaded.append(r)
        results[h] = r
    if len(results) != len(photos) or next_face != len(faces_at):
        return False
    ref_hash = record["reference"]
    size, matrix, anchor, unit, style = record["framing"]
    framing = Framing(tuple(size), np.asarray(matrix, np.float64).reshape(3, 3), tuple(anchor), float(unit), style)
    p.results = results
    p.unscanned = [Path(path) for path in checked.added]  # for the caller to read (``Driver._rebuild``)
    p.reference = p.mode.reference_of(ref_hash)
    p._reference_names = {ref_hash: results[ref_hash].frame.path.name}
    p.framing = framing
    p.notices.extend(n for n in checked.notices if n not in p.notices)
    if p.reference is not None:  # the key each transform was loaded under: the next registration keeps it
        fp = p.mode.register_fp(p.reference)
        for r in loaded:
            if r.subject is not None:
                r.extra["transform_key"] = p.mode.transform_key(r, fp)
    return True
