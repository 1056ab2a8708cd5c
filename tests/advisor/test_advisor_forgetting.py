"""Advice that follows measured forgetting: records that contradict the guide's "LoRA forgets less"
(R-FORGET) change the recipe; records that agree with it, or that do not match, leave it alone."""

from __future__ import annotations

import json

from advisor_testkit import make_record, write

from advisor.decide.forgetting import family

ARGS = ("recommend", "--gpu", "24GB", "--examples", "3000", "--model", "smollm2-135m", "--capability", "classification", "--json")


def _probe(base: float, tuned: float, se: float, higher_is_better: bool) -> dict:
    drop = (base - tuned) if higher_is_better else (tuned - base)
    return {"base": base, "tuned": tuned, "delta": base - tuned, "drop": drop, "stderr": se,
            "significant": drop > 2 * se, "higher_is_better": higher_is_better}  # fmt: skip


QWEN_05B = {"num_hidden_layers": 24, "hidden_size": 896, "intermediate_size": 4864, "num_attention_heads": 14,
            "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}  # fmt: skip


def _run(i: int, method: str, lr: float, *, forgets: bool, score: float, model: str = "smollm2-135m", task: str = "tickets") -> dict:
    arch = QWEN_05B if model.startswith("qwen") else None
    rec = make_record(f"{model}-{task}-{method}-{lr:g}-{i}", method=method, r=16 if method == "lora" else None, task_score=score,
                      stderr=0.03, arch=arch)  # fmt: skip
    rec["config"]["train"]["lr"] = lr
    rec["config"]["model"]["name"] = model
    rec["config"]["task"]["name"] = task
    ppl, mc = (73.0, 0.60) if forgets else (44.5, 0.70)
    rec["metrics"]["forgetting"] = {"general_ppl": _probe(44.0, ppl, 3.5, False), "general_mc": _probe(0.71, mc, 0.035, True)}
    return rec


def _advise(run_cli, tmp_path, runs, *extra) -> dict:
    (tmp_path / "runs").mkdir(parents=True, exist_ok=True)
    for rec in runs:
        write(tmp_path / "runs", rec)
    code, out, err = run_cli(*ARGS, "--results", str(tmp_path), *extra)
    assert code == 0, err
    return json.loads(out)


def _lora_forgets(lr: float) -> list[dict]:
    """LoRA at ``lr`` forgets both probes in all 3 runs; full fine-tuning at 1e-4 keeps them, scoring as well."""
    return [_run(i, "lora", lr, forgets=True, score=0.80) for i in range(3)] + [_run(i, "full", 1e-4, forgets=False, score=0.82) for i in range(3)]


def test_records_that_contradict_r_forget_switch_the_recipe_to_what_kept_the_probes(run_cli, tmp_path):
    plain = _advise(run_cli, tmp_path / "none", [])
    assert (plain["method"], plain["learning_rate"]) == ("lora", 2e-4)
    d = _advise(run_cli, tmp_path, _lora_forgets(2e-4))  # forgot at the recipe's own lr
    assert (d["method"], d["learning_rate"], d["rank"]) == ("full", 1e-4, None)
    assert d["advice"] == "full on SmolLM2-135M"
    switch = next(s["text"] for s in d["steps"] if s["title"] == "Evidence overrides")
    assert "lora r=16 lr 2e-4 raised general_ppl 44 → 73" in switch and "full lr 1e-4 kept general_ppl" in switch
    assert d["forgetting"]["rules_contradicted"] == ["R-FORGET"]
    full = next(c for c in d["forgetting"]["configs"] if c["method"] == "full")
    assert full["probes"]["general_ppl"]["kept"] and len(full["probes"]["general_ppl"]["runs"]) == 3
    lora_alt = next(a for a in d["alternatives"] if a["option"] == "lora")
    assert "measured to forget more" in lora_alt["why_not"]


def test_forgetting_at_another_lr_qualifies_the_rule_but_keeps_the_method(run_cli, tmp_path):
    d = _advise(run_cli, tmp_path, _lora_forgets(1e-3))  # the recipe's lr 2e-4 was not measured
    assert (d["method"], d["learning_rate"]) == ("lora", 2e-4)
    assert d["forgetting"]["rules_contradicted"] == ["R-FORGET"]
    full_alt = next(a for a in d["alternatives"] if a["option"] == "full")
    assert "forgets more" not in full_alt["why_not"].replace("\"full fine-tuning forgets more\" (R-FORGET) is dropped", "")
    assert any("contradict the guide's \"LoRA forgets less\"" in w and "lora r=16 lr 1e-3 forgot general_mc, general_ppl" in w
               for w in d["warnings"])  # fmt: skip
    said = next(s["text"] for s in d["steps"] if s["title"] == "Measured forgetting")
    assert "The recipe's own lr (2e-4) was not measured here" in said


def test_records_that_agree_with_r_forget_change_nothing(run_cli, tmp_path):
    plain = _advise(run_cli, tmp_path / "none", [])
    agree = [_run(i, "lora", 2e-4, forgets=False, score=0.80) for i in range(3)] + [_run(i, "full", 2e-5, forgets=True, score=0.82) for i in range(3)]
    d = _advise(run_cli, tmp_path, agree)
    assert (d["method"], d["learning_rate"], d["rank"]) == (plain["method"], plain["learning_rate"], plain["rank"])
    assert d["forgetting"]["rules_contradicted"] == []
    assert any("R-FORGET" in w and "a drop > 2–3 points is a warning" in w for w in d["warnings"])


def test_forgetting_of_another_family_or_task_kind_is_not_evidence(run_cli, tmp_path):
    other = [_run(i, "lora", 2e-4, forgets=True, score=0.8, model="qwen2.5-0.5b") for i in range(3)]
    other += [_run(i, "full", 1e-4, forgets=False, score=0.8, model="qwen2.5-0.5b") for i in range(3)]
    other += [_run(i + 3, "lora", 2e-4, forgets=True, score=0.8, task="arithmetic") for i in range(3)]
    d = _advise(run_cli, tmp_path, other)
    assert d["method"] == "lora" and d["forgetting"] is None
    # same family, another size: SmolLM2-135M's records speak for SmolLM2-360M
    assert family("SmolLM2-360M") == family("smollm2-135m") == "smollm2" and family("Qwen2.5-7B-Instruct") == "qwen2.5"


def test_when_both_methods_forget_nothing_is_switched_or_contradicted(run_cli, tmp_path):
    both = [_run(i, "lora", 2e-4, forgets=True, score=0.80) for i in range(3)] + [_run(i, "full", 1e-4, forgets=True, score=0.82) for i in range(3)]
    d = _advise(run_cli, tmp_path, both)
    assert (d["method"], d["learning_rate"]) == ("lora", 2e-4)
    assert d["forgetting"]["rules_contradicted"] == []
    assert all(c["probes"]["general_ppl"]["forgot"] for c in d["forgetting"]["configs"])
