"""Where things live: the config tree, shipped data, the user cache, and whether results can be written there."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import sweeps
from harness.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
ASSETS_DIR = PACKAGE_DIR / "assets"
CONFIG_DIR = Path(sweeps.__file__).resolve().parent


def cache_dir() -> Path:
    """``$TUNEBENCH_CACHE``, else ``$XDG_CACHE_HOME/tunebench``, else ``~/.cache/tunebench``."""
    root = os.environ.get("TUNEBENCH_CACHE")
    if root:
        path = Path(root)
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tunebench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_writable(results_dir: str) -> Path:
    """Fail before any work when results can't be written: create the folder, write and remove a file."""
    path = Path(results_dir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tunebench-write-check.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"results_dir={results_dir} is not a writable directory ({e.strerror or e})") from None
    return path
