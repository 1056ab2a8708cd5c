"""Shared fixtures: tiny runs in-process (fast) and the CLI in a subprocess (real exit codes)."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="session")
def measured(tmp_path_factory) -> dict:
    """One real tiny run with both shipped probes (general_mc: accuracy, general_ppl: perplexity),
    read back from its record file: the contract and measurement tests start from what was written."""
    from harness.config import load_spec
    from harness.run import execute

    root = tmp_path_factory.mktemp("measured")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNEBENCH_CACHE", str(root / "cache"))
        spec = load_spec([*TINY, "train.max_steps=4", "eval.probes=[general_mc,general_ppl]", "eval.probe_limit=16",
                          f"results_dir={root / 'runs'}"])
        rec = execute(spec)
    assert rec["status"] == "ok", rec["error"]
    on_disk = json.loads((root / "runs" / f"{rec['run_id']}.json").read_text())
    m = on_disk["metrics"]
    assert m["tokens_per_s"] > 0 and m["peak_memory_gb"] > 0 and m["mfu"] > 0
    assert set(m["forgetting"]) == {"general_mc", "general_ppl"}
    return on_disk


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


@pytest.fixture
def run_cli(capsys):
    """``advisor …`` in-process: (exit code, stdout, stderr)."""
    from advisor.cli import main

    def run(*args: str):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
