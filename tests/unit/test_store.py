import json
import os
import pickle
import sqlite3

from alignimation_tui.domain import Verdict
from alignimation_tui.store import Decisions, SafeDisk, Store, fingerprint, folder_key


def test_json_and_arrays_round_trip(tmp_path):
    import numpy as np

    store = Store(tmp_path / "photos", cache_dir=str(tmp_path / "c"), data_dir=str(tmp_path / "d"))
    store.put_json("faces:abc:1", {"a": [1, 2.5]})
    big = np.arange(20000, dtype=np.float32).reshape(100, 200)  # big enough to live in a file
    store.put_array("embed:abc:1", big)
    assert store.get_json("faces:abc:1") == {"a": [1, 2.5]}
    assert (store.get_array("embed:abc:1") == big).all()
    assert store.get_json("faces:missing:1") is None
    store.close()


def test_arrays_read_as_np_load_reads_them(tmp_path):
    """``load_npy`` (the fast header read) gives what ``np.load`` gives for every array the cache
    holds or may hold (old entries included), and refuses what ``np.load`` refuses."""
    import io

    import numpy as np
    import pytest

    from alignimation_tui.store import _NPY_HEADER, load_npy

    cases = [np.random.default_rng(0).random((1, 5, 2)), np.ones((3, 512), np.float32), np.zeros((0, 5, 2)),
             np.zeros((0,)), np.array(3.5), np.arange(7), np.ones((2, 3), bool), np.ones((4, 4), np.uint8),
             np.arange(6).reshape(2, 3).T, np.array(["a"]), np.ones((2,), ">f4"), np.ones((1,), np.float16),
             np.zeros((100, 100, 3), np.uint8), np.zeros((2,), [("x", "<f4"), ("y", "<i2")])]
    fast = 0
    for a in cases:
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        raw = buf.getvalue()
        got, want = load_npy(raw), np.load(io.BytesIO(raw), allow_pickle=False)
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
        assert got.flags.writeable and got.flags.c_contiguous == want.flags.c_contiguous
        fast += bool(_NPY_HEADER.fullmatch(raw[10:10 + int.from_bytes(raw[8:10], "little")].decode("latin1")))
        if want.size:
            with pytest.raises(ValueError):
                load_npy(raw[:-1])  # truncated data: an error, as np.load's
    assert fast == 11  # the plain ones take the fast path (the Fortran-ordered, text and record ones do not)
    with pytest.raises(ValueError):
        load_npy(b"not an array")
    store = Store(tmp_path / "photos", cache_dir=str(tmp_path / "c"), data_dir=str(tmp_path / "d"))
    buf = io.BytesIO()
    np.save(buf, np.ones((1, 5, 2)))
    store.cache.set("landmarks:abc:1", buf.getvalue()[:-3])  # a damaged entry reads as missing
    assert store.get_array("landmarks:abc:1") is None
    store.close()


def test_cache_defaults_outside_the_photo_folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    store = Store(photos)
    assert photos not in store.cache_dir.parents and os.listdir(photos) == []
    assert store.cache_dir.name == folder_key(photos)
    store.close()


class Boom:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_planted_pickle_never_runs(tmp_path):
    store = Store(tmp_path / "photos", cache_dir=str(tmp_path / "c"), data_dir=str(tmp_path / "d"))
    store.put_json("faces:abc:1", {"ok": True})
    store.close()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Boom(marker))
    db = sqlite3.connect(tmp_path / "c" / "cache.db")
    db.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = ?", (payload, "faces:abc:1"))
    db.execute("INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, mode,"
               " filename, value) VALUES ('faces:evil:1', 1, 0, NULL, 0, 0, NULL, 0, 2, '../../../etc/passwd', NULL)")
    db.commit()
    db.close()

    before = SafeDisk.refused
    store = Store(tmp_path / "photos", cache_dir=str(tmp_path / "c"), data_dir=str(tmp_path / "d"))
    assert store.get_json("faces:abc:1") is None
    assert store.get_json("faces:evil:1") is None
    assert SafeDisk.refused == before + 2
    assert not marker.exists()
    store.close()


def test_decisions_survive_and_are_written_atomically(tmp_path):
    path = tmp_path / "d" / "decisions.json"
    d = Decisions(path)
    d.set_verdict("h1", Verdict.REJECTED)
    d.set_verdict("h2", Verdict.ACCEPTED)
    d.set_verdict("h2", Verdict.AUTO)
    d.pin_reference("h1")
    again = Decisions(path)
    assert again.verdict("h1") is Verdict.REJECTED and again.verdict("h2") is Verdict.AUTO
    assert again.reference == "h1"
    assert sorted(p.name for p in path.parent.iterdir()) == ["decisions.json", "decisions.json.lock"]  # no temp files
    assert json.loads(path.read_text())["verdicts"] == {"h1": "rejected"}


def test_unreadable_decisions_file_is_kept_aside(tmp_path):
    path = tmp_path / "decisions.json"
    path.write_text("{not json")
    d = Decisions(path)
    assert d.verdict("x") is Verdict.AUTO
    assert (tmp_path / "decisions.unreadable.json").read_text() == "{not json"


def test_fingerprint_is_stable_and_sensitive():
    assert fingerprint(a=1, b=[1, 2]) == fingerprint(b=[1, 2], a=1)
    assert fingerprint(a=1) != fingerprint(a=2)


def test_read_ahead_gives_what_get_gives(tmp_path):
    """Values read ahead (many to a query) are those ``get_json``/``get_array`` read one by one:
    missing keys, file-backed values, keys that are not UTF-8, each given once; a key written
    meanwhile is read afresh, and nothing read ahead outlives ``read_ahead``."""
    import numpy as np

    store = Store(tmp_path / "photos", cache_dir=str(tmp_path / "c"), data_dir=str(tmp_path / "d"))
    odd = "stat:/photos/caf\udce9.jpg"  # a name that is not UTF-8: a BLOB key
    store.put_json("faces:a:1", {"a": 1})
    store.put_json(odd, {"odd": True})
    big = np.arange(40000, dtype=np.float32).reshape(200, 200)  # big enough to live in a file
    store.put_array("embed:a:1", big)
    keys = ["faces:a:1", odd, "embed:a:1", "faces:missing:1"] + [f"x:{i}" for i in range(900)]  # > one query
    with store.read_ahead():
        store.prefetch(keys)
        assert len(store._ahead) == len(keys)
        store.cache.delete("faces:a:1")  # another writer: the value read ahead is given (as a read a moment earlier)
        assert store.get_json("faces:a:1") == {"a": 1}
        assert store.get_json("faces:a:1") is None  # given once; then read afresh
        assert store.get_json(odd) == {"odd": True}
        assert (store.get_array("embed:a:1") == big).all()
        assert store.get_json("faces:missing:1") is None
        store.put_json("x:1", {"new": 1})  # written by this store: read afresh
        assert store.get_json("x:1") == {"new": 1}
    assert store._ahead == {}
    store.close()


def test_read_ahead_never_unpickles(tmp_path):
    """A planted pickle or a row pointing outside the cache is refused when read ahead too: nothing
    is read ahead, and the gets refuse the rows as before."""
    store = Store(tmp_path / "photos", cache_dir=str(tmp_path / "c"), data_dir=str(tmp_path / "d"))
    store.put_json("faces:abc:1", {"ok": True})
    store.put_json("faces:fine:1", {"fine": True})
    store.close()
    marker = tmp_path / "pwned"
    db = sqlite3.connect(tmp_path / "c" / "cache.db")
    db.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = ?", (pickle.dumps(Boom(marker)), "faces:abc:1"))
    db.commit()
    db.close()
    store = Store(tmp_path / "photos", cache_dir=str(tmp_path / "c"), data_dir=str(tmp_path / "d"))
    before = SafeDisk.refused
    with store.read_ahead():
        store.prefetch(["faces:abc:1", "faces:fine:1"])
        assert store.get_json("faces:abc:1") is None
        assert store.get_json("faces:fine:1") == {"fine": True}
    assert SafeDisk.refused >= before + 2 and not marker.exists()
    store.close()
