"""Where a result came from: the tunebench version and git commit that produced it, the package
versions it ran with, the Python, and when it started and finished (a record's ``provenance``).

``harness regress`` diffs these between two result sets (a changed torch explains a changed
figure); ``git_dirty`` says whether the commit alone reproduces it.
"""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TypedDict

PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "lm_eval", "datasets", "hydra-core")
REPO_DIR = Path(__file__).resolve().parent.parent


class Provenance(TypedDict):
    tunebench_version: str
    git_commit: str | None
    git_dirty: bool | None
    packages: dict[str, str | None]
    python: str
    started_at: str
    finished_at: str | None


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(*args: str) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def provenance(started_at: str) -> dict:
    from harness import __version__

    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "tunebench_version": __version__,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if dirty is None else bool(dirty),
        "packages": package_versions(),
        "python": platform.python_version(),
        "started_at": started_at,
        "finished_at": None,
    }
