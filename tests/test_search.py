"""Search: ``harness search=<preset>`` runs an Optuna study whose trials are sweep points.

The end-to-end tests run the tiny model (``search=smoke``, seconds per trial): a study runs each
trial as a point with its own record, a re-run adds no trial, a larger ``n_trials`` adds exactly
the missing ones, and a runner killed with SIGKILL mid-trial is finished by two concurrent
workers on the same SQLite file with no trial lost or duplicated. The rest is in-process: presets,
bad input, how a record is told to the study (OOM → infeasible), seeds, and the report section.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

optuna = pytest.importorskip("optuna")  # the `search` extra; in the `test` extra too, so CI has it

from harness.config import compose  # noqa: E402
from harness.errors import UserError  # noqa: E402
from harness.paths import CONFIG_DIR  # noqa: E402
from harness.record import read_record  # noqa: E402
from harness.search.runner import make_base, tell  # noqa: E402
from harness.search.space import SearchSpec, tell_args  # noqa: E402
from harness.search.study import make_sampler  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PRESETS = sorted(p.stem for p in (CONFIG_DIR / "search").glob("*.yaml"))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def smoke_spec(**changes) -> SearchSpec:
    data = OmegaConf.to_container(compose(["search=smoke"]).search, resolve=True)
    return SearchSpec.from_dict({**data, **changes})


def cmd(d: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness", "search=smoke", f"results_dir={d}", *extra]


def load(d: Path):
    return optuna.load_study(study_name="smoke", storage=f"sqlite:///{d / 'search.db'}")


def records_in(d: Path) -> dict[str, dict]:
    return {p.stem: read_record(p) for p in d.glob("*.json")}


def mtimes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in d.glob("*.json")}


# ---------------------------------------------------------------- presets and bad input


@pytest.mark.parametrize("name", PRESETS)
def test_every_search_preset_composes_and_every_corner_of_its_space_is_a_valid_run(name, tmp_path):
    cfg = compose([f"search={name}", f"results_dir={tmp_path}"])
    search = SearchSpec.from_dict(OmegaConf.to_container(cfg.search, resolve=True))
    assert search.name == name and search.about, f"{name}: say what the study is for in search.about"
    base = make_base(search, [f"search={name}"], tmp_path)  # composes every choice and both ends of every range
    corners = search.corner_points()
    assert {c[p.key] for c in corners for p in search.space if p.key in c and p.choices} >= {
        v for p in search.space if p.choices and not p.when for v in p.choices}
    assert base.point(0, corners[0]).spec.results_dir == str(tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"objectives": ["task_scor"]}, "did you mean 'task_score'"),
    ({"objectives": ["memory:general_mc"]}, "unknown objective"),
    ({"space": {"train.lr": {"low": 1e-2, "high": 1e-4, "log": True}}}, "low < high"),
    ({"space": {"train.lr": {"low": 0.0, "high": 1e-2, "log": True}}}, "needs low > 0"),
    ({"space": {"method.r": {"choices": [2], "when": {"method": ["lora"]}}, "method": ["lora"]}}, "declared before it"),
    ({"grace_s": 5, "heartbeat_s": 10}, "must exceed search.heartbeat_s"),
    ({"sampler": "cmaes"}, "search.sampler"),
    ({"n_trials": 0}, "search.n_trials must be a positive integer"),
])
def test_a_bad_preset_is_a_one_line_error_naming_the_setting(change, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        smoke_spec(**change)


def test_an_objective_the_runs_cannot_produce_and_a_searched_key_set_twice_fail_before_any_trial(tmp_path):
    with pytest.raises(UserError, match="needs a scored run"):  # the tiny model is cost-only
        make_base(smoke_spec(objectives=["task_score"]), ["search=smoke"], tmp_path)
    with pytest.raises(UserError, match="train.lr is searched"):
        make_base(smoke_spec(), ["search=smoke", "train.lr=1e-3"], tmp_path)
    with pytest.raises(UserError, match="unknown setting 'method.rank'"):
        make_base(smoke_spec(space={"method.rank": [2, 4]}), ["search=smoke"], tmp_path)


@pytest.mark.parametrize("storage, names", [
    ("postgresql://tb:hunter2@127.0.0.1:9/optuna", "search.storage=postgresql://tb:***@127.0.0.1:9/optuna"),
    ("sqlite:////no/such/folder/search.db", "folder /no/such/folder does not exist"),
])
def test_an_unreachable_storage_is_one_line_exit_2_before_any_training(storage, names, tmp_path, capsys):
    from harness.cli import dispatch

    code = dispatch(["search=smoke", f"results_dir={tmp_path}", f"search.storage={storage}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and names in err, err
    assert "hunter2" not in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.json")) and not (tmp_path / "logs").exists()  # nothing ran


# ---------------------------------------------------------------- telling the study


def _record(status: str, peak: float = 1.0, wall: float = 5.0) -> dict:
    return {"run_id": f"r-{status}-{peak}", "status": status, "metrics": {"peak_memory_gb": peak, "wall_s": wall}}


def test_an_oom_is_an_infeasible_trial_an_error_a_failed_one_and_a_peak_over_budget_infeasible(tmp_path):
    from harness.search.runner import Base
    from harness.search.study import counts, feasible
    from harness.search.trials import mark_front, view

    search = smoke_spec()
    objectives = search.objectives  # peak_memory_gb ↓, wall_s ↓
    assert tell_args(objectives, _record("oom"), None) == ("complete", [math.inf, math.inf], 1.0)
    assert tell_args(objectives, _record("timeout"), None)[2] > 0
    assert tell_args(objectives, _record("error"), None)[0] == "fail"
    assert tell_args(objectives, _record("ok", peak=3.0), 2.0) == ("complete", [3.0, 5.0], 1.0)  # watchdog missed it
    assert tell_args(objectives, _record("ok", peak=1.5), 2.0) == ("complete", [1.5, 5.0], -0.5)

    # Through a real study and sampler: the OOM trial would dominate on nothing but stays off the front.
    study = optuna.create_study(directions=search.directions, sampler=make_sampler(search))
    base = Base(search, (), tmp_path, 2.0)
    for rec in (_record("ok", 1.0, 9.0), _record("ok", 1.8, 4.0), _record("oom", 0.1, 0.1), _record("error"),
                _record("ok", 1.9, 9.5)):
        tell(study, study.ask(), rec, base)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert [feasible(t) for t in trials] == [True, True, False, False, True]
    assert trials[2].user_attrs["status"] == "oom" and trials[3].user_attrs["run_id"] == "r-error-1.0"
    assert counts(trials).counted == 5  # a recorded error counts towards n_trials: it is not re-run
    sv = view(study, "memory", {})
    assert [t.number for t in sv.front] == [0, 1]  # 4 is dominated by 0 and 1; 2 is infeasible
    mark_front(sv.trials, sv.directions)
    assert not sv.trials[2].front


def _propose(study, s: SearchSpec, n: int) -> list[dict]:
    from harness.search.study import ask

    out = []
    for _ in range(n):
        trial = ask(study, s)
        values = s.suggest(trial)
        out.append(values)
        study.tell(trial, [values["train.lr"] * 100, values["train.max_steps"] + (values.get("method.r") or 0)])
    return out


def test_a_fixed_seed_reproduces_the_proposals_and_a_resumed_study_does_not_replay_them():
    def fresh(seed: int) -> list[dict]:
        s = smoke_spec(seed=seed)
        return _propose(optuna.create_study(directions=s.directions, sampler=make_sampler(s, s.seed)), s, 14)  # past the random start

    search = smoke_spec()
    assert search.sampler == "auto" and type(make_sampler(search)).__name__ == "NSGAIISampler"
    assert type(make_sampler(smoke_spec(objectives=["wall_s"]))).__name__ == "TPESampler"
    first = fresh(0)
    assert first == fresh(0)
    assert first != fresh(1)
    assert all(("method.r" in p) == (p["method"] == "lora") for p in first)  # the conditional parameter
    assert any(p["method"] == "full" for p in first) and any(p["method"] == "lora" for p in first)

    # A re-run is a new process with a new sampler on the same storage: it must go on, not start over.
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", directions=search.directions, sampler=make_sampler(search, 0))
    before = _propose(study, search, 2)
    again = optuna.load_study(study_name="s", storage=storage, sampler=make_sampler(search, 0))
    after = _propose(again, search, 2)
    assert not [p for p in after if p in before], (before, after)
    assert before + after == first[:4]  # and the resumed study proposes what an uninterrupted one would


def test_baselines_are_the_first_trials_of_a_new_study_and_never_enqueued_twice():
    from harness.search.study import ask, open_study

    search = smoke_spec(baselines=[{"method": "lora", "method.r": 4, "train.lr": 1e-3, "train.max_steps": 3},
                                   {"method": "full", "train.lr": 2e-4, "train.max_steps": 2}])
    storage = optuna.storages.InMemoryStorage()
    study = open_study(search, storage)
    got = []
    for _ in range(3):
        trial = ask(study, search)
        got.append(search.suggest(trial))
        study.tell(trial, [1.0, 1.0])
    assert got[:2] == [dict(b) for b in search.baselines] and got[2] not in got[:2]
    again = open_study(search, storage)  # a re-run opens the study again: nothing more is queued
    assert len(again.get_trials()) == 3 and not [t for t in again.get_trials() if t.state.name == "WAITING"]
    with pytest.raises(UserError, match="baseline key 'train.steps'"):
        smoke_spec(baselines=[{"method": "full", "train.steps": 3}])


def test_two_workers_failing_the_same_stale_trial_queue_one_retry(tmp_path, monkeypatch):
    """The race behind a duplicated trial: worker A has read the silent trial as RUNNING and is
    about to fail it when worker B looks too. B must wait for A's write and then see FAIL; had it
    read RUNNING as well, both would fail it and each would queue a retry with its parameters."""
    import threading

    from optuna.storages import RDBStorage, fail_stale_trials

    from harness.search.study import open_storage

    url = f"sqlite:///{tmp_path / 'search.db'}"
    a, b = (open_storage(url, heartbeat_s=1, grace_s=2) for _ in range(2))
    study = optuna.create_study(storage=a, study_name="s")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    a.record_heartbeat(trial._trial_id)
    time.sleep(3.5)  # silent past grace_s (SQLite's CURRENT_TIMESTAMP keeps whole seconds): stale

    a_read, release = threading.Event(), threading.Event()
    real = RDBStorage.check_trial_is_updatable

    def held(self, trial_id, state):  # A, inside its transaction, after reading the trial's state
        if self is a and not a_read.is_set():
            a_read.set()
            release.wait(10)
        return real(self, trial_id, state)

    monkeypatch.setattr(RDBStorage, "check_trial_is_updatable", held)
    workers = [threading.Thread(target=fail_stale_trials, args=(optuna.load_study(study_name="s", storage=s),))
               for s in (a, b)]
    workers[0].start()
    assert a_read.wait(10)
    workers[1].start()
    workers[1].join(3.0)  # unfixed, B reads RUNNING, fails the trial and queues its retry in well under this
    assert workers[1].is_alive()  # fixed: B waits on A's lock
    release.set()
    for w in workers:
        w.join(30)
    states = [t.state.name for t in optuna.load_study(study_name="s", storage=b).get_trials()]
    assert states == ["FAIL", "WAITING"], states


def test_slurm_launcher_writes_an_array_of_workers_on_the_shared_storage(tmp_path, capsys):
    import shlex

    from harness.cli import dispatch
    from harness.sweep import override

    code = dispatch(["search=smoke", f"results_dir={tmp_path}", "launcher=slurm", "launcher.submit=false",
                     "search.workers=3", "train.batch_size=1", "search.n_trials=7"])
    assert code == 0, capsys.readouterr().err
    (script,) = tmp_path.glob("slurm/search-smoke-*/workers.sbatch")
    lines = script.read_text().splitlines()
    assert "#SBATCH --array=0-2%3" in lines
    argv = shlex.split(lines[-1].removeprefix("exec "))
    assert argv[1:4] == ["-m", "harness", "search=smoke"]
    assert {"launcher=local", "launcher.parallel=1", "train.batch_size=1", "search.n_trials=7",
            f"results_dir={tmp_path}", override("search.storage", f"sqlite:///{tmp_path / 'search.db'}")} <= set(argv)
    assert not [a for a in argv if a.startswith(("launcher=slurm", "launcher.submit"))]
    assert "SQLite storage" in capsys.readouterr().err  # the warning about SQLite on a cluster's file system
    assert optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'search.db'}").get_trials() == []


def test_the_search_section_escapes_what_came_from_the_study_and_its_records(tmp_path):
    from harness.render import Report, to_html, to_markdown
    from harness.search.report import search_section

    evil = "<script>alert(1)</script>"
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    study = optuna.create_study(storage=storage, study_name=f"s{evil}", directions=["minimize", "minimize"])
    study.set_user_attr("objectives", ["peak_memory_gb", "wall_s"])
    for i, (a, b) in enumerate([(1.0, 3.0), (2.0, 1.0), (3.0, 3.0), (0.5, 9.0)]):
        trial = study.ask()
        trial.suggest_categorical("method", [f"m{evil}", "full"])
        trial.suggest_float("train.lr", 1e-4, 1e-2, log=True)
        trial.set_user_attr("run_id", f"run{i}{evil}")
        study.tell(trial, [a, b])
    rec = {"run_id": f"run1{evil}", "status": "ok", "search": {"study": "x", "trial": 1},
           "metrics": {"peak_memory_gb": 2.0, "wall_s": 1.0}, "config": {}}
    (tmp_path / "run1.json").write_text(json.dumps(rec))
    blocks, figures = search_section(tmp_path, tmp_path / "report")
    page = to_html(Report("t", "s", blocks)) + to_markdown(Report("t", "s", blocks))
    assert "<script>" not in page and "&lt;script&gt;" in page and "\\<script\\>" in page
    assert all("/" not in f.name and "<" not in f.name for f in figures)  # plot files stay inside plots/
    front = [row for b in blocks if b[0] == "table" and "record" in b[1] for row in b[2]]
    assert {row[0] for row in front[:3]} == {"0", "1", "3"}  # the front: trial 2 is dominated by 0 and 1
    assert any(hasattr(row[-1], "href") and row[-1].href == "../run1.json" for row in front)


# ---------------------------------------------------------------- end to end


def test_smoke_study_runs_trials_as_points_and_a_rerun_adds_only_missing_trials(tmp_path, own_cache, capsys):
    d = tmp_path / "search"
    # Its first two trials at once (launcher.parallel=2: a core each), as a study on a GPU machine runs them.
    res = subprocess.run(cmd(d, "search.n_trials=2", "launcher.parallel=2"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = records_in(d)
    study = load(d)
    trials = study.get_trials()
    assert len(recs) == 2 and [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    ex = [r["execution"] for r in recs.values()]
    assert {e["concurrency"] for e in ex} == {2} and max(e["shared_with"] for e in ex) == 1  # one started beside the other
    for t in trials:  # each trial is one record, which names its study and trial, and its values are the record's
        rec = recs[t.user_attrs["run_id"]]
        assert rec["status"] == "ok" and rec["search"] == {"study": "smoke", "trial": t.number} and rec["sweep"] == {"name": "smoke"}
        assert t.values == [rec["metrics"]["peak_memory_gb"], rec["metrics"]["wall_s"]]
        assert {k: v for k, v in t.params.items()} == {
            k: v for k, v in (("method", rec["config"]["method"]["name"]), ("method.r", rec["config"]["method"]["r"]),
                              ("train.lr", rec["config"]["train"]["lr"]), ("train.max_steps", rec["config"]["train"]["max_steps"]))
            if k in t.params}

    before = mtimes(d)
    from harness.cli import dispatch  # the re-run and the report in this process: the trials above were processes

    assert dispatch(cmd(d, "search.n_trials=2")[3:]) == 0
    assert mtimes(d) == before and len(load(d).get_trials()) == 2, capsys.readouterr().err[-2000:]

    res = subprocess.run(cmd(d, "search.n_trials=3"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = load(d).get_trials()
    assert len(trials) == 3 and len(records_in(d)) == 3 and all(mtimes(d)[k] == v for k, v in before.items())

    out = tmp_path / "report"
    assert dispatch(["report", str(d), "--out", str(out)]) == 0, capsys.readouterr().err[-2000:]
    page = (out / "report.html").read_text()
    assert "Search: smoke" in page and "Parameter importances" in page
    from harness.search.trials import load_studies

    (sv,), _ = load_studies(d)
    assert sv.front
    for t in sv.front:  # each front member links to its record, by a path that resolves from the report
        href = os.path.relpath(d / f"{t.run_id}.json", out)
        assert f'<a href="{href}">{t.run_id}</a>' in page and (out / href).resolve().exists()


def test_killed_runner_then_two_concurrent_workers_finish_the_study_with_no_trial_lost_or_duplicated(tmp_path, own_cache):
    import psutil

    d = tmp_path / "search"
    args = cmd(d, "search.n_trials=3", "search.heartbeat_s=1", "search.grace_s=3")
    parent = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, child = time.time() + 300, None
    while time.time() < deadline:  # the first trial recorded, the second one's process running: kill -9
        kids = psutil.Process(parent.pid).children()
        if len(list(d.glob("*.json"))) == 1 and kids and len(list((d / "logs").glob("*.log"))) == 2:
            child = kids[0]
            break
        assert parent.poll() is None, "the study ended before it could be killed"
        time.sleep(0.2)
    assert child is not None, "the second trial never started"
    first = mtimes(d)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    psutil.wait_procs([child], timeout=10)
    assert not child.is_running(), "the trial's process outlived the killed runner"
    states = [t.state.name for t in load(d).get_trials()]
    assert states == ["COMPLETE", "RUNNING"]  # the database still believes trial 1 runs

    workers = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[1][-2000:] for o in outs]

    trials = load(d).get_trials()
    recs = records_in(d)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    killed = trials[1]
    assert killed.state.name == "FAIL" and "run_id" not in killed.user_attrs  # failed for silence, not counted
    assert len(done) == 3 and len(recs) == 3 and sorted(t.user_attrs["run_id"] for t in done) == sorted(recs)
    assert any(t.params == killed.params for t in done), "the killed trial was not retried with its parameters"
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert all(mtimes(d)[k] == v for k, v in first.items()), "a finished trial was re-run"
    by_run = {t.user_attrs["run_id"]: t.number for t in done}
    assert all(rec["search"]["trial"] == by_run[run_id] for run_id, rec in recs.items())
    assert not list(d.glob(".*.tmp"))
