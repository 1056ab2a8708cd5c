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


# ---------------------------------------------------------------- written against the survivors of the second pass
def _point(sweep, method, n=None, score=0.5, se=0.03, rank=16, lr=2e-4, run_id=None):
    from advisor.decide.evidence import Point

    return Point(run_id or f"{sweep}-{method}-{n}-{rank}", sweep, method, rank if method != "full" else None, lr, n, score, se)


def test_one_example_still_reads_the_nearest_data_scaling_size():
    from advisor.decide.evidence import at_size

    pts = [_point("data_scaling", "lora", n=64, score=0.3), _point("data_scaling", "lora", n=512, score=0.5),
           _point("data_scaling", "full", n=64, score=0.4)]  # fmt: skip
    size, best = at_size(pts, 1)
    assert size == 64 and {m: p.score for m, p in best.items()} == {"lora": 0.3, "full": 0.4}
    assert at_size(pts, 0) == (None, {})


def _scaling(d, curve):
    from test_learning import _record

    for m, n, s in curve:
        rec = _record("data_scaling", m, r=16 if m != "full" else None, lr=2e-4 if m != "full" else 2e-5, n=n, score=s)
        write(d, rec)
    return d


def test_data_scaling_text_names_each_method_and_no_ratio_without_a_full_point(tmp_path, run_cli):
    d = _scaling(tmp_path / "ds", [("lora", 512, 0.55), ("dora", 512, 0.50)])
    text = " ".join(s["text"] for s in _advise(run_cli, d)["steps"] if s["title"] == "Measured")
    assert "at 512 examples (the data_scaling size nearest your 500): lora r=16, lr 2e-4 scores 0.55 ± 0.03; dora r=16, lr 2e-4 scores 0.50 ± 0.03" in text


def test_data_scaling_evidence_is_for_sft_recipes_only(tmp_path, run_cli):
    d = _scaling(tmp_path / "ds", [("lora", 512, 0.30), ("full", 512, 0.90)])
    assert _advise(run_cli, d)["method"] == "full"  # the same records switch an sft recipe
    dpo = _advise(run_cli, d, "--examples", "10", "--preference-pairs", "5000")
    assert (dpo["method"], dpo["inner"]) == ("dpo", "lora")
    assert not any(s["title"] == "Measured" for s in dpo["steps"])


def test_a_method_that_does_not_fit_the_budget_is_not_switched_to(tmp_path, run_cli):
    d = _scaling(tmp_path / "ds", [("lora", 512, 0.30), ("full", 512, 0.90)])
    assert _advise(run_cli, d)["method"] == "full"  # 24 GB: full fine-tuning fits, the measured lead switches
    small = _advise(run_cli, d, "--gpu", "3GB")  # full fine-tuning does not fit 3 GB: the rules' lora stays
    assert small["method"] == "lora" and small["feasible"] and small["estimated_peak_gb"] <= 3
    text = next(s["text"] for s in small["steps"] if s["title"] == "Measured")
    assert "switched" not in text and "decide over the gain pooled across all runs (full ahead)" in text


def _forgetting_runs(d, keeper_rank=16, full_scores=(0.80,), lora_scores=(0.82,), sizes=(None,)):
    from test_advisor_forgetting import _run

    for i in range(3):
        for n, fs, ls in zip(sizes, full_scores, lora_scores):
            full, lora = _run(i, "full", 1e-5, forgets=True, score=fs), _run(i, "lora", 2e-4, forgets=False, score=ls)
            lora["config"]["method"]["r"] = keeper_rank
            for rec in (full, lora):
                rec["run_id"] += f"-{n}"
                rec["config"]["task"]["n_train"] = n
                write(d, rec)
    return d


CLS = ("--capability", "classification")


def test_the_lora_that_kept_is_sized_at_its_own_rank_and_the_text_lists_every_probe(tmp_path, run_cli):
    r16 = _advise(run_cli, _forgetting_runs(tmp_path / "r16"), *CLS, "--examples", "100000")
    r64 = _advise(run_cli, _forgetting_runs(tmp_path / "r64", keeper_rank=64), *CLS, "--examples", "100000")
    assert (r16["method"], r16["rank"], r64["method"], r64["rank"], r64["alpha"]) == ("lora", 16, "lora", 64, 128)
    assert r64["estimated_peak_gb"] > r16["estimated_peak_gb"]  # the plan re-sized with the keeper's 4x adapters
    text = next(s["text"] for s in r64["steps"] if s["title"] == "Evidence overrides")
    assert text.startswith("Switching to lora r=64 lr 2e-4: measured, full lr 1e-5 raised general_ppl 44 → 73")
    assert "(3 of 3 run(s) worse by > 2 SE) and lowered general_mc 0.71 → 0.60" in text
    assert "(0 of 3 run(s) worse by > 2 SE) and kept general_mc 0.71 → 0.70" in text


def test_a_keeper_significantly_worse_at_the_nearest_size_is_not_switched_to(tmp_path, run_cli):
    """Scores compared at the size nearest --examples, not averaged over sizes: at 100,000 examples full
    fine-tuning scores 0.80 and the LoRA that kept 0.66 (worse by > 2 SE); over both sizes they tie."""
    d = _forgetting_runs(tmp_path / "runs", full_scores=(0.80, 0.50), lora_scores=(0.66, 0.60), sizes=(100000, 1000))
    rec = _advise(run_cli, d, *CLS, "--examples", "100000")
    assert rec["method"] == "full"
    assert not any(s["title"] == "Evidence overrides" for s in rec["steps"])


def test_a_measured_recipe_lr_is_not_called_unmeasured(tmp_path, run_cli):
    from test_advisor_forgetting import _run

    d = tmp_path / "runs"
    for i in range(3):
        write(d, _run(i, "lora", 2e-4, forgets=False, score=0.8))  # the recipe's own lora at its lr 2e-4: kept
    rec = _advise(run_cli, d, *CLS)
    text = next(s["text"] for s in rec["steps"] if s["title"] == "Measured forgetting")
    assert "lora r=16 lr 2e-4 kept" in text and "was not measured here" not in text
    forgot = tmp_path / "forgot"  # the recipe's own lr measured to forget, nothing kept: said, not called unmeasured
    for i in range(3):
        write(forgot, _run(i, "lora", 2e-4, forgets=True, score=0.8))
    text = next(s["text"] for s in _advise(run_cli, forgot, *CLS)["steps"] if s["title"] == "Measured forgetting")
    assert "lora r=16 lr 2e-4 lowered general_mc" in text and "was not measured here" not in text
    other = tmp_path / "other"
    for i in range(3):
        write(other, _run(i, "lora", 1e-3, forgets=False, score=0.8))
    text = next(s["text"] for s in _advise(run_cli, other, *CLS)["steps"] if s["title"] == "Measured forgetting")
    assert text.endswith("The recipe's own lr (2e-4) was not measured here: score the probes before and after.")


def test_full_fine_tunings_lr_rank_text_names_the_rules_lr(tmp_path, run_cli):
    d = tmp_path / "runs"
    for lr, score in ((1e-5, 0.60), (3e-5, 0.62)):
        rec = make_record(f"full-{lr:g}", method="full", r=None, task_score=score)
        rec["sweep"] = {"name": "lr_rank"}
        rec["config"]["train"]["lr"] = lr
        write(d, rec)
    rec = _advise(run_cli, d, *CLS, "--examples", "100000")
    text = next(s["text"] for s in rec["steps"] if s["title"] == "Measured")
    assert (rec["method"], rec["learning_rate"]) == ("full", 2e-5)
    assert "the rules' lr 2e-5 (nearest measured: full, lr 3e-5, 0.62) is within 2 SE, kept" in text


def test_an_oom_warning_names_at_most_three_runs(tmp_path, run_cli):
    d = tmp_path / "runs"
    write(d, make_record("lora-ok", task_score=0.6))
    for i in range(4):
        write(d, make_record(f"oom-{i}", status="oom", device="cuda", batch=1, seq=128, kind="cuda_allocated"))
    warning = next(w for w in _advise(run_cli, d)["warnings"] if w.startswith("Measured: 4 lora run(s)"))
    assert "(oom-0, oom-1, oom-2)" in warning


def test_a_cpu_runs_estimate_is_the_resident_set_a_cuda_runs_the_allocated_peak(tmp_path, run_cli):
    from advisor.inputs.harness_runs import load_runs
    from advisor.memory.estimate import estimate
    from advisor.memory.setup import setup_for_run

    d = tmp_path / "runs"
    write(d, make_record("on-cpu", kind="cpu_rss_delta"))
    write(d, make_record("on-cuda", device="cuda", kind="cuda_allocated"))
    rows = {e["run_id"]: e for e in _advise(run_cli, d)["evidence"]}
    runs = {r.run_id: r for r in load_runs(d)[0]}
    cpu, cuda = (estimate(setup_for_run(runs[k])[0]) for k in ("on-cpu", "on-cuda"))
    assert rows["on-cpu"]["estimated_peak_gb"] == round(cpu.cpu_resident_gb, 3) != round(cpu.peak_allocated_gb, 3)
    assert rows["on-cuda"]["estimated_peak_gb"] == round(cuda.peak_allocated_gb, 3)


def test_a_measured_speed_on_the_named_gpu_sets_the_time(tmp_path, run_cli):
    d = tmp_path / "runs"
    rec = make_record("lora-4090", device="cuda", kind="cuda_allocated", tokens_per_s=1000.0)
    rec["hardware"]["device_name"] = "NVIDIA GeForce RTX 4090"
    write(d, rec)
    (tmp_path / "none").mkdir()
    measured, modelled = (_advise(run_cli, p, "--gpu", "RTX 4090") for p in (d, tmp_path / "none"))
    assert measured["time_basis"] != modelled["time_basis"] and "1,000" in measured["time_basis"]


def test_a_keeper_without_a_task_score_is_said_unscored(tmp_path, run_cli):
    from test_advisor_forgetting import _run

    d = tmp_path / "runs"
    for i in range(3):
        write(d, _run(i, "full", 1e-5, forgets=True, score=0.80))
        lora = _run(i, "lora", 2e-4, forgets=False, score=0.82)
        lora["metrics"]["task_score"] = None  # the probes ran, the task eval did not
        write(d, lora)
    rec = _advise(run_cli, d, *CLS, "--examples", "100000")
    text = next(s["text"] for s in rec["steps"] if s["title"] == "Evidence overrides")
    assert text.endswith("at a task score not significantly lower (unscored against 0.80 ± 0.02).")
