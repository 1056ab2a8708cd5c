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
# One compute thread per process (before torch loads; a setting of the caller's stands). The tiny
# models' ops are too small to gain from a second thread, and on shared cores a 2-thread op waits for
# its slower thread: tests/test_methods.py's LoRA/QLoRA learning tests took 20.7 s with 2 threads
# and 9.3 s with 1 on 2 cores another job was using. Subprocesses (runs, sweep points) inherit it;
# sweep points of launcher.parallel=N set their own (harness/sweep/slots.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# Tiny runs: the random-init model learns visibly only with a large learning rate.
TINY = ["debug=smoke", "train.lr=5e-3"]


TINY_ARCH = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 1024}  # sweeps/model/tiny.yaml + the tiny tokenizer's 1,024 ids


def tiny_flops_per_token(arch: dict, seq_len: float, *, trains_base: bool, adapter_params: int) -> float:
    """Training FLOPs per token of the tiny Llama, counted by hand (not through advisor.facts):

        per layer  q, o: 2·64·64 = 8,192   k, v: 2·64·(2 heads · 16) = 4,096   MLP: 3·64·128 = 24,576
        N = 2 layers · 36,864 + LM head 64·1,024 = 139,264 weights in a matmul (embedding lookup: free)
        weights: 6N when the base trains (forward 2N, input grads 2N, weight grads 2N), 4N when it is
                 frozen (no weight grads), + 6 per adapter weight
        attention scores QKᵀ and AV: 2·2·T·64 per layer forward, ×3 with backward → 12·2·64·T = 1,536·T

    FlopCounterMode agrees for full fine-tuning at T = 64: 6·139,264 + 1,536·64 = 933,888 (tests/test_measure.py).
    """
    assert {k: arch[k] for k in TINY_ARCH} == TINY_ARCH, arch
    return (6 if trains_base else 4) * 139_264 + 1_536 * seq_len + 6 * adapter_params


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
