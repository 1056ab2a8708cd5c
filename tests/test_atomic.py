"""The one atomic writer (harness/atomic.py): an interrupted write leaves the old content, and two
writers of one destination leave one complete result (the first one published)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from harness import atomic


def _half_then_crash(monkeypatch):
    """The next file write puts half its bytes on disk, then fails (disk full, Ctrl-C, …)."""
    real = os.fdopen

    class Half:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Half(real(fd, mode)))


def test_an_interrupted_file_write_leaves_the_old_content(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    atomic.write_json(path, {"x": 1})
    _half_then_crash(monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_json(path, {"x": 2, "long": "y" * 1000})
    assert json.loads(path.read_text()) == {"x": 1}
    assert os.listdir(tmp_path) == ["r.json"]  # no temp file left either


def test_an_interrupted_directory_write_leaves_the_old_directory(tmp_path):
    final = tmp_path / "art"
    atomic.write_dir(final, lambda d: (d / "a.txt").write_text("old"))

    def crash(d: Path):
        (d / "a.txt").write_text("new")
        raise KeyboardInterrupt  # half-way through the build

    with pytest.raises(KeyboardInterrupt):
        atomic.write_dir(final, crash, replace=True)
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"] and (final / "a.txt").read_text() == "old"
    assert os.listdir(tmp_path) == ["art"]


def test_replace_swaps_a_whole_directory_and_a_cache_entry_is_built_once(tmp_path):
    final = tmp_path / "art"
    atomic.write_dir(final, lambda d: (d / "old.txt").write_text("1"))
    atomic.write_dir(final, lambda d: (d / "new.txt").write_text("2"), replace=True)
    assert [p.name for p in final.iterdir()] == ["new.txt"]  # nothing of the old one mixed in
    atomic.write_dir(final, lambda d: pytest.fail("a complete cache entry is not rebuilt"))
    assert oct(final.stat().st_mode & 0o777) == oct(atomic.DIR_MODE)
    assert oct((final / "new.txt").stat().st_mode & 0o777) == oct(atomic.FILE_MODE)
    assert os.listdir(tmp_path) == ["art"]


@pytest.mark.parametrize("replace", [False, True])
def test_a_directory_published_while_ours_was_built_is_kept(tmp_path, replace):
    """The race rule, made deterministic: another writer publishes while our build runs."""
    final = tmp_path / "art"
    if replace:
        atomic.write_dir(final, lambda d: (d / "f").write_text("old"))

    def ours(d: Path):
        atomic.write_dir(final, lambda o: [(o / n).write_text("theirs") for n in ("f", "g")], replace=replace)
        (d / "f").write_text("ours")

    atomic.write_dir(final, ours, replace=replace)
    assert {p.name: p.read_text() for p in final.iterdir()} == {"f": "theirs", "g": "theirs"}
    assert os.listdir(tmp_path) == ["art"]


def test_a_directory_met_while_another_writer_replaces_it_is_theirs(tmp_path, monkeypatch):
    """Our rename meets their directory (ENOTEMPTY), and by the time we look it is gone: a third writer has
    moved it aside to put its own in. That writer's build lands; ours stands down instead of raising."""
    final = tmp_path / "art"
    real_rename = os.rename

    def rename(src, dst):
        if Path(dst) == final and Path(src).name.endswith(".tmp"):
            try:
                real_rename(src, dst)
            except OSError:
                real_rename(final, tmp_path / ".art.old-third")  # the third writer's first step, after our attempt
                raise
        return real_rename(src, dst)

    def ours(d: Path):
        atomic.write_dir(final, lambda o: (o / "f").write_text("theirs"))  # published while ours was built
        (d / "f").write_text("ours")

    monkeypatch.setattr(atomic.os, "rename", rename)
    atomic.write_dir(final, ours)  # no OSError: the directory is another writer's to finish
    monkeypatch.setattr(atomic.os, "rename", real_rename)
    assert not final.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("existed", [False, True])
def test_a_file_published_while_ours_was_written_is_kept(tmp_path, monkeypatch, existed):
    path = tmp_path / "r.json"
    if existed:
        atomic.write_json(path, {"who": "old"})
    real, fired = os.fsync, []

    def fsync_after_them(fd):  # another writer publishes while ours is being flushed
        if not fired:
            fired.append(1)
            atomic.write_json(path, {"who": "theirs"})
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync_after_them)
    atomic.write_json(path, {"who": "ours"})
    assert json.loads(path.read_text()) == {"who": "theirs"}
    assert os.listdir(tmp_path) == ["r.json"]


def test_concurrent_writers_leave_one_complete_result(tmp_path):
    """Eight threads write one file and one directory at once, each many times: every read of the
    file sees one writer's complete content, the directory ends as one writer's whole build, and
    no temp file or set-aside directory is left."""
    path, final = tmp_path / "r.json", tmp_path / "art"
    start = threading.Barrier(8)
    errors = []

    def writer(i: int):
        try:
            start.wait()
            for k in range(20):
                atomic.write_json(path, {"writer": i, "k": k, "pad": [i] * 2000})
                atomic.write_dir(final, lambda d: [(d / f"{n}.txt").write_text(f"{i}" * 5000) for n in range(3)], replace=True)
                data = json.loads(path.read_text())  # a file is read whole while others write it
                assert data["pad"] == [data["writer"]] * 2000
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(os.listdir(tmp_path)) == ["art", "r.json"]
    texts = [p.read_text() for p in final.iterdir()]
    assert len(texts) == 3 and len(set(texts)) == 1 and len(texts[0]) == 5000
