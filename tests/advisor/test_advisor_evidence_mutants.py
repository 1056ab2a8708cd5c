"""advisor/decide/evidence.py: each way measured runs change a recipe, seen in `advisor recommend
--json`. Written against the survivors of `scripts/mutation.sh advisor_evidence` (docs/mutation.md)."""

from __future__ import annotations

import json

from advisor_testkit import make_record, write


def _advise(run_cli, results, *extra) -> dict:
    code, out, err = run_cli("recommend", "--gpu", "24GB", "--examples", "500", "--model", "smollm2-135m",
                             "--results", str(results), "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_a_method_measured_significantly_ahead_on_this_model_replaces_the_rules_choice(tmp_path, run_cli):
    (tmp_path / "none").mkdir()
    plain = _advise(run_cli, tmp_path / "none")
    assert plain["method"] == "lora"
    d = tmp_path / "runs"
    for i in range(2):
        write(d, make_record(f"lora-{i}", method="lora", task_score=0.40, base=0.35, stderr=0.02))
        write(d, make_record(f"full-{i}", method="full", r=None, task_score=0.80, base=0.35, stderr=0.02))
    measured = _advise(run_cli, d)
    assert measured["method"] == "full" and measured["rank"] is None
    titles = [s["title"] for s in measured["steps"]]
    assert "Evidence overrides" in titles
    text = next(s["text"] for s in measured["steps"] if s["title"] == "Evidence overrides")
    assert text.startswith("Switching lora → full: measured ahead on this model")
    # the evidence table carries what each run measured and what the model estimated for it
    row = next(e for e in measured["evidence"] if e["run_id"] == "lora-0")
    assert row["batch_size"] == 8 and row["task_gain"] > 0 and row["estimated_peak_gb"] is not None


def test_a_lead_within_the_noise_keeps_the_rules_choice(tmp_path, run_cli):
    d = tmp_path / "runs"
    write(d, make_record("lora-0", method="lora", task_score=0.60, base=0.35, stderr=0.05))
    write(d, make_record("full-0", method="full", r=None, task_score=0.66, base=0.35, stderr=0.05))
    assert _advise(run_cli, d)["method"] == "lora"


def test_a_rank_taken_from_lr_rank_records_keeps_alpha_at_twice_the_rank(tmp_path, run_cli):
    d = tmp_path / "runs"
    for r, lr, score in ((16, 2e-4, 0.55), (32, 2e-3, 0.93), (4, 2e-3, 0.70)):
        rec = make_record(f"lr-{r}-{lr:g}", r=r, task_score=score, stderr=0.03)
        rec["sweep"] = {"name": "lr_rank"}
        rec["config"]["train"]["lr"] = lr
        write(d, rec)
    measured = _advise(run_cli, d)
    assert (measured["rank"], measured["learning_rate"]) == (32, 2e-3)
    assert measured["alpha"] == 64


def test_runs_of_another_model_are_said_not_used(tmp_path, run_cli):
    d = tmp_path / "runs"
    rec = make_record("other-0", arch={**make_record("x")["config"]["model"]["arch"], "hidden_size": 1024})
    write(d, rec)
    measured = _advise(run_cli, d)
    ev = next(s for s in measured["steps"] if s["title"] == "Evidence")
    assert ev["text"].startswith("1 harness run(s) in the results, none of ")


def test_a_cuda_oom_of_the_same_setup_is_a_warning_naming_the_run(tmp_path, run_cli):
    d = tmp_path / "runs"
    write(d, make_record("lora-ok", task_score=0.6))
    write(d, make_record("lora-oom", status="oom", device="cuda", batch=1, seq=128, kind="cuda_allocated"))
    full = make_record("full-0", method="full", r=None, task_score=0.6)
    write(d, full)
    measured = _advise(run_cli, d)
    assert any(w.startswith("Measured: 1 lora run(s) of this model ran out of memory") and "(lora-oom)" in w
               for w in measured["warnings"])
    rows = {e["run_id"]: e for e in measured["evidence"]}
    assert rows["full-0"]["rank"] is None and rows["lora-ok"]["rank"] == 16


def test_full_fine_tuning_measured_to_forget_switches_to_the_lora_that_kept_with_its_rank_and_alpha_2r(tmp_path, run_cli):
    from test_advisor_forgetting import _run

    args = ("recommend", "--gpu", "24GB", "--examples", "100000", "--model", "smollm2-135m", "--capability",
            "classification", "--json", "--results")
    (tmp_path / "none").mkdir()
    code, out, _ = run_cli(*args, str(tmp_path / "none"))
    assert code == 0 and json.loads(out)["method"] == "full"
    d = tmp_path / "runs"
    for i in range(3):
        write(d, _run(i, "full", 1e-5, forgets=True, score=0.80))
        write(d, _run(i, "lora", 2e-4, forgets=False, score=0.82))
    code, out, err = run_cli(*args, str(d))
    assert code == 0, err
    rec = json.loads(out)
    assert (rec["method"], rec["rank"], rec["alpha"], rec["learning_rate"]) == ("lora", 16, 32, 2e-4)
    assert any(s["title"] == "Evidence overrides" for s in rec["steps"])
