"""The one way the harness writes a file or a directory: a reader sees all of it or none of it.

Both writers follow one procedure:

1. build the new content in a hidden temp sibling (``.<name>.*.tmp``, same directory, so the
   final rename never crosses a filesystem);
2. ``fsync`` it (every file, then the directory), and give it shareable modes
   (0644 files, 0755 directories: ``mkstemp``/``mkdtemp`` make 0600/0700);
3. publish it with one ``rename``, then ``fsync`` the parent so the rename survives a power cut.

**The race rule, the same for files and directories: the first complete result wins.** A write
replaces what stood at the destination *when the write began* (a record rewritten as its run
ends, an artifact saved again by the same run id). If another writer published to the same
destination *while* ours was being built, that one is kept and ours is dropped: it is as
complete as ours, and a slower writer must not throw away a finished result. For a destination
that did not exist when we began this is exact (``link``/``rename`` fail on an existing target);
for one we replace, the check and the rename are a few microseconds apart, and either way the
destination holds one complete result, never a mix.

An interrupted write (an exception, Ctrl-C, ``kill -9``) leaves the old content as it was and
at most a hidden ``*.tmp`` sibling, which loaders skip and the next sweep start removes
(``harness/sweep/plan.py``).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

FILE_MODE, DIR_MODE = 0o644, 0o755


def _identity(path: Path) -> tuple[int, int] | None:
    """What stands at ``path`` now (device, inode), None when nothing: a rename changes the inode."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems cannot open a directory for fsync; the rename still stands
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# ---------------------------------------------------------------- files


def _publish_file(tmp: Path, path: Path, seen: tuple[int, int] | None) -> bool:
    """Rename ``tmp`` to ``path`` unless another writer published there since we saw ``seen``."""
    if seen is None:
        try:
            os.link(tmp, path)  # fails if the path appeared meanwhile; rename would overwrite it
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: check, then rename
            if _identity(path) is not None:
                return False
            os.replace(tmp, path)
            return True
        os.unlink(tmp)
        return True
    if _identity(path) != seen:
        return False
    os.replace(tmp, path)
    return True


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module's race rule); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen = _identity(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        _publish_file(tmp, path, seen)
    finally:
        _unlink(tmp)  # gone already when ours was published; dropped when another writer won
    _fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def jsonable(value):
    """JSON has no NaN/inf: store them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def to_json(data) -> str:
    """The text ``write_json`` writes: indented, NaN/inf as null, key order kept, newline-terminated."""
    return json.dumps(jsonable(data), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: str | Path, data) -> Path:
    """Write ``data`` as JSON to ``path`` atomically: readers see the old file or the new one."""
    return write_text(path, to_json(data))


# ---------------------------------------------------------------- directories


def _settle(tree: Path) -> None:
    """Shareable modes and everything on disk before the rename publishes it."""
    for p in sorted(tree.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # files before their dirs
        if p.is_symlink():
            continue
        if p.is_dir():
            os.chmod(p, DIR_MODE)
            _fsync_dir(p)
        else:
            os.chmod(p, FILE_MODE)
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    os.chmod(tree, DIR_MODE)
    _fsync_dir(tree)


def _published(path: Path) -> bool:
    """A directory stands there with something in it (an empty one is a placeholder, not a result)."""
    try:
        return path.is_dir() and any(path.iterdir())
    except OSError:
        return False


def _publish_dir(tmp: Path, final: Path, seen: tuple[int, int] | None) -> bool:
    if seen is not None:  # replace what stood there when we began, unless someone replaced it since
        if _identity(final) != seen:
            return False
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{tmp.name[-8:]}")
        try:
            os.rename(final, old)  # a directory cannot be renamed over a full one: move it aside
        except FileNotFoundError:  # another writer moved it aside first: theirs comes next
            return False
        try:
            os.rename(tmp, final)
        except OSError:  # theirs landed in between: keep it
            shutil.rmtree(old, ignore_errors=True)
            return False
        shutil.rmtree(old, ignore_errors=True)
        return True
    try:
        os.rename(tmp, final)  # fails on a non-empty directory that appeared meanwhile
    except OSError as e:
        # Another writer's build stands there, or is between moving the old one aside and renaming
        # its own in (final absent for an instant, so this rename met the one before): theirs lands.
        if _published(final) or e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


def write_dir(final: str | Path, build: Callable[[Path], None], *, replace: bool = False) -> Path:
    """Build a directory with ``build(tmp)`` and publish it as ``final`` (see the race rule).

    ``replace=False`` (a cache keyed by its content): a directory already at ``final`` is
    complete (only this writer publishes there), so it is returned without building.
    ``replace=True`` (the same run saved again): the old directory is replaced by the new one.
    """
    final = Path(final)
    if not replace and _published(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    seen = _identity(final) if _published(final) else None
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        build(tmp)
        _settle(tmp)
        _publish_dir(tmp, final, seen)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when ours was published
    _fsync_dir(final.parent)
    return final
