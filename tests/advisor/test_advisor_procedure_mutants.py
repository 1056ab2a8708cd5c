"""advisor/decide/procedure.py at the guide's thresholds (10 examples, 500, 10K) and the step titles
`advisor recommend --explain` prints. Written against the survivors of
`scripts/mutation.sh advisor_procedure` (docs/mutation.md)."""

from __future__ import annotations

from advisor.decide.procedure import recommend
from advisor.decide.recipe import Inputs
from advisor.inputs.catalog import parse_gpu, resolve_model


def rec(gpu="24GB", examples=3000, capability="instruction", model=None, **kw):
    return recommend(Inputs(parse_gpu(gpu), examples, capability, model=resolve_model(model) if model else None, **kw))


def titles(r) -> list[str]:
    return [s.title for s in r.steps]


def step(r, title):
    return next(s for s in r.steps if s.title == title)


def test_no_examples_is_one_data_step_and_ten_are_enough_to_train():
    none = rec(examples=0)
    assert none.method == "none" and titles(none)[0] == "Data"
    nine, ten = rec(examples=9), rec(examples=10)
    assert nine.method == "none" and ten.method != "none"
    assert [a.option for a in nine.alternatives][:1] == ["lora"]
    assert "R-DATA-LT10" in " ".join(a.why_not for a in nine.alternatives)


def test_the_steps_are_titled_as_explain_prints_them():
    r = rec()
    assert titles(r)[:3] == ["Data", "Objective", "Methods"] and "Memory" in titles(r)
    assert titles(rec(capability="code"))[:2] == ["Data", "Objective"]
    assert titles(rec(capability="reasoning", verifiable_reward=True))[:2] == ["Data", "Objective"]
    assert "R-CAP-SFT" in step(rec(capability="code"), "Objective").rules


def test_data_size_rules_switch_at_500_and_10k_examples():
    assert "R-DATA-LT500" in rec(examples=499).rules and "R-DATA-500-10K" in rec(examples=500).rules
    assert "R-DATA-500-10K" in rec(examples=9_999).rules and "R-DATA-10K-500K" in rec(examples=10_000).rules
    small = " ".join(rec(examples=499).warnings)
    assert "R-DATA-LT500" in small or "500" in small
    assert " ".join(rec(examples=499).warnings) != " ".join(rec(examples=500).warnings)


def test_code_without_a_reward_is_sft_with_grpo_named_as_the_alternative():
    r = rec(capability="code")
    assert r.method != "grpo" and "GRPO is out" in step(r, "Objective").text
    assert any(a.option == "grpo" for a in r.alternatives)


def test_each_alternative_reports_its_own_peak():
    r = rec("24GB", 3000, "style", "7B")
    peaks = [a.peak_gb for a in r.alternatives if a.peak_gb is not None]
    assert len(set(peaks)) > 1 and all(p > 2 for p in peaks)


def test_alignment_names_dpo_as_the_alternative_only_when_it_is_not_chosen():
    pairs = rec(capability="alignment", preference_pairs=5000)
    assert pairs.method == "dpo" and not any(a.option == "dpo" for a in pairs.alternatives)
    few = rec(capability="alignment", preference_pairs=100)
    assert few.method != "dpo" and "preference pairs is below DPO's ~3K minimum: train with SFT on your examples" in step(few, "Objective").text


def test_the_small_data_warning_starts_below_500_examples():
    small = "SFT overfits below ~500 examples"
    assert any(w.startswith(small) for w in rec(examples=499).warnings)
    assert not any(w.startswith(small) for w in rec(examples=500).warnings)


def test_warnings_for_audits_one_gpu_grpo_and_cards_without_bf16():
    audit = rec(auditability="high").warnings
    assert any(w.startswith("Auditability high: train only from a versioned, documented dataset") for w in audit)
    grpo = rec(capability="reasoning", verifiable_reward=True)
    assert grpo.method == "grpo"
    assert any(w.startswith("The guide puts GRPO rollouts on multi-GPU infrastructure") for w in grpo.warnings)
    t4 = rec("T4")
    assert any(w == "T4 has no bf16: train in fp16 with loss scaling (same memory, less range)." for w in t4.warnings)


def test_dpo_with_examples_of_another_capability_runs_sft_first_and_notes_50k_pairs():
    mixed = rec(capability="instruction", preference_pairs=5000, examples=10)
    objective = step(mixed, "Objective")
    assert "You also have 10 examples: run SFT on them first, then DPO." in objective.text
    assert "R-CAP-MIXED" in objective.rules
    big = step(rec(capability="alignment", preference_pairs=60_000), "Objective")
    assert "Above 50K the guide suggests PPO/RLHF for larger budgets" in big.text


def test_full_fine_tuning_cites_the_full_memory_rule():
    r = rec("80GB", 100_000, "instruction", "7B")
    assert r.method == "full" and step(r, "Memory").rules[0] == "R-MEM-FULL"
    assert step(rec("24GB", 3000, "style", "7B"), "Memory").rules[0] == "R-MEM-LORA"
