"""Sweeps: presets compose, every point gets exactly one record whatever happens to it, and a
sweep killed with SIGKILL resumes without losing or duplicating a point, one point at a time or
several at once (``launcher.parallel``), whose scheduler never gives a GPU or core to two points.

The runs here are the tiny model's (`sweep=smoke`, seconds per point); each test gets its own
model/score cache (TUNEBENCH_CACHE) so `base_eval_cached` is measured, not inherited.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.config import compose
from harness.paths import CONFIG_DIR
from harness.record import read_record
from harness.sweep import override, plan, run_sweep
from harness.watchdog import EXIT_OOM, BudgetExceeded, Watchdog

REPO = Path(__file__).resolve().parent.parent
PRESETS = sorted(p.stem for p in (CONFIG_DIR / "sweep").glob("*.yaml"))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def records_in(d: Path) -> dict[str, dict]:
    return {p.stem: read_record(p) for p in d.glob("*.json")}


def mtimes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in d.glob("*.json")}


def stray_tmp(d: Path) -> list[Path]:
    return list(d.glob("*.tmp")) + list(d.glob(".*.tmp"))


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_composes_and_each_point_validates(name, tmp_path):
    cfg = compose([f"sweep={name}", f"results_dir={tmp_path}"])
    sweep, points, _ = plan(cfg, [f"sweep={name}"])  # plan composes every point with load_spec
    assert sweep.name == name and sweep.about, f"{name}: say what the sweep is for in sweep.about"
    assert points and len({p.run_id for p in points}) == len(points)
    for p in points:
        assert p.spec.results_dir == str(tmp_path)
        if "method.r=" in p.label:  # a rank is only ever paired with an adapter method
            assert p.spec.method.name in ("lora", "qlora", "dora"), p.label


def test_rank_ablation_is_lora_and_dora_at_seven_ranks_with_alpha_2r(tmp_path):
    _, points, _ = plan(compose(["sweep=rank_ablation", f"results_dir={tmp_path}"]), [])
    got = sorted((p.spec.method.name, p.spec.method.r, p.spec.method.lora_alpha) for p in points)
    assert got == sorted((m, r, 2.0 * r) for m in ("lora", "dora") for r in (1, 2, 4, 8, 16, 32, 64))
    assert {p.spec.model.name for p in points} == {"smollm2-135m"}
    assert {p.spec.train.max_steps for p in points} == {12} and {p.spec.eval.limit for p in points} == {32}


def test_cost_only_models_have_the_advertised_shapes():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.config import load_spec

    expected = {"cost-50m": 49e6, "cost-135m": 134e6, "cost-360m": 362e6, "cost-1b": 1236e6}
    for name, params in expected.items():
        spec = load_spec([f"model={name}"])
        assert spec.model.source == "tiny" and spec.model.scored is False
        with torch.device("meta"):
            n = sum(p.numel() for p in LlamaForCausalLM(LlamaConfig(**spec.model.arch)).parameters())
        assert abs(n - params) / params < 0.01, (name, n)


def test_override_quotes_what_hydra_would_misread():
    assert override("method.r", 4) == "method.r=4"
    assert override("method.alpha", None) == "method.alpha=null"
    assert override("train.grad_checkpointing", True) == "train.grad_checkpointing=true"
    assert override("eval.probes", ["a", "b"]) == "eval.probes=[a,b]"
    assert override("task.train_file", "/a b/x=1.jsonl") == "task.train_file='/a b/x=1.jsonl'"


# ---------------------------------------------------------------- the watchdog


class FakeMem:
    device = "cpu"

    def __init__(self):
        self.gb = 0.0

    def current_gb(self):
        return self.gb

    def peak(self):
        return {"peak_memory_gb": self.gb, "memory_kind": "fake"}


def test_watchdog_raises_oom_in_the_main_thread_and_is_silent_once_stopped():
    mem = FakeMem()
    guard = Watchdog(mem, 1.0).start()
    with pytest.raises(BudgetExceeded, match="budget_gb=1"):
        mem.gb = 1.5
        for _ in range(300):
            time.sleep(0.01)
    guard.stop()
    assert isinstance(BudgetExceeded("x"), MemoryError)  # run.execute records MemoryError as `oom`
    guard = Watchdog(mem, 1.0).start()
    guard.stop()
    time.sleep(0.1)  # over budget, but stopped: nothing is raised


def test_budget_verdict_uses_the_recorded_peak_when_the_signal_was_missed():
    guard = Watchdog(FakeMem(), 1.0)  # never started: as if a spike fell between two polls
    guard.raise_if_tripped(0.5)  # under budget: nothing
    with pytest.raises(BudgetExceeded, match="1.5 GB > budget_gb=1"):
        guard.raise_if_tripped(1.5)
    Watchdog(FakeMem(), None).raise_if_tripped(99.0)  # no budget, no verdict


# ---------------------------------------------------------------- sweeps that run


def _points(d: Path, *extra: str):
    return plan(compose(["sweep=smoke", f"results_dir={d}", *extra]), ["sweep=smoke", *extra])[1]


def test_smoke_sweep_killed_mid_point_resumes_with_one_ok_record_per_point(tmp_path, own_cache, capsys):
    d = tmp_path / "runs"
    points = _points(d)
    cmd = [sys.executable, "-m", "harness", "sweep=smoke", f"results_dir={d}"]
    parent = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import psutil

    # Wait until the first point is recorded and the second one's process is running, then kill -9.
    deadline = time.time() + 240
    child = None
    while time.time() < deadline:
        kids = psutil.Process(parent.pid).children()
        if (d / f"{points[0].run_id}.json").exists() and kids and (d / "logs" / f"{points[1].run_id}.log").exists():
            child = kids[0]
            break
        assert parent.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.2)
    assert child is not None, "the second point never started"
    first_mtime = (d / f"{points[0].run_id}.json").stat().st_mtime_ns
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    psutil.wait_procs([child], timeout=10)
    assert not child.is_running(), "the point's process outlived the killed sweep"
    assert len(records_in(d)) == 1
    # A writer killed between temp file and rename leaves this; the next sweep removes it.
    (d / f".{points[1].run_id}.json.abc123.tmp").write_text('{"half": ')

    # The re-runs in this process (the runner's work is the same; its points are processes as before).
    over = ["sweep=smoke", f"results_dir={d}"]
    assert run_sweep(compose(over), over) == 0, capsys.readouterr().err[-2000:]
    recs = records_in(d)
    assert sorted(recs) == sorted(p.run_id for p in points)  # one record per point, no duplicates
    assert all(r["status"] == "ok" and r["sweep"] == {"name": "smoke"} for r in recs.values())
    assert (d / f"{points[0].run_id}.json").stat().st_mtime_ns == first_mtime, "a finished point was re-run"
    assert not stray_tmp(d)
    # The base model is scored once per sweep: the points after the first read the cache.
    cached = [recs[p.run_id]["metrics"]["base_eval_cached"] for p in points]
    assert cached == [False, True, True]
    assert all(recs[p.run_id]["metrics"]["startup_s"] > 0 for p in points)

    before = mtimes(d)
    capsys.readouterr()
    assert run_sweep(compose(over), over) == 0 and mtimes(d) == before  # idempotent: nothing left to run
    assert "3 skipped" in capsys.readouterr().out


def test_failures_become_records_and_the_other_points_complete(tmp_path, own_cache, capsys):
    d = tmp_path / "runs"
    cfg = compose(["sweep=smoke", f"results_dir={d}"])
    cfg.sweep.points = [
        {"task": "custom", "task.train_file": "/nonexistent/train.jsonl", "task.eval_file": "/nonexistent/eval.jsonl"},
        {"method": "full", "budget_gb": 0.01},
        {"timeout_s": 1},
        {"method": "lora", "method.r": 2},
    ]
    assert run_sweep(cfg, ["sweep=smoke"]) == 1  # an `error` point → non-zero exit
    _, points, _ = plan(cfg, ["sweep=smoke"])
    recs = records_in(d)
    assert len(recs) == 4
    bad, oom, slow, good = (recs[p.run_id] for p in points)
    assert bad["status"] == "error" and bad["error"]["type"] == "UserError"
    assert "nonexistent" in bad["error"]["message"] and bad["recorded_by"] == "sweep"
    assert oom["status"] == "oom" and "budget_gb=0.01" in oom["error"]["message"]
    assert oom["metrics"]["peak_memory_gb"] > 0.01
    assert slow["status"] == "timeout" and slow["recorded_by"] == "sweep"
    assert good["status"] == "ok" and good["metrics"]["tokens_per_s"] > 0
    assert all(r["sweep"]["name"] == "smoke" and r["run_id"] == p.run_id for r, p in zip((bad, oom, slow, good), points))
    # On CPU, launcher.parallel=auto is one point at a time, and every record says so, the runner's too.
    assert all(r["execution"]["concurrency"] == 1 and r["execution"]["shared_with"] == 0 for r in (bad, oom, slow, good))
    out = capsys.readouterr().out
    assert "1 ok" in out and "1 oom" in out and "1 error" in out and "1 timeout" in out

    before = mtimes(d)
    assert run_sweep(cfg, ["sweep=smoke"]) == 1  # failed points are recorded results: not re-run …
    assert mtimes(d) == before
    cfg.sweep.points = [cfg.sweep.points[2]]
    cfg.retry_failed = True  # … unless asked
    run_sweep(cfg, ["sweep=smoke", "retry_failed=true"])
    after = mtimes(d)
    assert after[f"{points[2].run_id}.json"] != before[f"{points[2].run_id}.json"]
    assert len(after) == 4


def test_a_second_runner_of_the_same_sweep_is_refused(tmp_path):
    import fcntl

    from harness.errors import UserError

    d = tmp_path / "runs"
    d.mkdir()
    with open(d / ".sweep-smoke.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="already running"):
            run_sweep(compose(["sweep=smoke", f"results_dir={d}"]), ["sweep=smoke"])


# ---------------------------------------------------------------- Slurm


def test_slurm_launcher_composes_writes_a_job_array_and_runs_a_task(tmp_path, own_cache):
    d = tmp_path / "runs"
    over = ["sweep=smoke", "launcher=slurm", "launcher.submit=false", "launcher.partition=gpu",
            "launcher.setup=[module load cuda]", f"results_dir={d}"]
    cfg = compose(over)
    assert cfg.launcher.name == "slurm" and cfg.launcher.partition == "gpu"
    cfg.sweep.points = [{"method": "lora", "method.r": 2}, {"timeout_s": 1}]
    assert run_sweep(cfg, over) == 0
    (folder,) = (d / "slurm").iterdir()
    script = (folder / "array.sbatch").read_text()
    assert "#SBATCH --array=0-1%16" in script and "#SBATCH --partition=gpu" in script
    assert "module load cuda" in script and "-m harness.sweep array" in script
    plan_ = json.loads((folder / "plan.json").read_text())
    assert [p["run_id"] for p in plan_["points"]] == [p.run_id for p in plan(cfg, over)[1]]
    assert not list(d.glob("*.json"))  # nothing ran here: the cluster runs the points

    # What one array task does on a node (task 1: stopped by its timeout → recorded by the task).
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1"}
    res = subprocess.run([sys.executable, "-m", "harness.sweep", "array", str(folder / "plan.json")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rec = read_record(d / f"{plan_['points'][1]['run_id']}.json")
    assert rec["status"] == "timeout" and rec["sweep"] == {"name": "smoke"}
    env["SLURM_ARRAY_TASK_ID"] = "7"
    res = subprocess.run([sys.executable, "-m", "harness.sweep", "array", str(folder / "plan.json")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "not a point" in res.stderr and "Traceback" not in res.stderr


def test_single_run_honours_budget_gb(tmp_path, own_cache):
    from harness.config import load_spec
    from tests.conftest import cli

    # A fresh process, as a user runs it: in this long-lived test process freed memory is reused,
    # so RSS might not grow past even a tiny budget.
    overrides = ["debug=smoke", "train.max_steps=2", "eval.enabled=false", "budget_gb=0.01", f"results_dir={tmp_path}"]
    res = cli(*overrides)
    assert res.returncode == 1, res.stderr[-2000:]
    rec = read_record(tmp_path / f"{load_spec(overrides).run_id}.json")
    assert rec["status"] == "oom" and rec["error"]["type"] == "BudgetExceeded"


def test_a_dead_child_is_classified_from_its_exit_and_log():
    from harness.sweep.point import _classify

    assert _classify(-9, None, "step 3\n")[:2] == ("error", "Killed")
    assert "OOM killer" in _classify(-9, None, "")[2]
    assert _classify(EXIT_OOM, None, "tunebench: memory budget exceeded")[0] == "oom"
    assert _classify(1, None, "Traceback …\nMemoryError\n")[0] == "oom"
    assert _classify(2, None, "harness: error: data file not found: /x\n") == ("error", "UserError", "data file not found: /x")
    assert _classify(-15, 60.0, "")[0] == "timeout"
    assert _classify(-11, None, "")[2].startswith("the run process died of SIGSEGV")


# ---------------------------------------------------------------- several points at once


def _tiny_points(*overrides_per_point: list[str]):
    from harness.config import load_spec
    from harness.sweep import Point

    return [Point(i, " ".join(ovs), tuple(ovs), load_spec(["debug=smoke", *ovs])) for i, ovs in enumerate(overrides_per_point)]


def test_scheduler_never_gives_a_gpu_to_two_points_and_runs_the_fsdp_point():
    """4 fake GPUs, a 2-GPU FSDP point among 1-GPU points, random durations: at every moment the
    running points hold disjoint GPUs, the FSDP point holds 2, no more than `parallel` run."""
    import random

    from harness.sweep.slots import Machine, Scheduler, child_env

    points = _tiny_points(["method=fsdp", "method.world_size=2"], *[[f"method.r={r}"] for r in (1, 2, 3, 4, 5, 6)],
                          ["method=fsdp", "method.world_size=4"])
    machine = Machine(("0", "1", "2", "3"), (0, 1), fake_gpus=True)
    for seed in range(20):
        rng = random.Random(seed)
        duration = {p.index: rng.uniform(1, 10) for p in points}
        for parallel in (4, 3):
            sched = Scheduler(points, machine, parallel, expected={p.index: rng.uniform(1, 10) for p in points})
            running, now, held = {}, 0.0, {}
            while len(sched) or running:
                for p, slot in sched.launches():
                    held[p.index] = slot.gpus
                    in_use = [g for i in running for g in running[i][1].gpus]
                    assert not set(slot.gpus) & set(in_use), (seed, p.label, slot.gpus, in_use)
                    assert len(set(slot.gpus)) == p.spec.method.world_size
                    running[p.index] = (now + duration[p.index], slot)
                    env, execution = child_env(slot, machine, parallel, shared_with=len(running) - 1)
                    assert env["CUDA_VISIBLE_DEVICES"] == ",".join(slot.gpus) and execution["gpus"] == list(slot.gpus)
                assert len(running) <= parallel
                assert running, "nothing running but points queued: the scheduler is stuck"
                index = min(running, key=lambda i: running[i][0])  # the next point to finish
                now, slot = running.pop(index)
                sched.release(slot)
            assert sorted(held) == [p.index for p in points]  # every point ran, the 4-GPU one too
            assert len(held[0]) == 2 and len(held[7]) == 4


def test_expected_cost_reads_the_method_table_and_the_models_shape():
    """The order longest-first relies on: costs from advisor.facts.flops_per_token and the method
    table's capabilities (a wrapper trains what its inner method trains; DPO trains two sequences
    per example), and a model named only by its hub id is costed with the catalog's shape."""
    from advisor.facts import flops_per_token
    from harness.config import load_spec
    from harness.sweep.slots import expected_cost, flop_arch

    def cost(*overrides):
        return expected_cost(load_spec(["model=tiny", "eval.enabled=false", "train.max_steps=10", *overrides]))

    spec = load_spec(["model=tiny", "eval.enabled=false", "train.max_steps=10", "method=full"])
    t = spec.train
    tokens = 10 * t.batch_size * t.grad_accum * t.max_seq_len
    assert cost("method=full") == pytest.approx(tokens * flops_per_token(flop_arch(spec.model), t.max_seq_len, trains_base=True))
    assert cost("method=fsdp") == pytest.approx(cost("method=full"))  # inner: full, by the table's default
    assert cost("method=fsdp", "method.inner=lora") == pytest.approx(cost("method=lora"))
    assert cost("method=dpo", "task=tickets_prefs") == pytest.approx(2 * cost("method=lora", "task=tickets_prefs"))
    assert cost("method=dpo", "task=tickets_prefs", "method.inner=full") == pytest.approx(2 * cost("method=full", "task=tickets_prefs"))
    llama = load_spec(["model=hub", "model.name_or_path=meta-llama/Llama-2-7b-hf"]).model
    assert (flop_arch(llama)["hidden_size"], flop_arch(llama)["num_hidden_layers"]) == (4096, 32)  # Llama-2-7B's config.json


def test_scheduler_order_slots_and_refusals():
    from harness.errors import UserError
    from harness.sweep.slots import Machine, Scheduler, core_blocks, detect_machine, slot_count

    points = _tiny_points(["method.r=1"], ["method.r=2"], ["method.r=4"])
    cpu = Machine((), (0, 1, 2, 3, 4))
    sched = Scheduler(points, cpu, 2, expected={0: 5.0, 1: 50.0, 2: 20.0})
    started = sched.launches()
    assert [p.index for p, _ in started] == [1, 2]  # longest expected first, two at a time
    assert [s.cpus for _, s in started] == [(0, 1, 2), (3, 4)]  # each its own cores
    assert sched.launches() == []
    sched.release(started[1][1])
    ((p, slot),) = sched.launches()
    assert p.index == 0 and slot.cpus == (3, 4) and slot.index == 1
    assert core_blocks((0, 1), 4) == [(0,), (1,), (0,), (1,)]  # more slots than cores: shared, and recorded so
    one = Scheduler(points, cpu, 1, expected={0: 5.0, 1: 50.0, 2: 20.0})
    assert [p.index for p, _ in one.launches()] == [0]  # one at a time: the preset's order, as written

    assert slot_count("auto", cpu) == 1  # CPU: one at a time unless asked (throughput stays comparable)
    assert slot_count("auto", Machine(tuple("01234567"), (0,))) == 8
    for bad, machine, words in ((3, Machine(("0", "1"), (0,)), "2 GPU(s)"), (9, cpu, "5 CPU core(s)"),
                                ("many", cpu, "auto or a positive integer"), (0, cpu, "auto or a positive integer")):
        with pytest.raises(UserError, match=re.escape(words)):
            slot_count(bad, machine)
    with pytest.raises(UserError, match="needs 4 GPUs"):
        Scheduler(_tiny_points(["method=fsdp", "method.world_size=4"]), Machine(("0", "1"), (0,)), 2, {0: 1.0})

    # Fake GPUs only count where CUDA is not available: on a CUDA machine they are ignored.
    env = {"TUNEBENCH_VISIBLE_GPUS": "0,1,2,3"}
    assert detect_machine(env, cuda_available=False).gpus == ("0", "1", "2", "3")
    real = detect_machine({**env, "CUDA_VISIBLE_DEVICES": "5,7"}, cuda_available=True, cuda_count=2)
    assert real.gpus == ("5", "7") and not real.fake_gpus
    assert detect_machine({}, cuda_available=False).gpus == ()
    with pytest.raises(UserError, match="TUNEBENCH_VISIBLE_GPUS"):
        detect_machine({"TUNEBENCH_VISIBLE_GPUS": "0,0"}, cuda_available=False)


def _interval(rec: dict) -> tuple[float, float]:
    import datetime as dt

    start, end = (dt.datetime.fromisoformat(rec["provenance"][k]).timestamp() for k in ("started_at", "finished_at"))
    return start - rec["metrics"]["startup_s"], end + 1  # process start → record (timestamps have 1 s steps)


def _sweep_processes(d: Path) -> list:
    import psutil

    out = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(d) in part for part in proc.info["cmdline"] or ()):
                out.append(proc)
        except psutil.Error:
            pass
    return out


def test_parallel_sweep_killed_during_two_points_resumes_exactly_the_missing_ones(tmp_path, own_cache):
    """``launcher.parallel=2`` end to end: kill -9 while two points run, then the re-run writes every
    missing point once, two at a time (the re-run's records are checked as any parallel run's)."""
    import psutil

    d = tmp_path / "runs"
    points = _points(d)
    cmd = [sys.executable, "-m", "harness", "sweep=smoke", "launcher.parallel=2", f"results_dir={d}"]
    parent = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, kids = time.time() + 240, []
    while time.time() < deadline:
        kids = psutil.Process(parent.pid).children()
        if len(kids) == 2 and len(list((d / "logs").glob("*.log"))) >= 2:
            break
        assert parent.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.2)
    assert len(kids) == 2, "two points never ran at once"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    gone, alive = psutil.wait_procs(kids, timeout=10)
    for proc in alive:  # the failure below must not leave them running
        proc.kill()
    assert not alive, "a point's process outlived the killed sweep"
    before = mtimes(d)
    assert len(before) <= 1  # at most a point that finished just before the kill

    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{len(points) - len(before)} to run, {len(before)} already recorded" in " ".join(res.stderr.split())
    recs = records_in(d)
    assert sorted(recs) == sorted(p.run_id for p in points)  # one record per point, none twice
    assert all(r["status"] == "ok" for r in recs.values())
    assert all(mtimes(d)[name] == t for name, t in before.items()), "a recorded point was run again"
    assert not stray_tmp(d) and not list((d / "logs").glob("*.progress.json*"))
    assert _sweep_processes(d) == [], "orphan processes of the sweep are still running"
    _two_at_once({k: r for k, r in recs.items() if f"{k}.json" not in before})


def _two_at_once(recs: dict[str, dict]) -> None:
    """The records of one ``launcher.parallel=2`` run on CPU (2 or 3 points): the first two started
    together, each beside the other, on a core of its own, and really ran at once; a third took the
    slot the first to finish freed (beside the other one, unless both ended in the same poll)."""
    assert len(recs) >= 2
    ex = {k: r["execution"] for k, r in recs.items()}
    assert {e["concurrency"] for e in ex.values()} == {2}
    first, second, *third = sorted(recs, key=lambda k: _interval(recs[k])[0])
    assert ex[first]["shared_with"] == ex[second]["shared_with"] == 1 and all(ex[k]["shared_with"] <= 1 for k in third)
    assert {tuple(ex[first]["cpus"]), tuple(ex[second]["cpus"])} == {(0,), (1,)}
    a, b = _interval(recs[first]), _interval(recs[second])
    assert a[0] < b[1] and b[0] < a[1], (a, b)  # the intervals overlap: they really ran at once


def test_regress_refuses_concurrent_cpu_throughput_against_sequential(tmp_path, capsys):
    import shutil

    from harness import regress

    fixtures = REPO / "tests" / "fixtures" / "regress"
    base, cand = tmp_path / "base", tmp_path / "cand"
    shutil.copytree(fixtures / "baseline", base)
    shutil.copytree(fixtures / "baseline", cand)

    def mark(directory: Path, execution: dict, device: str = "cpu") -> None:
        for path in directory.glob("*.json"):
            rec = json.loads(path.read_text())
            rec["execution"] = execution
            rec.setdefault("hardware", {})["device"] = device
            path.write_text(json.dumps(rec))

    mark(cand, {"concurrency": 2, "slot": 0, "gpus": [], "cpus": [0], "shared_with": 1})
    args = ["--baseline", str(base), "--candidate", str(cand), "--json", "--out", str(tmp_path / "verdict.json")]
    assert regress.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "one point at a time" in err and "2 points at once" in err
    assert "--allow-concurrent" in err and not (cand / "regress.json").exists()
    assert regress.main([*args, "--allow-concurrent"]) == 0  # the same data compare once allowed
    capsys.readouterr()
    mark(base, {"concurrency": 2, "slot": 1, "gpus": [], "cpus": [1], "shared_with": 1})
    assert regress.main(args) == 0  # both sides ran two at a time: comparable
    capsys.readouterr()
    mark(cand, {"concurrency": 8, "slot": 0, "gpus": ["0"], "cpus": [0], "shared_with": 7}, device="cuda")
    mark(base, {"concurrency": 1, "slot": 0, "gpus": ["0"], "cpus": [0], "shared_with": 0}, device="cuda")
    assert regress.main(args) == 0  # GPU points each own their GPU: not refused


def _ignoring_sigint() -> None:
    """What a non-interactive shell does to ``cmd &`` (a CI script, ``nohup bash .ci/run > log &``): the
    command starts with SIGINT ignored. The runner's Ctrl-C once depended on that (it exited 0)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# Slow tier: three processes (~15 s on idle cores, ~50 s on shared ones). The fast tier holds its
# mechanism in-process: the two tests below it (a runner that inherited SIGINT ignored or blocked, and a
# point interrupted alone). Its old form failed (exit 0, not 130) only when pytest had been started with
# SIGINT ignored, as `nohup bash .ci/run > log &` does: the runner, and its points, inherited that.
@pytest.mark.slow
def test_ctrl_c_stops_the_running_point_keeps_the_finished_one_and_records_nothing_half_done(tmp_path, own_cache):
    import psutil

    d = tmp_path / "runs"
    # Two at once: a point of 3 steps, and one that trains until Ctrl-C (never on its own within the test).
    pts = "sweep.points=[{method:lora,method.r:2},{method:lora,method.r:4,train.max_steps:100000}]"
    cmd = [sys.executable, "-m", "harness", "sweep=smoke", pts, "launcher.parallel=2", f"results_dir={d}"]
    short, long = _points(d, pts)
    # Its own process group, as a terminal's foreground job: Ctrl-C sends SIGINT to the whole group. It
    # starts with SIGINT ignored, as under `cmd &` in a script, so how pytest was started changes nothing.
    parent = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True, preexec_fn=_ignoring_sigint)
    deadline, both, training = time.time() + 240, False, {}
    while time.time() < deadline and parent.poll() is None:
        both = both or len(psutil.Process(parent.pid).children()) == 2
        training = json.loads((d / "logs" / f"{long.run_id}.progress.json").read_text() or "{}") if (
            d / "logs" / f"{long.run_id}.progress.json").exists() else {}
        if (d / f"{short.run_id}.json").exists() and training.get("task") == "train" and training.get("completed"):
            break
        time.sleep(0.2)
    assert parent.poll() is None, "the sweep ended before Ctrl-C"
    assert both and training.get("task") == "train", "the two points never ran at once, or the long one never trained"
    kept = (d / f"{short.run_id}.json").stat().st_mtime_ns
    kids = psutil.Process(parent.pid).children()
    os.killpg(parent.pid, signal.SIGINT)
    try:
        _, err = parent.communicate(timeout=60)
    finally:
        for proc in _sweep_processes(d):
            proc.kill()
    assert parent.returncode == 130, err[-2000:]
    assert f"interrupted {long.label}" in " ".join(err.split()) and "Traceback" not in err
    gone, alive = psutil.wait_procs(kids, timeout=5)
    assert not alive and not _sweep_processes(d)
    # The finished point keeps its record, untouched; the one cut short has none (a re-run resumes it).
    assert list(records_in(d)) == [short.run_id] and read_record(d / f"{short.run_id}.json")["status"] == "ok"
    assert (d / f"{short.run_id}.json").stat().st_mtime_ns == kept
    assert not stray_tmp(d) and not list((d / "logs").glob("*.progress.json*"))


class _PointUntilCtrlC:
    """A point's process as the runner sees it (``point.Child``), without the process: the first poll
    sends this process SIGINT, as Ctrl-C would while a point runs; a point never asked to stop ends
    after a few polls (so a runner deaf to SIGINT ends too, and the test fails rather than hangs)."""

    stopped: list[int] = []

    def __init__(self, point, sweep_name, **_):
        self.point, self.started, self.outcome, self.polls = point, time.time(), None, 0

    def poll(self) -> bool:
        self.polls += 1
        if self.polls == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return self.polls > 3

    def interrupt(self) -> None:
        _PointUntilCtrlC.stopped.append(self.point.index)
        self.polls = 99

    def stop(self, grace_s: float = 0.0) -> None:
        pass


@pytest.mark.parametrize("inherited", ["ignored", "blocked"])
def test_ctrl_c_reaches_a_runner_that_inherited_sigint_ignored_or_blocked(inherited, tmp_path, monkeypatch):
    """`cmd &` in a script starts a process with SIGINT ignored, and that survives exec into every
    point: the runner takes SIGINT back while it runs points (exit 130), and gives the old state back."""
    from harness.sweep import local
    from harness.sweep.slots import Machine

    d = tmp_path / "runs"
    sweep, points, _ = plan(compose(["sweep=smoke", f"results_dir={d}"]), ["sweep=smoke"])
    d.mkdir()
    monkeypatch.setattr(local, "Child", _PointUntilCtrlC)
    monkeypatch.setattr(local, "POLL_S", 0.01)
    _PointUntilCtrlC.stopped = []
    old = signal.signal(signal.SIGINT, signal.SIG_IGN if inherited == "ignored" else signal.default_int_handler)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT} if inherited == "blocked" else set())
    try:
        code = local.LocalLauncher(parallel=2, machine=Machine((), (0, 1))).launch(sweep, points, d, retry_failed=False)
        after = (signal.getsignal(signal.SIGINT), signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set()))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a SIGINT still pending (the fix broken) is dropped here
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        signal.signal(signal.SIGINT, old)
    assert code == 130
    assert len(set(_PointUntilCtrlC.stopped)) == 2  # both running points were asked to stop …
    assert not list(d.glob("*.json"))  # … and none of them got a record; the third never started
    assert after == ((signal.SIG_IGN, False) if inherited == "ignored" else (signal.default_int_handler, True))



class _PointStoppedAlone(_PointUntilCtrlC):
    """A point whose own process got SIGINT (``kill -INT`` of it), the runner's not: it ends without a record."""

    started_points: list[int] = []

    def __init__(self, point, sweep_name, **_):
        super().__init__(point, sweep_name)
        _PointStoppedAlone.started_points.append(point.index)

    def poll(self) -> bool:
        return True


def test_a_point_interrupted_alone_lets_the_others_run_and_the_sweep_exits_130_not_0(tmp_path, monkeypatch):
    from harness.sweep import local
    from harness.sweep.slots import Machine

    d = tmp_path / "runs"
    sweep, points, _ = plan(compose(["sweep=smoke", f"results_dir={d}"]), ["sweep=smoke"])
    d.mkdir()
    monkeypatch.setattr(local, "Child", _PointStoppedAlone)
    monkeypatch.setattr(local, "POLL_S", 0.01)
    _PointStoppedAlone.started_points, _PointUntilCtrlC.stopped = [], []
    code = local.LocalLauncher(parallel=2, machine=Machine((), (0, 1))).launch(sweep, points, d, retry_failed=False)
    assert sorted(_PointStoppedAlone.started_points) == [0, 1, 2] and _PointUntilCtrlC.stopped == []  # the sweep went on
    assert code == 130  # but it is not complete: a re-run resumes the points without a record

@pytest.mark.slow
def test_fake_gpu_sweep_end_to_end_gives_each_gpu_to_one_point_at_a_time(tmp_path, own_cache, monkeypatch):
    """3 fake GPUs, a 2-rank FSDP point and two 1-GPU points, really run (FSDP on gloo: minutes of CPU)."""
    d = tmp_path / "runs"
    monkeypatch.setenv("TUNEBENCH_VISIBLE_GPUS", "0,1,2")
    cfg = compose(["sweep=smoke", f"results_dir={d}"])
    cfg.sweep.points = [{"method": "fsdp", "method.world_size": 2}, {"method": "lora", "method.r": 2}, {"method": "lora", "method.r": 4}]
    assert run_sweep(cfg, ["sweep=smoke"]) == 0
    recs = list(records_in(d).values())
    assert len(recs) == 3 and all(r["status"] == "ok" and r["execution"]["fake_gpus"] for r in recs)
    fsdp = next(r for r in recs if r["config"]["method"]["name"] == "fsdp")
    assert len(set(fsdp["execution"]["gpus"])) == 2 and fsdp["metrics"]["world_size"] == 2
    for a in recs:
        for b in recs:
            if a is not b and _interval(a)[0] < _interval(b)[1] - 1 and _interval(b)[0] < _interval(a)[1] - 1:
                assert not set(a["execution"]["gpus"]) & set(b["execution"]["gpus"]), (a["execution"], b["execution"])
