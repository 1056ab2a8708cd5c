"""Where things live: the config tree, shipped data, and the user cache."""

from __future__ import annotations

import os
from pathlib import Path

import sweeps

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
