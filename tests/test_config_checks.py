"""Fail fast: every bad config value is a one-line error with exit 2, before anything loads.

Each case runs the real CLI in a subprocess (as a user would) with a results folder that must
stay empty: no record, no log, no artifact means nothing was trained.
"""

from __future__ import annotations

import pytest

from tests.conftest import TINY, cli

# (overrides, the key the message must name, the bad value as printed, what is accepted)
BAD = [
    (["seed=-3"], "seed", "-3", ">= 0"),
    (["budget_gb=-5"], "budget_gb", "-5", "> 0"),
    (["timeout_s=-1"], "timeout_s", "-1", "> 0"),
    (["train.batch_size=abc"], "train.batch_size", "'abc'", "an integer"),
    (["train.lr=abc"], "train.lr", "'abc'", "a number or null"),
    (["method.r=0"], "method.r", "0", "positive integer"),
    (["method=lorax"], "method option", "lorax", "choose one of:"),
    (["method.name=lorax"], "method.name", "lorax", "choose one of:"),
    (["task.n_train=-1"], "task.n_train", "-1", ">= 0"),
    (["train.scheduler=cosin"], "train.scheduler", "cosin", "did you mean 'cosine'"),
    (["model.trust_remote_code=yes"], "model.trust_remote_code", "'yes'", "true or false"),
    (["eval.probe_limit=0"], "eval.probe_limit", "0", ">= 1"),
    (["method=lora", "+method.options.rank=4"], "method.options.rank", "rank", "accepted"),
    (["train.loss=fused"], "train.loss", "fused", "chunked"),
    (["train.checkpointing=some"], "train.checkpointing", "some", "selective"),
    (["train.checkpointing=none", "train.grad_checkpointing=true"], "train.checkpointing", "none", "set one"),
    (["method=dpo", "train.loss=chunked"], "train.loss", "chunked", "supervised methods"),
    (["train.kernels=[ligr]"], "train.kernels", "ligr", "did you mean 'liger'"),
    (["method=grpo", "train.kernels=[liger]"], "train.kernels", "rms_norm,swiglu,rope", "supervised methods"),
]


@pytest.mark.parametrize("overrides, key, value, accepted", BAD, ids=[b[0][-1] for b in BAD])
def test_bad_value_exits_2_with_one_line_before_training(tmp_path, overrides, key, value, accepted):
    results = tmp_path / "runs"
    res = cli(*TINY, f"results_dir={results}", *overrides, timeout=60)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), res.stderr
    assert key in lines[0] and value in lines[0] and accepted in lines[0], lines[0]
    assert not results.exists() or not any(results.rglob("*"))  # nothing trained, nothing written


def test_unwritable_results_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for bad in ("/proc/x", str(blocker / "runs")):
        res = cli(*TINY, f"results_dir={bad}", timeout=60)
        assert res.returncode == 2, res.stderr[-2000:]
        lines = res.stderr.strip().splitlines()
        assert lines == [lines[0]] and f"results_dir={bad} is not a writable directory" in lines[0], res.stderr
        assert "train" not in res.stdout  # the run never started: no progress bar, no table


def test_a_good_config_still_passes_the_checks():
    from harness.config import load_spec

    spec = load_spec([*TINY, "budget_gb=2", "timeout_s=30.5", "seed=3", "eval.probes=[general_mc]"])
    assert (spec.budget_gb, spec.timeout_s, spec.seed, spec.eval.probes) == (2, 30.5, 3, ("general_mc",))


def test_every_method_yaml_is_in_the_method_table_and_back():
    """The table (harness/method_table.py) and the config group (sweeps/method/) name the same methods."""
    from harness.config import group_options
    from harness.method_table import METHODS
    from harness.methods import get_method

    assert set(group_options("method")) == set(METHODS)
    for name in METHODS:
        spec = load_spec_for(name)
        assert spec.method.name == name
        method = get_method(name, spec.method.inner)
        assert method.capabilities.trains_base in (True, False), name  # a wrapper takes its inner method's answer


def load_spec_for(name: str):
    from harness.config import load_spec

    return load_spec([f"method={name}"])


def test_defaults_live_in_the_yaml_only():
    """The spec dataclasses declare fields and check them; a default there would be a second home."""
    import dataclasses

    from harness.spec import EvalSpec, MethodSpec, ModelSpec, RunSpec, TaskSpec, TrainSpec

    with_default = [f"{cls.__name__}.{f.name}" for cls in (ModelSpec, MethodSpec, TaskSpec, TrainSpec, EvalSpec, RunSpec)
                    for f in dataclasses.fields(cls)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
    assert with_default == []


def test_a_manifest_from_before_a_field_existed_is_completed_from_the_yaml():
    import pytest as _pytest

    from harness.config import load_spec, spec_from_dict
    from harness.errors import UserError

    spec = load_spec([*TINY, "method=dora", "train.log_every=3"])
    old = spec.to_dict()
    del old["train"]["log_every"], old["method"]["targets"]  # written before these fields were added
    with _pytest.raises(UserError, match="missing"):
        spec_from_dict(old)
    again = spec_from_dict(old, complete=True)
    assert again.train.log_every == 1 and again.method.targets == "all-linear"  # config.yaml's and dora.yaml's
    assert again.method.use_dora and again.model.arch == spec.model.arch  # what the manifest says wins


def test_settings_added_later_leave_committed_records_ids_as_they_were():
    """A sweep skips a point whose record exists, by run id: a setting added since (train.loss, .checkpointing,
    .kernels) must leave the id of a run at its default unchanged, or every committed point would run again."""
    import json
    from pathlib import Path

    from harness.config import spec_from_dict

    root = Path(__file__).resolve().parents[1] / "results"
    # sweep=stack wrote train.loss and .checkpointing but not .kernels; lr_rank none of the three
    records = [json.loads(p.read_text()) for d in ("stack", "lr_rank") for p in sorted((root / d).glob("*.json"))[:3]]
    trains = [r["config"]["train"] for r in records]
    assert len(records) == 6 and not any("kernels" in t for t in trains) and sum("loss" in t for t in trains) == 3
    for r in records:
        assert spec_from_dict(r["config"], complete=True).run_id == r["run_id"]
