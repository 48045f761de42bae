"""The proxy store (proxy/store.py): where it lives, what a key covers, atomic writes, cleaning, LRU eviction,
and reading what another process may have written there as untrusted."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from flipedit_previewd.proxy.store import (
    MANIFEST,
    Identity,
    Manifest,
    Params,
    Store,
    StoreError,
    default_root,
    key_of,
    open_nofollow,
    pack_segment,
    read_table,
)

IDENT = Identity(1, 2, 3000, 4_000_000_000, "h264", 1920, 1080, (1, 15360), (30, 1))


def manifest(key: str | None = None, segments: int = 0) -> Manifest:
    key = key or key_of(IDENT, Params())
    m = Manifest(key, IDENT, Params(), 1280, 720, None, Fraction(1, 15360), 0)
    for i in range(segments):
        m.segments.append((i * 30 * 512, (i * 30 + 29) * 512, 30))
    return m


def test_the_root_follows_systemd_then_xdg_then_home() -> None:
    assert default_root({"CACHE_DIRECTORY": "/c/flipedit-preview:/other", "XDG_CACHE_HOME": "/x"}) == Path(
        "/c/flipedit-preview/proxies"
    )
    assert default_root({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/flipedit-preview/proxies")
    assert default_root({"XDG_CACHE_HOME": "relative", "HOME": "/h"}) == Path("/h/.cache/flipedit-preview/proxies")
    assert default_root({"HOME": "/h"}) == Path("/h/.cache/flipedit-preview/proxies")


def test_the_key_changes_with_the_file_the_stream_and_the_proxy() -> None:
    base = key_of(IDENT, Params())
    assert key_of(IDENT, Params()) == base
    for changed in (
        replace(IDENT, ino=3),
        replace(IDENT, dev=9),
        replace(IDENT, size=3001),
        replace(IDENT, mtime_ns=4_000_000_001),
        replace(IDENT, codec="hevc"),
        replace(IDENT, width=1280),
        replace(IDENT, time_base=(1, 90000)),
        replace(IDENT, rate=(25, 1)),
    ):
        assert key_of(changed, Params()) != base
    for params in (Params(width=640, height=360), Params(crf=12), Params(segment_frames=60)):
        assert key_of(IDENT, params) != base


def test_a_manifest_round_trips_and_an_invalid_one_is_no_proxy(tmp_path: Path) -> None:
    store = Store(tmp_path / "proxies")
    store.create()
    m = manifest(segments=2)
    store.begin(m)
    store.write_manifest(m)
    got = store.manifest(m.key)
    assert got is not None and got.segments == m.segments and got.time_base == m.time_base and got.identity == IDENT
    raw = json.loads(m.to_json())
    for field, value in (
        ("key", "0" * 32),
        ("format", 99),
        ("segments", [[10, 5, 3]]),
        ("segments", [[0, 10, 3], [5, 20, 3]]),
        ("width", -1),
        ("width", 10**9),
        ("transpose", 7),
        ("time_base", [0, 1]),
        ("complete", "yes"),
    ):
        bad = dict(raw, **{field: value})
        (store.dir(m.key) / MANIFEST).write_text(json.dumps(bad))
        if field == "complete":
            assert store.manifest(m.key) is not None and not store.manifest(m.key).complete  # type: ignore[union-attr]
        else:
            assert store.manifest(m.key) is None, field
    bad = dict(raw, params=dict(raw["params"], codec="tiff"))
    (store.dir(m.key) / MANIFEST).write_text(json.dumps(bad))
    assert store.manifest(m.key) is None
    (store.dir(m.key) / MANIFEST).write_bytes(b"{" * 100000)
    assert store.manifest(m.key) is None
    with pytest.raises(StoreError):
        store.dir("../etc")


def test_symlinks_in_the_store_are_never_followed(tmp_path: Path) -> None:
    store = Store(tmp_path / "proxies")
    store.create()
    m = manifest()
    store.begin(m)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(m.to_json())
    (store.dir(m.key) / MANIFEST).unlink()
    (store.dir(m.key) / MANIFEST).symlink_to(elsewhere)
    assert store.manifest(m.key) is None
    segment = store.segment_path(m.key, 0)
    segment.symlink_to(elsewhere)
    with pytest.raises(StoreError):
        open_nofollow(segment)
    other = tmp_path / "dir"
    other.mkdir()
    linked = "f" * 32
    (store.root / linked).symlink_to(other)
    assert store.manifest(linked) is None
    store.remove(linked)
    assert other.is_dir() and not (store.root / linked).exists()


def test_a_segment_table_that_points_outside_its_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "seg"
    data = pack_segment([(0, b"abc"), (512, b"defg")])
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert [(p, s) for p, _, s in read_table(fd, len(data))] == [(0, 3), (512, 4)]
        with pytest.raises(StoreError):
            read_table(fd, len(data) - 1)
    finally:
        os.close(fd)
    path.write_bytes(pack_segment([(5, b"a"), (5, b"b")]))  # pts not increasing
    assert_table_refused(path)
    path.write_bytes(b"FEPX\x01\x00\x00\x00\xff\xff\xff\xff")
    assert_table_refused(path)


def assert_table_refused(path: Path) -> None:
    """The whole file's segment table is refused (each bad table is written over the same file, read afresh)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(StoreError):
            read_table(fd, path.stat().st_size)
    finally:
        os.close(fd)


def test_writes_are_whole_and_clean_removes_what_a_crash_leaves(tmp_path: Path) -> None:
    store = Store(tmp_path / "proxies")
    store.create()
    m = manifest()
    store.begin(m)
    store.add_segment(m, [(0, b"x" * 100), (512, b"y" * 100)])
    assert sorted(os.listdir(store.dir(m.key))) == [MANIFEST, "seg-000000.bin"]
    # what a maker killed mid-write leaves: a temp file, a segment renamed but not yet listed
    (store.dir(m.key) / ".tmp-seg-000001.bin-123").write_bytes(b"half")
    store.segment_path(m.key, 1).write_bytes(pack_segment([(1024, b"z")]))
    (store.root / ".tmp-stray").write_bytes(b"")
    (store.root / "not-a-key").mkdir()
    orphan = "a" * 32
    (store.root / orphan).mkdir()  # a proxy begun but without its manifest
    removed = store.clean()
    assert sorted(os.listdir(store.root)) == [m.key]
    assert sorted(os.listdir(store.dir(m.key))) == [MANIFEST, "seg-000000.bin"]
    assert orphan in removed and f"{m.key}/seg-000001.bin" in removed
    assert store.manifest(m.key).segments == [(0, 512, 2)]  # type: ignore[union-attr]


def test_eviction_removes_the_least_recently_used_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "proxies", budget=0)
    store.create()
    keys = []
    for n in range(3):
        m = manifest(key=f"{n:032x}")
        store.begin(m)
        store.add_segment(m, [(0, os.urandom(64 * 1024))])
        keys.append(m.key)
    now = time.time()
    for age, key in zip((300, 100, 200), keys, strict=True):
        os.utime(store.dir(key) / MANIFEST, (now - age, now - age))
    one = next(e.bytes for e in store.entries() if e.key == keys[0])
    store.touch(keys[0])  # used just now: the newest
    assert store.evict(budget=2 * one) == [keys[2]]  # the oldest of the others
    assert store.evict(keep={keys[1]}, budget=0) == [keys[0]]
    assert [e.key for e in store.entries()] == [keys[1]]


def test_a_worker_finds_a_proxy_by_its_file_as_it_is_made_and_never_for_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ProxyReader.for_file: the index by file follows the store (a proxy begun after the first look is found,
    one whose manifest was not written yet when listed is looked at again), and a replaced file finds nothing."""
    from flipedit_previewd.proxy import reader as reader_module
    from flipedit_previewd.proxy.reader import ProxyReader

    source = tmp_path / "clip.mp4"
    source.write_bytes(b"x" * 100)
    st = os.stat(source)
    ident = Identity.of(st, "h264", 1920, 1080, Fraction(1, 15360), Fraction(30))
    store = Store(tmp_path / "proxies")
    store.create()
    monkeypatch.setattr(reader_module, "RELOAD_AFTER", 0.0)  # what is not there is looked for again at once
    reader = ProxyReader(store)
    assert reader.for_file(st, Params()) is None  # nothing made yet
    made = Manifest(
        key_of(ident, Params()), ident, Params(), 1280, 720, None, Fraction(1, 15360), 0, shown=(1920, 1080)
    )
    store.begin(made)  # begun after the worker first looked: the store's folder changed
    assert reader.for_file(st, Params()) is None  # listed, but no segment made yet: nothing to serve
    made.segments.append((0, 29 * 512, 30))
    store.write_manifest(made)
    found = reader.for_file(st, Params())
    assert found is not None and found.key == made.key and found.shown == (1920, 1080)
    assert reader.for_file(st, Params(width=640, height=360)) is None  # another proxy size: another proxy

    # a folder listed before its manifest was written is looked at again
    other = tmp_path / "other.mp4"
    other.write_bytes(b"y" * 50)
    st2 = os.stat(other)
    ident2 = Identity.of(st2, "h264", 640, 360, Fraction(1, 15360), Fraction(30))
    second = Manifest(key_of(ident2, Params()), ident2, Params(), 640, 360, None, Fraction(1, 15360), 0)
    second.segments.append((0, 512, 2))
    (store.root / second.key).mkdir()
    assert reader.for_file(st2, Params()) is None  # listed without a manifest
    store.write_manifest(second)
    assert (found2 := reader.for_file(st2, Params())) is not None and found2.key == second.key

    # the file replaced (another inode, size and time): its old proxy is never found for it
    source.unlink()
    source.write_bytes(b"z" * 100)
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert reader.for_file(os.stat(source), Params()) is None
