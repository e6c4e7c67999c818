"""Property-based tests (hypothesis) over what the OS and the camera give us: any file name (as
bytes, through ``os.fsencode``/``os.fsdecode``), any EXIF date string. The scan, the store and the
JSON never raise, and what we write is always strict UTF-8 JSON."""
from __future__ import annotations

import base64
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from alignimation_tui.config import Config, StoreConfig
from alignimation_tui.headless import frame_json
from alignimation_tui.names import is_printable, path_fields, printable
from alignimation_tui.pipeline import Pipeline
from alignimation_tui.scan import _parse_exif_datetime, list_photos, name_date, read_frame, taken_at
from alignimation_tui.store import Store

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A file name as the kernel stores it: any bytes but "/" and NUL, at most 255 of them.
name_bytes = st.binary(min_size=1, max_size=120).map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_"))


@pytest.fixture(scope="module")
def jpeg_bytes() -> bytes:
    path = Path(tempfile.mkdtemp()) / "p.jpg"
    Image.new("RGB", (32, 24), (120, 90, 60)).save(path, quality=80)
    return path.read_bytes()


def strict_json(text: str) -> object:
    """Parse as any strict consumer would: UTF-8 bytes, no lone surrogates in any string."""
    data = json.loads(text.encode("utf-8").decode("utf-8"))

    def walk(v):
        if isinstance(v, str):
            assert is_printable(v), repr(v)
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(data)
    return data


@SETTINGS
@given(raw=st.binary(max_size=80))
def test_printable_is_always_utf8_and_leaves_valid_text_alone(raw):
    text = os.fsdecode(raw)
    shown = printable(text)
    shown.encode("utf-8")
    try:
        assert shown == raw.decode("utf-8")
    except UnicodeDecodeError:
        assert "\\x" in shown
    fields = path_fields(text)
    if "path_bytes" in fields:
        assert base64.b64decode(fields["path_bytes"]) == raw
    else:
        assert fields["path"] == text


@SETTINGS
@given(names=st.lists(name_bytes, min_size=1, max_size=4, unique=True))
def test_scan_store_and_json_take_any_file_name(names, jpeg_bytes):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "photos"
        folder.mkdir()
        made = []
        for i, raw in enumerate(names):
            raw = (raw + b".jpg")[-250:]
            if raw in (b".", b".."):
                continue
            data = jpeg_bytes + bytes([i])  # distinct content, still a JPEG
            path = Path(os.fsdecode(os.path.join(os.fsencode(folder), raw)))
            if path.exists():
                continue
            path.write_bytes(data)
            made.append(path)
        found = list_photos(folder)
        assert sorted(found) == sorted(p for p in made if not p.name.startswith("."))
        config = Config(store=StoreConfig(cache_dir=str(root / "cache"), data_dir=str(root / "data")))
        pipeline = Pipeline(folder, config)
        try:
            results = pipeline.scan()
            assert {r.frame.path for r in results} == set(found)
            again = pipeline.scan()  # from the stored stat records, keyed by the exact path
            assert [r.frame.hash for r in again] == [r.frame.hash for r in results]
            for r in results:
                text = json.dumps(frame_json(r))
                data = strict_json(text)
                exact = base64.b64decode(data["path_bytes"]) if "path_bytes" in data else data["path"].encode()
                assert exact == os.fsencode(r.frame.path)
        finally:
            pipeline.close()


@SETTINGS
@given(a=name_bytes, b=name_bytes)
def test_store_keys_from_names_never_collide(a, b, tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    store = Store(root / "photos", str(root / "cache"), str(root / "data"))
    try:
        ka, kb = "stat:" + os.fsdecode(a), "stat:" + os.fsdecode(b)
        store.put_json(ka, {"name": "a"})
        store.put_json(kb, {"name": "b"})
        assert store.get_json(ka) == {"name": "a" if a != b else "b"}
        assert store.get_json(kb) == {"name": "b"}
        if not is_printable(ka) and printable(ka) != kb:  # the escaped text is another key
            assert store.get_json(printable(ka)) is None
    finally:
        store.close()


exif_values = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(lambda y, mo, d, h, mi, s, tail: f"{y:04d}:{mo:02d}:{d:02d} {h:02d}:{mi:02d}:{s:02d}{tail}",
              st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
              st.integers(0, 99), st.integers(0, 99), st.text(max_size=5)),
)


@SETTINGS
@given(value=exif_values)
def test_exif_date_strings_never_raise(value):
    got = _parse_exif_datetime(value)
    assert got is None or isinstance(got, datetime)


@SETTINGS
@given(value=st.one_of(st.text(alphabet=st.characters(max_codepoint=127), max_size=40), exif_values),
       mtime=st.floats(min_value=-1e12, max_value=1e13, allow_nan=False))
def test_photos_with_any_exif_date_and_mtime_scan(value, mtime, tmp_path_factory):
    """Written into a real JPEG's DateTimeOriginal (whatever Pillow accepts), read back by the scan."""
    path = tmp_path_factory.mktemp("exif") / "IMG_x.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = value
    try:
        blob = exif.tobytes()
    except Exception:  # Pillow cannot encode this value: not a file a camera could have made
        blob = b""
    Image.new("RGB", (16, 16)).save(path, exif=blob)
    when, source = taken_at(path, mtime)
    assert isinstance(when, datetime) and source in ("exif", "name", "mtime")
    frame, record = read_frame(path)
    assert json.loads(json.dumps(record))["hash"] == frame.hash


@SETTINGS
@given(name=st.one_of(st.text(max_size=60), st.binary(max_size=60).map(os.fsdecode)))
def test_dates_in_any_name(name):
    got = name_date(name)
    assert got is None or 1900 <= got.year <= 2099


def test_the_parsers_read_real_dates():
    """Beside "never raises": a parser that always said None would pass the properties above."""
    assert _parse_exif_datetime("2019:05:04 12:30:01") == datetime(2019, 5, 4, 12, 30, 1)
    assert _parse_exif_datetime("not a date") is None
    for name, day in (("IMG_20240121_093012.jpg", (2024, 1, 21)), ("2024-02-18 garden.jpg", (2024, 2, 18)),
                      ("PXL_20231105_101010123.jpg", (2023, 11, 5))):
        got = name_date(name)
        assert got is not None and (got.year, got.month, got.day) == day, (name, got)
    assert name_date("holiday.jpg") is None
