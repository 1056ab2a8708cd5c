"""harness/sweep/plan.py: which points a sweep has, what each is told, and which still need to run.
Fast (no Hydra compose in the expansion tests: load_spec is replaced by a stand-in that keeps the
overrides it was given). Written against the survivors of `scripts/mutation.sh sweep_plan`
(docs/mutation.md)."""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import pytest

import harness.config
from harness.errors import UserError
from harness.sweep.plan import STRAY_TMP_AGE_S, SweepSpec, clean_stray_tmp, expand, lock, override, passthrough, pending


def test_a_sweep_file_is_checked_before_anything_runs():
    s = SweepSpec.from_dict({"name": "x", "about": "why", "repeats": 3, "points": [{"method": "lora"}],
                             "grid": {"method.r": (1, 2)}, "overrides": ["train.save=none", 5]})
    assert s == SweepSpec("x", "why", 3, ({"method": "lora"},), {"method.r": [1, 2]}, ("train.save=none", "5"))
    d = SweepSpec.from_dict({"name": "y", "points": None, "grid": None, "about": None})
    assert (d.points, d.grid, d.repeats, d.about, d.overrides) == (({},), {}, 1, "", ())
    bad = [({}, "sweep.name is required"),
           ({"name": "x", "points": {"method": "lora"}}, "sweep x: sweep.points must be a list of {key: value} dicts"),
           ({"name": "x", "points": [["method", "lora"]]}, "sweep.points must be a list"),
           ({"name": "x", "grid": ["method.r"]}, "sweep x: sweep.grid must map keys to non-empty lists of values"),
           ({"name": "x", "grid": {"method.r": []}}, "sweep.grid must map keys to non-empty lists"),
           ({"name": "x", "grid": {"method.r": 4}}, "sweep.grid must map keys to non-empty lists"),
           ({"name": "x", "repeats": 0}, "sweep x: sweep.repeats must be a positive integer (got 0)"),
           ({"name": "x", "repeats": "2"}, "sweep.repeats must be a positive integer (got '2')")]
    for data, message in bad:
        with pytest.raises(UserError) as e:
            SweepSpec.from_dict(data)
        assert message in str(e.value), data
    with pytest.raises(UserError, match="repeat"):
        SweepSpec.from_dict({"name": "x", "repeat": 2})  # a typo is refused, not ignored


def test_override_writes_what_hydra_reads_back():
    assert override("a", False) == "a=false"
    assert override("a", [1, None, True, "x y"]) == "a=[1,null,true,'x y']"
    assert override("a", ()) == "a=[]"
    assert override("a", "") == "a=''"
    assert override("a", "it's") == "a='it\\'s'"
    assert override("a", "c:\\x") == "a='c:\\\\x'"
    for c in " ,=[]{}()'\"\\:":
        assert override("a", f"x{c}y").startswith("a='"), c
    assert override("a", 1.5) == "a=1.5" and override("a", "plain-name_1.0") == "a=plain-name_1.0"


def test_only_overrides_that_steer_the_runner_are_kept_from_the_points():
    user = ["sweep=s", "launcher.parallel=2", "+results_dir=/x", "~repeat", "retry_failed=true", "search=a",
            "method.r=8", "train.max_steps=3", "+task.x=1", "sweeps=1"]
    assert passthrough(user) == ["method.r=8", "train.max_steps=3", "+task.x=1", "sweeps=1"]


@pytest.fixture
def fake_spec(monkeypatch):
    """load_spec stand-in: the run id is the overrides that make a run distinct (not results_dir)."""
    calls = []

    def load_spec(ovs):
        calls.append(list(ovs))
        if "method=broken" in ovs:
            raise UserError("method 'broken' is not a method")
        ident = " ".join(o for o in ovs if not o.startswith(("results_dir=", "same=")))
        return SimpleNamespace(run_id=ident)

    monkeypatch.setattr(harness.config, "load_spec", load_spec)
    return calls


def test_every_point_grid_value_and_repeat_is_one_run_with_the_overrides_in_order(fake_spec, tmp_path):
    sweep = SweepSpec("s", repeats=2, points=({"method": "lora"}, {"method": "dora"}), grid={"method.r": [1, 2]},
                      overrides=("train.save=none",))
    points = expand(sweep, ["sweep=s", "train.max_steps=3"], tmp_path)
    assert [p.index for p in points] == list(range(8))
    assert [p.label for p in points[:3]] == ["method=lora method.r=1 repeat=0", "method=lora method.r=1 repeat=1",
                                             "method=lora method.r=2 repeat=0"]
    assert points[-1].label == "method=dora method.r=2 repeat=1"
    assert points[1].overrides == ("train.save=none", "method=lora", "method.r=1", "train.max_steps=3", "repeat=1",
                                   f"results_dir={tmp_path}")
    assert points[1].run_id == points[1].spec.run_id
    assert fake_spec[1] == list(points[1].overrides)


def test_one_repeat_is_labelled_by_its_overrides_alone_and_no_overrides_by_defaults(fake_spec, tmp_path):
    points = expand(SweepSpec("s"), [], tmp_path)
    assert [(p.label, p.overrides) for p in points] == [("(defaults)", ("repeat=0", f"results_dir={tmp_path}"))]
    points = expand(SweepSpec("s", grid={"method.r": [4]}), [], tmp_path)
    assert points[0].label == "method.r=4"


def test_a_bad_point_a_key_set_twice_and_two_identical_runs_are_refused_by_name(fake_spec, tmp_path):
    with pytest.raises(UserError) as e:
        expand(SweepSpec("s", points=({"method": "lora"}, {"method": "broken"})), [], tmp_path)
    assert str(e.value) == "sweep s, point 'method=broken': method 'broken' is not a method"
    with pytest.raises(UserError) as e:
        expand(SweepSpec("s", points=({"method.r": 2, "b": 1},), grid={"method.r": [1], "b": [2]}), [], tmp_path)
    assert str(e.value) == "sweep s: 'b' is set both in a point and in the grid; set it in one place"
    with pytest.raises(UserError) as e:
        expand(SweepSpec("s", points=({"same": 1}, {"same": 2})), [], tmp_path)
    assert str(e.value) == "sweep s: points 'same=1' and 'same=2' are the same run (repeat=0)"


def _record(d, run_id, status):
    (d / f"{run_id}.json").write_text(json.dumps({"run_id": run_id, "status": status}))


def test_an_ok_record_is_final_a_failed_one_only_without_retry_and_an_unreadable_one_reruns(tmp_path):
    pts = [SimpleNamespace(index=i, run_id=r) for i, r in enumerate(["ok", "oom", "bad", "none"])]
    _record(tmp_path, "ok", "ok")
    _record(tmp_path, "oom", "oom")
    (tmp_path / "bad.json").write_text("{not json")
    todo, done = pending(pts, tmp_path, retry_failed=False)
    assert [p.run_id for p in todo] == ["bad", "none"]
    assert sorted(done) == [0, 1] and done[1].record["status"] == "oom"
    assert done[0].skipped and done[0].seconds == 0.0
    todo, done = pending(pts, tmp_path, retry_failed=True)
    assert [p.run_id for p in todo] == ["oom", "bad", "none"] and list(done) == [0]


def test_stray_temp_files_ours_always_others_only_when_old(tmp_path):
    ours, fresh, old = (tmp_path / n for n in (".a.json.123.tmp", ".b.json.456.tmp", ".c.json.789.tmp"))
    for p in (ours, fresh, old):
        p.write_text("{")
    keep = tmp_path / "a.json"
    keep.write_text("{}")
    past = time.time() - STRAY_TMP_AGE_S - 5
    os.utime(old, (past, past))
    recent = time.time() - STRAY_TMP_AGE_S + 60
    os.utime(fresh, (recent, recent))
    removed = clean_stray_tmp(tmp_path, {"a"})
    assert sorted(p.name for p in removed) == [ours.name, old.name]
    assert fresh.exists() and keep.exists() and not ours.exists() and not old.exists()


def test_a_second_runner_on_the_same_sweep_and_folder_is_refused_and_another_sweep_is_not(tmp_path):
    held = lock(tmp_path, "smoke")
    try:
        with pytest.raises(UserError) as e:
            lock(tmp_path, "smoke")
        assert str(e.value) == f"sweep 'smoke' is already running on {tmp_path} (lock .sweep-smoke.lock is held)"
        lock(tmp_path, "other").close()
    finally:
        held.close()
    lock(tmp_path, "smoke").close()  # released when its holder closes (or dies)
