"""The measurements against independent oracles: FLOPs per token against torch's FlopCounterMode,
tokens/s against synthetic step times, MFU against FLOPs counted by hand (GPU peaks against their
datasheets: tests/test_facts.py), and the memory budget
bracketed by a run's measured growth (plus the watchdog's hard stop).

FLOPs per token, harness formula (``measure.flops_per_token``) vs ``FlopCounterMode`` on one
training step (forward + backward) of the tiny Llama, batch 4 × 64 unpadded tokens, eager
attention (the counter has no formula for the CPU SDPA kernel, so it would miss attention):

    method  formula   counter   counter/formula   why they differ (by design)
    full    933,888   933,888   1.000             they agree: 6N + 12·L·T·d
    lora    851,968   829,440   0.974             layer 0's q/k/v read the frozen embedding: no input
                                                  gradient there (2 × their weights + lora_A); 0.2% on SmolLM2
    qlora   851,968   681,984   0.800             = lora − 2·N_4bit: bitsandbytes' 4-bit forward matmul is its
                                                  own op, invisible to the counter (the backward is a plain mm)
    dora    858,112   1,127,424 1.314             PEFT recomputes the base forward on the dropped-out input
                                                  (dropout 0.05) and its weight norm through an identity
                                                  matrix: implementation work, excluded from MFU as
                                                  activation recomputation is (PaLM's MFU counts model FLOPs)
    dora    858,112   848,896   0.989             with dropout 0: = lora + the weight norm once per step,
     (p=0)                                        2·r·in·(in+out) per module through eye(in), no backward
                                                  (PEFT detaches the norm)

The tests assert each relation, so a formula that charges adapters 6N or drops attention fails.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from harness import measure
from harness.measure import StepClock, flops_per_token
from tests.conftest import REPO, TINY, tiny_flops_per_token

B, T = 4, 64


# ---------------------------------------------------------------- FLOPs per token vs FlopCounterMode


def _counted(method: str, *overrides: str) -> tuple[float, float, object]:
    """(counter FLOPs per token, formula FLOPs per token, the prepared model) for one training step."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from harness import models
    from harness.config import load_spec
    from harness.methods import get_method
    from harness.methods.base import count_params

    # one rank for every adapter method, so that lora, qlora and dora compare like with like
    spec = load_spec(["debug=smoke", f"method={method}", "results_dir=/tmp/unused", "method.r=16", *overrides])
    m = get_method(spec.method.name, spec.method.inner)
    loaded = models.load(spec.model, seed=0, dtype=torch.float32, device="cpu", **m.load_kwargs(spec.method))
    loaded.model.config._attn_implementation = "eager"  # attention as bmm, which the counter knows
    model = m.prepare(loaded.model, spec.method, spec.train)
    model.train()
    ids = torch.randint(0, loaded.arch["vocab_size"], (B, T), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    trainable, _ = count_params(model)
    formula = flops_per_token(loaded.arch, T, trains_base=m.capabilities.trains_base,
                              adapter_params=0 if m.capabilities.trains_base else trainable)
    return counter.get_total_flops() / (B * T), formula, model


def _first_layer_qkv(model) -> int:
    """Weights (base + lora_A) of layer 0's q/k/v: their input is the frozen embedding's output."""
    layer = model.base_model.model.model.layers[0].self_attn
    n = 0
    for proj in (layer.q_proj, layer.k_proj, layer.v_proj):
        n += proj.base_layer.weight.numel() + proj.lora_A["default"].weight.numel()
    return n


def test_flops_full_fine_tuning_match_the_counter():
    counted, formula, _ = _counted("full")
    assert counted == pytest.approx(formula, rel=1e-9)


def test_flops_lora_match_the_counter_but_for_the_first_layer():
    counted, formula, model = _counted("lora")
    assert counted == pytest.approx(formula - 2 * _first_layer_qkv(model), rel=1e-9)
    assert counted == pytest.approx(formula, rel=0.03)  # the stated tolerance on the tiny model


def test_flops_qlora_differ_from_lora_by_the_invisible_4bit_forward():
    """Same adapters as LoRA; the counter sees the 4-bit layers' backward (a plain mm on the
    dequantized weight) but not their forward (bitsandbytes' own matmul op)."""
    from bitsandbytes.nn import Linear4bit

    q_counted, q_formula, qmodel = _counted("qlora")
    l_counted, l_formula, _ = _counted("lora")
    assert q_formula == l_formula  # the formula charges QLoRA as LoRA: same math, other storage
    n4 = sum(m.in_features * m.out_features for m in qmodel.modules() if isinstance(m, Linear4bit))
    assert n4 > 0 and q_counted == pytest.approx(l_counted - 2 * n4, rel=1e-9)


def test_flops_dora_are_lora_plus_the_weight_norm():
    """Without dropout, DoRA = LoRA + the weight norm, computed once per step through an identity
    matrix (eye(in) → lora_A → lora_B: 2·r·in·(in + out) per module), detached (no backward)."""
    d_counted, d_formula, dmodel = _counted("dora", "method.dropout=0.0")
    l_counted, _, _ = _counted("lora", "method.dropout=0.0")
    r = dmodel.peft_config["default"].r
    norm = sum(2 * r * mod.in_features * (mod.in_features + mod.out_features)
               for mod in dmodel.modules() if hasattr(mod, "lora_magnitude_vector") and hasattr(mod, "in_features"))
    assert norm > 0 and d_counted == pytest.approx(l_counted + norm / (B * T), rel=1e-9)
    assert d_counted == pytest.approx(d_formula, rel=0.05)


# ---------------------------------------------------------------- tokens/s excludes the warm-up


def test_stepclock_excludes_exactly_the_warmup_steps(monkeypatch):
    # Steps take 10 s, 5 s (warm-up: compilation, allocator growth), then 1 s each; 100 tokens a step.
    times = iter([0.0, 10.0, 15.0, 16.0, 17.0, 18.0, 19.0])
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(times))
    clock = StepClock("cpu", skip=2)
    clock.begin()
    for step in range(1, 7):
        clock.step_end(tokens_seen=100 * step, samples_seen=4 * step)
    s = clock.summary()
    assert s["tokens_per_s"] == pytest.approx(400 / 4.0)  # steps 3-6: 400 tokens in 4 s, not 600 in 19 s
    assert s["samples_per_s"] == pytest.approx(16 / 4.0)
    assert s["step_s"] == pytest.approx(1.0) and s["measured_steps"] == 4 and s["train_s"] == pytest.approx(19.0)
    assert s["tokens_trained"] == 600


def test_stepclock_keeps_one_measured_step_when_the_run_is_short(monkeypatch):
    times = iter([0.0, 3.0, 5.0])
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(times))
    clock = StepClock("cpu", skip=5)
    clock.begin()
    clock.step_end(50, 1)
    clock.step_end(150, 2)
    s = clock.summary()
    assert s["measured_steps"] == 1 and s["tokens_per_s"] == pytest.approx(100 / 2.0)


def test_stepclock_tells_how_much_of_the_cpus_other_processes_took():
    """A timed step run alone, then one run beside a spinning process per core: the clock's share of the
    machine's CPU time used elsewhere tells them apart, and the run's printout flags the second."""
    import time

    import psutil

    from harness.console import busy_note

    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    def timed(spinners: int) -> float:
        clock = StepClock("cpu", skip=1)
        clock.begin()
        spin(0.1)
        clock.step_end(1, 1)  # warm-up: not in the window
        # started by a shell that exits: other processes, not this one's children (a launched job's ranks count as its own)
        loop = f"for i in $(seq {spinners}); do {sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!; done"
        pids = [int(x) for x in subprocess.run(["sh", "-c", loop], capture_output=True, text=True, check=True).stdout.split()]
        try:
            time.sleep(0.3)
            spin(0.8)
            clock.step_end(2, 2)
        finally:
            for pid in pids:
                os.kill(pid, 9)
        return clock.summary()["cpu_busy_elsewhere"]

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else psutil.cpu_count() or 1
    busy = psutil.cpu_percent(interval=0.5) / 100  # judged apart from the clock under test
    if busy > 0.2:
        pytest.skip(f"other processes already use {busy:.0%} of this machine's CPUs")
    alone = timed(0)
    crowded = timed(cpus)  # the spinners inherit this process's CPUs (affinity)
    assert 0 <= alone < 0.25 and crowded > 0.4 and crowded - alone > 0.3, (alone, crowded)  # alone: its own spin is not counted
    assert "other processes used" in busy_note({"cpu_busy_elsewhere": crowded}) and busy_note({"cpu_busy_elsewhere": 0.02}) == ""
    assert "cpu_busy_elsewhere" not in StepClock("cuda").summary()


# ---------------------------------------------------------------- MFU against FLOPs counted by hand


def test_mfu_is_flops_per_token_times_tokens_per_s_over_peak(measured):
    """The record's MFU against FLOPs counted by hand (tests/conftest.py), not advisor.facts: a LoRA
    run on the tiny Llama trains 4N + 1,536·T + 6·adapter FLOPs per token at its mean length T, so
    charging it 6N, using max_seq_len for T, dropping the adapter or the attention term, or a peak
    in the wrong unit each fails here."""
    m, cfg = measured["metrics"], measured["config"]
    t = cfg["train"]
    assert cfg["method"]["name"] == "lora" and 0 < m["trainable_params"] < m["total_params"]
    samples = m["steps"] * t["batch_size"] * t["grad_accum"]
    seq = m["tokens_trained"] / samples  # the mean non-padding length actually trained on
    assert m["mean_seq_len"] == pytest.approx(seq) and seq < t["max_seq_len"]
    fpt = tiny_flops_per_token(measured["model_arch"], seq, trains_base=False, adapter_params=m["trainable_params"])
    assert m["flops_per_token"] == pytest.approx(fpt, rel=1e-9)
    assert m["achieved_tflops"] == pytest.approx(fpt * m["tokens_per_s"] / 1e12, rel=1e-9)
    # The CPU peak is measured (a 1024² fp32 matmul): a CPU core does 1e9-1e12 FLOP/s, not 1e12× that.
    assert m["peak_flops_source"].startswith("measured:matmul-1024-fp32")
    assert 1e-3 < m["peak_tflops"] < 100
    assert m["mfu"] == pytest.approx(fpt * m["tokens_per_s"] / (m["peak_tflops"] * 1e12), rel=1e-9)
    assert 0 < m["mfu"] < 1  # a tiny model's step is mostly overhead: far from the matmul peak


# ---------------------------------------------------------------- the memory budget, bracketed


def _cli_run(tmp_path, name: str, *overrides: str) -> tuple[int, dict]:
    """A tiny run in a fresh process, as the sweep runner starts every point (RSS growth is per process)."""
    out = tmp_path / name
    res = subprocess.run([sys.executable, "-m", "harness", *TINY, "eval.enabled=false", f"results_dir={out}", *overrides],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    (path,) = out.glob("*.json")
    return res.returncode, json.loads(path.read_text())


def _cli_runs(tmp_path, runs: dict[str, list[str]]) -> list[tuple[int, dict]]:
    """``_cli_run`` of several runs at once, each in its own process; (exit code, record) in order."""
    procs = {name: subprocess.Popen([sys.executable, "-m", "harness", *TINY, "eval.enabled=false", f"results_dir={tmp_path / name}",
                                     *overrides], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "PYTHONWARNINGS": "ignore"}) for name, overrides in runs.items()}
    out = []
    for name, proc in procs.items():
        code = proc.wait(timeout=300)
        (path,) = (tmp_path / name).glob("*.json")
        out.append((code, json.loads(path.read_text())))
    return out


def test_memory_budget_is_bracketed_by_the_measured_growth(tmp_path):
    code, free = _cli_run(tmp_path, "free", "train.max_steps=3")
    assert code == 0 and free["status"] == "ok"
    grew = free["metrics"]["peak_memory_gb"]
    assert free["metrics"]["memory_kind"] == "cpu_rss_delta" and grew > 0.01  # imports + model + optimizer: ~0.1 GB

    # 1.5× the growth of the same run: fits. (Absolute RSS, ~0.5 GB of torch alone, would not.)
    # A third of it: out of memory. The two run at once: each process's growth is its own.
    budget = grew / 3
    (_, roomy), (code, tight) = _cli_runs(tmp_path, {"roomy": ["train.max_steps=3", f"budget_gb={1.5 * grew:.4f}"],
                                                     "tight": ["train.max_steps=3", f"budget_gb={budget:.4f}"]})
    assert roomy["status"] == "ok", roomy["error"]
    assert roomy["metrics"]["peak_memory_gb"] <= 1.5 * grew

    # The record of the one out of memory has a peak at least the budget it broke.
    assert tight["status"] == "oom", tight["error"]
    assert tight["metrics"]["peak_memory_gb"] >= round(budget, 4)
    assert "budget" in tight["error"]["message"]


HARD_STOP = r"""
import json, sys, time
from harness import watchdog
from harness.provenance import now, provenance

class ClimbingMemory:  # 0 GB until polled twice, then 10 GB: a C call that keeps allocating
    device = "cpu"
    def __init__(self): self.polls = 0
    def current_gb(self):
        self.polls += 1
        return 0.0 if self.polls < 3 else 10.0
    def peak(self): return {"peak_memory_gb": 10.0, "memory_kind": "cpu_rss_delta"}

record = {"run_id": "climb", "status": "error", "error": None, "config": {}, "metrics": {},
          "hardware": {}, "provenance": provenance(now()), "artifacts": []}
dog = watchdog.Watchdog(ClimbingMemory(), 1.0, record=record, results_dir=sys.argv[1]).start()
deadline = time.monotonic() + 20
while time.monotonic() < deadline:  # a library's broad except swallows the soft signal
    try:
        time.sleep(0.01)
    except MemoryError:
        pass
print("not stopped")
"""


def test_an_error_a_library_raised_over_the_watchdogs_signal_is_the_budgets_oom():
    """The watchdog's MemoryError landed inside a library that raised its own error instead (transformers'
    tokenizer loading turns any failure into "Can't load tokenizer"): the run is still over budget."""
    from harness import watchdog
    from harness.run import failure

    class Memory:
        device = "cpu"

    guard = watchdog.Watchdog(Memory(), 0.01)
    wrapped = OSError("Can't load tokenizer for '/cache/tiny'")
    assert failure(wrapped, guard)[0] == "error"  # not tripped: the library's error is the run's error
    guard.tripped_gb = 0.4  # what _watch sets before it signals
    status, error = failure(wrapped, guard)
    assert status == "oom" and error["type"] == "BudgetExceeded" and "budget_gb=0.01" in error["message"]
    assert "Can't load tokenizer" in error["traceback"]
    assert failure(MemoryError("out of memory"), watchdog.Watchdog(Memory(), None))[0] == "oom"


def test_watchdog_hard_stops_a_run_whose_memory_keeps_climbing(tmp_path):
    """Past 1.25 × budget + 1 GB after the soft signal, the watchdog writes the oom record and exits 75."""
    from harness.watchdog import EXIT_OOM

    res = subprocess.run([sys.executable, "-c", HARD_STOP, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == EXIT_OOM, res.stdout + res.stderr[-2000:]
    assert "not stopped" not in res.stdout and "did not unwind" in res.stderr
    rec = json.loads((tmp_path / "climb.json").read_text())
    assert rec["status"] == "oom" and rec["error"]["type"] == "BudgetExceeded"
    assert rec["metrics"]["peak_memory_gb"] >= 1.0 and math.isfinite(rec["metrics"]["peak_memory_gb"])


def test_cpu_peak_flops_keeps_the_best_measurement_so_a_busy_moment_cannot_poison_it(tmp_path, monkeypatch):
    # A peak measured while another process held the cores is too low; trusted forever it made
    # every later MFU exceed 100%. Each run measures again and the cache keeps the maximum.
    from harness.measure import cpu_peak_flops

    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path))
    busy, idle = 5.8e10, 1.9e11
    assert cpu_peak_flops("fp32", 1, measure=lambda dtype: busy) == busy
    assert cpu_peak_flops("fp32", 1, measure=lambda dtype: idle) == idle
    assert cpu_peak_flops("fp32", 1, measure=lambda dtype: busy) == idle
    (tmp_path / "cpu_peak_flops.json").write_text("{not json")
    assert cpu_peak_flops("fp32", 1, measure=lambda dtype: busy) == busy
    # and the real measurement is a positive figure
    assert cpu_peak_flops("fp32", 1) > 0
