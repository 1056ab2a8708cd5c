"""One self-describing JSON record per run, written atomically.

Schema (``schema_version`` 1; later versions only add fields)::

    run_id, status (ok | oom | error | timeout), error {type, message, traceback} | null,
    config   — the resolved RunSpec,
    metrics  — peak_memory_gb, memory_kind, tokens_per_s, samples_per_s, mfu, train_loss_first,
               train_loss_last, task_score, task_score_base, task_score_stderr, trainable_params,
               total_params, wall_s, … (method-specific figures documented in README)
    hardware — device, device_name, cpu_count, memory_gb, …
    provenance — tunebench_version, git_commit, git_dirty, packages{…}, python, started_at, finished_at
    artifacts — [{kind, path, bytes}] (may be empty)
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

SCHEMA_VERSION = 1
STATUSES = ("ok", "oom", "error", "timeout")
PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "lm_eval", "datasets", "hydra-core")
REPO_DIR = Path(__file__).resolve().parent.parent


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


def _clean(value):
    """JSON has no NaN/inf: store them as null so every reader can parse the record."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json_atomic(path: Path, data: dict) -> Path:
    """Write to a temp file in the same directory, fsync, then rename over ``path``.

    Readers see the old file or the new one, never half of one; a crash leaves at most a
    hidden ``.<name>.*.tmp`` file, which loaders ignore and the next sweep start removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(data), f, indent=2, sort_keys=False, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; records are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def record_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / f"{run_id}.json"


def write_record(results_dir: str | Path, record: dict) -> Path:
    assert record["status"] in STATUSES, record["status"]
    record.setdefault("schema_version", SCHEMA_VERSION)
    return write_json_atomic(record_path(results_dir, record["run_id"]), record)


def read_record(path: str | Path) -> dict:
    """Parse a record (JSON only, never pickle); ValueError names what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path.name}: not a readable JSON record ({e})") from None
    if not isinstance(data, dict) or "run_id" not in data or data.get("status") not in STATUSES:
        raise ValueError(f"{path.name}: not a tunebench run record (no run_id/status)")
    return data
