"""Shared fixtures: tiny runs in-process (fast) and the CLI in a subprocess (real exit codes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Tiny runs: the random-init model learns visibly only with a large learning rate.
TINY = ["debug=smoke", "train.lr=5e-3"]


@pytest.fixture
def results_dir(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def run_tiny(results_dir):
    """Run one tiny config in this process; returns the record dict."""

    def run(*overrides: str) -> dict:
        from harness.config import load_spec
        from harness.run import execute

        spec = load_spec([*TINY, f"results_dir={results_dir}", *overrides])
        return execute(spec)

    return run


def cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m harness …`` in a subprocess, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
