"""The decision procedure: from inputs to a recipe, recording each step and the rule behind it.

One linear function, ``recommend``, reads top to bottom the way ``advisor explain`` prints it:
1. is fine-tuning warranted at all (data), 2. which objective (SFT / DPO / GRPO), 3. which
methods in which order (data size, GPUs), 4. which model (given, or the largest that fits),
5. how the guide's budget table compares, 6. hyperparameters, 7. measured evidence,
8. alternatives and why each lost, 9. warnings. The rules themselves are data in ``rules.py``.

Where the guides disagree the procedure takes one side and says why in the step text:
- rank follows the data, not the budget (24 GB/7B: "r=32–64" vs "QLoRA r=8–16 for 3K examples"):
  rank moves peak memory by well under 1 GB at 7B, so the budget never forces it, while the
  number of examples decides how much an adapter can learn; LoRA before QLoRA whenever bf16 LoRA
  fits, because QLoRA is 25–40% slower and adds quantization error.
- ≥ 50K preference pairs: DPO still (the guide's PPO/RLHF "for larger budgets" needs a reward
  model and two more model copies; DPO is what the harness measures).
"""

from __future__ import annotations

from advisor.decide import evidence
from advisor.decide.budget_table import compare_with_table
from advisor.decide.feasible import hours_text, largest_fitting, on_time, rescue, run_hours
from advisor.decide.hyper import hyper
from advisor.decide.sizing import COMFORT, Option, Plan, epoch_time, size
from advisor.inputs.catalog import GpuBudget, Model, ladder
from advisor.memory.rl import GRPO_DEFAULTS
from advisor.decide.recipe import Alternative, Inputs, Recipe, Step

# R-DATA-BY-TASK, as a floor below which the advisor warns (classification assumes 2 classes).
TASK_FLOOR = {
    "classification": (100, "50–200 per class"),
    "extraction": (100, "100–500"),
    "instruction": (500, "500–1,000 diverse"),
    "style": (1000, "1,000–5,000"),
}
NO_FINETUNE = "don't fine-tune: prompt / few-shot / RAG"


def _rank(n: int, objective: str) -> int:
    if objective != "sft":
        return 16
    if n >= 50_000:
        return 64  # R-DATA-10K-500K: "> 50K: … high-rank LoRA viable"
    if n >= 10_000:
        return 32
    return 8 if n < 500 else 16  # R-DATA-500-10K: "r=8–16 to start"; fewer parameters to overfit < 500


def _methods(n: int, objective: str) -> list[str]:
    if objective == "sft" and n >= 50_000:
        return ["full", "lora", "qlora"]  # R-DATA-10K-500K
    return ["lora", "qlora"]  # R-DATA-LT500 / R-DATA-500-10K / R-DATA-10K-500K: adapters first


def options(n: int, objective: str, gpu: GpuBudget) -> list[Option]:
    """Candidate options in preference order: each method on one GPU, then FSDP over all of them."""
    rank = _rank(n, objective)
    out: list[Option] = []
    for m in _methods(n, objective):
        single = Option(m, 1, objective, rank)
        sharded = Option(m, gpu.count, objective, rank)
        if gpu.count == 1:
            out.append(single)
        elif n > 500_000:  # R-FSDP-BREAKEVEN: > 500K examples → shard for throughput
            out += [sharded, single]
        else:
            out += [single, sharded]
    return out


def _gate(inp: Inputs, steps: list[Step]) -> Recipe | None:
    n, pairs = inp.examples or 0, inp.preference_pairs or 0
    if n == 0 and pairs == 0:
        steps.append(Step("Data", "No labelled examples: there is nothing to fine-tune on. Use few-shot prompting, "
                          "or retrieval (RAG) if the task needs knowledge the model lacks.", ("R-DATA-NOLABELS",)))  # fmt: skip
    elif n < 10 and pairs < 10:
        steps.append(Step("Data", f"{max(n, pairs)} examples is below the guide's floor of 10: put them in the prompt "
                          "as few-shot examples instead of training on them.", ("R-DATA-LT10",)))  # fmt: skip
    else:
        return None
    rec = Recipe("none", NO_FINETUNE, inp, steps=steps)
    rec.alternatives.append(Alternative("lora", None, None, "needs at least ~10 examples to learn from (R-DATA-LT10); "
                                        "collect 500+ for LoRA's sweet spot (R-DATA-500-10K)"))  # fmt: skip
    return rec


def _objective(inp: Inputs, steps: list[Step], warnings: list[str]) -> tuple[str, int]:
    """(objective, training-set size it runs on)."""
    n, pairs, cap = inp.examples or 0, inp.preference_pairs or 0, inp.capability
    if pairs >= 3000:
        text = f"{pairs:,} preference pairs: DPO (the guide's range is ~3K to 50K pairs)."
        rules = ("R-DATA-PREF", "R-CAP-ALIGN")
        if pairs >= 50_000:
            text += (" Above 50K the guide suggests PPO/RLHF for larger budgets; the advisor stays with DPO: PPO "
                     "needs a separately trained reward model and two more model copies in memory, and DPO is "
                     "what the harness can measure.")  # fmt: skip
        if cap != "alignment" and n >= 10:
            text += f" You also have {n:,} examples: run SFT on them first, then DPO."
            rules += ("R-CAP-MIXED",)
            warnings.append(f"Mixed goal: run SFT on the {n:,} examples before DPO (R-CAP-MIXED).")
        steps.append(Step("Objective", text, rules))
        return "dpo", pairs
    if pairs > 0:
        basis = n if n >= 10 else pairs
        steps.append(Step("Objective", f"{pairs:,} preference pairs is below DPO's ~3K minimum: train with SFT on "
                          f"{'your examples' if n >= 10 else 'the chosen responses'} instead, and collect more pairs.",
                          ("R-DATA-PREF",)))  # fmt: skip
        warnings.append(f"Only {pairs:,} preference pairs: DPO needs ~3K (R-DATA-PREF).")
        return "sft", basis
    if cap == "alignment":
        steps.append(Step("Objective", "Alignment without preference pairs: DPO is not possible yet; SFT on "
                          "demonstrations of the wanted behaviour, then collect ≥3K pairs for DPO.", ("R-CAP-ALIGN", "R-DATA-PREF")))  # fmt: skip
        return "sft", n
    if cap in ("reasoning", "code"):
        if inp.verifiable_reward and inp.auditability == "high":
            steps.append(Step("Objective", "A verifiable reward would allow GRPO, but auditability is high, which "
                              "overrides: GRPO's training data includes the model's own synthetic rollouts, and many "
                              "regulators don't accept that yet. SFT on a controlled, documented dataset instead.",
                              ("R-CAP-GRPO", "R-AUDIT")))  # fmt: skip
            return "sft", n
        if inp.verifiable_reward:
            steps.append(Step("Objective", f"{cap.capitalize()} with a verifiable reward: GRPO, learning from "
                              f"{GRPO_DEFAULTS['num_generations']} scored rollouts per prompt (the guide: 4–16). The {n:,} examples "
                              "are used as prompts.", ("R-CAP-GRPO",)))  # fmt: skip
            return "grpo", n
        steps.append(Step("Objective", f"{cap.capitalize()} without a verifiable reward: GRPO is out (it needs one); "
                          "SFT on worked solutions (STaR-style self-improvement is the next step).", ("R-CAP-GRPO", "R-CAP-SFT")))  # fmt: skip
        return "sft", n
    text = f"{cap.capitalize()}: supervised fine-tuning (SFT)."
    if inp.verifiable_reward:
        text += " A verifiable reward is given, but the guide reserves GRPO for reasoning and code."
    steps.append(Step("Objective", text, ("R-CAP-SFT",)))
    return "sft", n


def _alternatives(rec: Recipe, inp: Inputs, n: int, objective: str, chosen: Plan, tried: dict) -> list[Alternative]:
    out: list[Alternative] = []
    gpu, model = inp.gpu, chosen.model
    rank = chosen.option.rank
    methods = ["full", "lora", "dora", "qlora"]
    opts = [Option(m, 1, objective, rank) for m in methods]
    if gpu.count > 1:
        opts += [Option(m, gpu.count, objective, rank) for m in methods]
    for opt in opts:
        if opt == chosen.option:
            continue
        plan = tried.get((model.name, opt)) or size(model, opt, gpu, inp.seq_len, chosen.micro_batch * chosen.grad_accum, inp.stack)
        why = _why_not(opt, plan, chosen, n, bool(rec.forgetting and "R-FORGET" in rec.forgetting.contradicts))
        out.append(Alternative(opt.label, round(plan.peak_gb, 2), plan.fits, why))
    if objective != "grpo" and inp.capability in ("reasoning", "code"):
        why = ("no verifiable reward to score rollouts (R-CAP-GRPO)" if not inp.verifiable_reward
               else "auditability high: rollouts are synthetic training data (R-AUDIT)")  # fmt: skip
        out.append(Alternative("grpo", None, None, why))
    if objective == "grpo":
        out.append(Alternative("sft (lora)", None, None, "the auditable fallback: SFT needs written solutions; GRPO "
                               "learns from the reward alone (R-CAP-GRPO)"))  # fmt: skip
    if objective != "dpo" and inp.capability == "alignment":
        out.append(Alternative("dpo", None, None, "needs ≥ ~3K preference pairs (R-DATA-PREF)"))
    out.append(Alternative("prompt / few-shot / RAG", None, None, f"the baseline to beat: with {n:,} examples fine-tuning is "
                           "worth measuring (R-DATA-LT10); score the base model with few-shot prompts first"))  # fmt: skip
    return out


def _why_not(opt: Option, plan: Plan, chosen: Plan, n: int, contradicted: bool = False) -> str:
    if not plan.fits:
        return f"needs {plan.peak_gb:.1f} GB (the estimate's high end) > {plan.usable_gb:.1f} GB per GPU"
    c = chosen.option
    if not plan.comfortable and chosen.comfortable:
        return (f"fits only tightly ({plan.peak_gb:.1f} of {plan.budget_gb:g} GB, under {COMFORT:.0%} spare): one long "
                f"batch from an OOM; {c.label} leaves room")  # fmt: skip
    if opt.gpus == 1 and c.gpus > 1:
        return f"fits on one GPU, but leaves {c.gpus - 1} of {c.gpus} idle: an epoch takes ~{c.gpus}× longer (R-FSDP-BREAKEVEN)"
    if opt.gpus > 1 and c.gpus == 1:
        return "fits, but one GPU already does; FSDP pays off above 13B in fp16, 30B in 4-bit or 500K examples (R-FSDP-BREAKEVEN)"
    if opt.method == "full" and c.method != "full":
        if n < 10_000 and contradicted:
            return (f"fits, but {n:,} examples is LoRA's range (R-DATA-500-10K); the guide's \"full fine-tuning forgets more\" "
                    "(R-FORGET) is dropped: your records measured the opposite (see the forgetting measured)")  # fmt: skip
        if n < 10_000:
            return f"fits, but {n:,} examples is LoRA's range: full fine-tuning overfits and forgets more (R-DATA-500-10K, R-FORGET)"
        return "fits; below 50K examples the guide prefers LoRA/QLoRA unless quality needs more — benchmark both (R-DATA-10K-500K, R-CAP-STRUCT)"
    if opt.method == "dora":
        return "fits; +~10% memory and ~25% slower than LoRA, often a little better: run it as an ablation (R-CAP-DORA)"
    if opt.method == "qlora" and c.method in ("lora", "full"):
        return "fits, but 25–40% slower (dequantising every matmul) and adds quantisation error; the choice when bf16 LoRA does not fit (R-MEM-CKPT)"
    if opt.method == "lora" and c.method == "full":
        if contradicted:
            return "fits; measured to forget more than full fine-tuning on your records (see the forgetting measured)"
        return "fits; the fallback if full fine-tuning forgets too much (> 50K examples: full SFT or high-rank LoRA, R-DATA-10K-500K)"
    return "fits, ranked lower by the rules above"


def _warnings(rec: Recipe, inp: Inputs, n: int, objective: str, warnings: list[str]) -> list[str]:
    cap = inp.capability
    floor, sized = TASK_FLOOR.get(cap, (0, ""))
    if objective == "sft" and n < floor:
        warnings.append(f"Too few examples for {cap}: the guide sizes it at {sized} (you have {n:,}); expect a noisy result (R-DATA-BY-TASK).")
    if objective == "sft" and n < 500:
        drop = f"dropout {rec.dropout}, " if rec.dropout else ""
        warnings.append(f"SFT overfits below ~500 examples: {drop}{rec.epochs} epochs, keep a held-out set and stop early (R-DATA-LT500).")
    if rec.forgetting is not None and rec.forgetting.contradicts:
        warnings.append(f"Forgetting: your records contradict the guide's \"LoRA forgets less\" (R-FORGET): {rec.forgetting.brief()} "
                        "(more than 2 SE, in most runs). Score the probes before and after "
                        "this recipe too (harness: eval.probes=[general_mc,general_ppl]); lower the lr or train fewer steps if they drop.")  # fmt: skip
    elif rec.plan and rec.plan.option.method == "full":
        warnings.append("Forgetting risk is highest with full fine-tuning: mix 5–10% general data and check a general benchmark before and after; a drop > 2–3 points is a warning (R-FORGET).")
    else:
        warnings.append("Forgetting: score a general benchmark before and after (harness: eval.probes=[general_mc,general_ppl]); a drop > 2–3 points is a warning, mitigate with 5–10% general data or fewer epochs (R-FORGET).")
    if inp.auditability == "high":
        warnings.append("Auditability high: train only from a versioned, documented dataset and keep the run record (config, commit, data hash) with the model (R-AUDIT).")
    elif objective == "grpo":
        warnings.append(f"GRPO trains on its own rollouts: if this model may ever be audited, log the reward function and keep the rollouts (R-AUDIT; auditability is {inp.auditability}).")
    if objective == "grpo" and inp.gpu.count == 1:
        warnings.append(f"The guide puts GRPO rollouts on multi-GPU infrastructure (R-DATA-GT500K); on one GPU the {GRPO_DEFAULTS['num_generations']} rollouts per prompt dominate the time (see estimate).")
    if n > 500_000 and inp.gpu.count == 1:
        warnings.append(f"{n:,} examples: the guide calls for multi-GPU infrastructure above 500K (R-DATA-GT500K).")
    if inp.gpu.count > 8:
        warnings.append(f"{inp.gpu.count} GPUs is more than one node: multi-node only pays for very large models or datasets; the interconnect cost must be justified (R-GPU-MULTINODE).")
    if rec.plan and rec.feasible and not rec.plan.comfortable:
        warnings.append(f"Tight: {rec.plan.margin_gb:.1f} GB spare of {rec.plan.budget_gb:g} GB; a batch of unusually long examples can OOM — cap train.max_seq_len.")
    if not inp.gpu.bf16:
        warnings.append(f"{inp.gpu.name} has no bf16: train in fp16 with loss scaling (same memory, less range).")
    if not inp.seq_len_given:
        warnings.append(f"Assumed sequences of up to {inp.seq_len} tokens (prompt + answer); pass --seq-len to size memory for your data.")
    return warnings


def recommend(inp: Inputs, runs=()) -> Recipe:
    """The recipe for ``inp``; ``runs`` are harness records (advisor.inputs.harness_runs.Run) to learn from."""
    steps: list[Step] = []
    warnings: list[str] = []
    gated = _gate(inp, steps)
    if gated:
        return gated
    steps.append(Step("Data", f"{(inp.examples or 0):,} examples and {(inp.preference_pairs or 0):,} preference pairs: "
                      "enough to consider fine-tuning (≥ 10).", ("R-DATA-LT10",)))  # fmt: skip
    objective, n = _objective(inp, steps, warnings)
    rank = _rank(n, objective)
    size_rule = ("R-DATA-LT500" if n < 500 else "R-DATA-500-10K" if n < 10_000 else "R-DATA-10K-500K")
    order = " → ".join(o.label for o in options(n, objective, inp.gpu))
    steps.append(Step("Methods", f"{n:,} training items: try {order}; the first that fits with 15% to spare wins (else the first that fits at all); rank {rank}.",
                      (size_rule, "R-MEM-LORA-PARAMS") + (("R-FSDP-BREAKEVEN", "R-MEM-FSDP") if inp.gpu.count > 1 else ())))  # fmt: skip
    target_batch = 8 if n < 1000 else 16
    tried: dict = {}
    chosen, slow = _choose_model(inp, n, objective, target_batch, tried, steps)
    feasible = chosen is not None
    if not feasible:  # nothing fits: the fastest plan that fits memory (too slow), else the leanest
        model = inp.model or ladder()[0]
        mine = [p for (name, _), p in tried.items() if name == model.name]
        chosen = min((p for p in mine if p.fits), key=lambda p: run_hours(p, n, inp.gpu)[1], default=None) or min(mine, key=lambda p: p.peak_gb)
    _memory_steps(chosen, inp, n, feasible, tried, steps)

    found = evidence.for_plan(runs, chosen, inp.gpu)
    steps.extend(found.steps)
    opt = chosen.option
    rec = Recipe(opt.top_method, "", inp, plan=chosen, inner=None if opt.top_method == opt.method else opt.method,
                 feasible=feasible, steps=steps, precision="bf16" if inp.gpu.bf16 else "fp16")  # fmt: skip
    steps.append(hyper(rec, n, objective, opt.method))
    rec.evidence = found.rows
    # Measured evidence, one pass: method, rank and lr, forgetting; a switch must fit both budgets.
    found = evidence.apply(rec, runs, found, lambda p: on_time(p, n, inp.gpu, inp.hours))
    chosen, opt = rec.plan, rec.plan.option
    warnings.extend(found.warnings)
    et = epoch_time(chosen, n, inp.gpu, found.tokens_per_s)
    rec.time_per_epoch_s, rec.time_per_epoch_range_s, rec.time_basis = et.seconds, (et.low, et.high), et.basis
    rec.hours_high = et.high * (rec.epochs or 1) / 3600
    if rec.feasible and rec.hours_high > inp.hours:  # a measured speed can be slower than the model's range
        rec.feasible, slow = False, True
    rec.alternatives = _alternatives(rec, inp, n, objective, chosen, tried)
    rec.warnings = _warnings(rec, inp, n, objective, warnings)
    if rec.feasible:
        rec.advice = f"{opt.label} on {chosen.model.name}" + (f", r={rec.rank}" if rec.rank else "")
        return rec
    _infeasible(rec, inp, n, objective, rank, target_batch, slow)
    return rec


def _choose_model(inp: Inputs, n: int, objective: str, target_batch: int, tried: dict, steps: list[Step]) -> tuple[Plan | None, bool]:
    """The plan that fits memory and time (given model, or the largest such); and whether something
    fitted memory but not the clock."""
    slow: dict[str, Plan] = {}

    def first_fit(model: Model) -> Plan | None:
        """The first option that fits both budgets comfortably; failing that, the first that fits them at all."""
        fitting = None
        for opt in options(n, objective, inp.gpu):
            plan = size(model, opt, inp.gpu, inp.seq_len, target_batch, inp.stack)
            tried[(model.name, opt)] = plan
            if plan.fits and not on_time(plan, n, inp.gpu, inp.hours):
                slow.setdefault(model.name, plan)
                continue
            if plan.comfortable:
                return plan
            fitting = fitting or (plan if plan.fits else None)
        return fitting

    budget = f"{inp.hours:g} h"
    if inp.model:
        chosen = first_fit(inp.model)
        steps.append(Step("Model", f"{inp.model.name} ({inp.model.size_label}) as given.", ("R-MEM-WEIGHTS",)))
        return chosen, bool(slow)
    chosen, bigger = None, None
    for model in reversed(ladder()):  # largest first
        chosen = first_fit(model)
        if chosen:
            break
        bigger = model
    text = f"No --model: the largest base model that fits memory and whose whole run fits {budget} (at the estimate's high end)"
    text += f" is {chosen.model.name} ({chosen.model.size_label})" if chosen else ": none does"
    if chosen and bigger and bigger.name in slow:
        p = slow[bigger.name]
        text += f"; the next size up, {bigger.name}, fits memory as {p.option.label} but takes up to {hours_text(run_hours(p, n, inp.gpu)[1])}"
    elif chosen and bigger:
        lean = min((p for (name, _), p in tried.items() if name == bigger.name), key=lambda p: p.peak_gb)
        text += f"; the next size up, {bigger.name}, needs {lean.peak_gb:.1f} GB even as {lean.option.label}"
    if slow:
        text += (". A smaller model on all the data before a larger one on part of it: task score grows steeply with "
                 "examples (tunebench's data_scaling sweep), so the clock shrinks the model first")  # fmt: skip
    on_24 = inp.gpu.count == 1 and 20 <= inp.gpu.per_gpu_gb < 30
    if on_24 and chosen and chosen.model.params < 20e9 and not slow:
        text += (". The guide's \"QLoRA up to 13B\" agrees; its \"33B fits 24 GB\" (the QLoRA paper) was LLaMA-33B "
                 "with a 32K vocabulary and paged optimizer states, while current ~32B models carry 150K-token "
                 "vocabularies whose logits alone take ~1 GB per 512-token sequence")  # fmt: skip
    steps.append(Step("Model", text + ".", ("R-MEM-WEIGHTS", "R-HP-EPOCHS") + (("R-GPU-24-MAX", "R-MEM-QLORA") if on_24 else ())))
    return chosen, bool(slow) and chosen is None


def _memory_steps(chosen: Plan, inp: Inputs, n: int, feasible: bool, tried: dict, steps: list[Step]) -> None:
    fit_text = (f"{chosen.option.label}: micro-batch {chosen.micro_batch} × accumulation {chosen.grad_accum}, "
                f"gradient checkpointing {'on' if chosen.setup.grad_checkpointing else 'off'} → estimated peak "
                f"{chosen.peak_gb:.1f} GB of {chosen.budget_gb:g} GB per GPU ({chosen.memory.peak_phase}).")  # fmt: skip
    if not feasible and not chosen.fits:
        fit_text = f"Nothing fits: even the leanest option, {fit_text[:-1]}, exceeds {chosen.usable_gb:.1f} GB usable."
    elif not feasible:
        point, high = run_hours(chosen, n, inp.gpu)
        fit_text = (f"Fits memory but not the clock: the fastest option, {fit_text[:-1]}, takes ~{hours_text(point)} "
                    f"(up to {hours_text(high)}) for the whole run, over the {inp.hours:g} h budget.")  # fmt: skip
    mem_rules = {"full": ("R-MEM-FULL",), "lora": ("R-MEM-LORA",), "dora": ("R-MEM-LORA",), "qlora": ("R-MEM-QLORA", "R-MEM-WEIGHTS")}
    ckpt = ("R-MEM-CKPT",) if chosen.setup.grad_checkpointing else ()
    steps.append(Step("Memory", fit_text, mem_rules[chosen.option.method] + ckpt))
    table = compare_with_table(chosen, inp.gpu, n, feasible, tried)
    if table:
        steps.append(table)


def _infeasible(rec: Recipe, inp: Inputs, n: int, objective: str, rank: int, target_batch: int, slow: bool) -> None:
    chosen, opt = rec.plan, rec.plan.option
    if slow:  # the recipe's own time figures (a measured speed, if any, replaced the model's)
        point, high = rec.time_per_epoch_s * (rec.epochs or 1) / 3600, rec.hours_high
        rec.advice = (f"not feasible in {inp.hours:g} h on {inp.gpu.label}: {chosen.model.name} as {opt.label} takes "
                      f"~{hours_text(point)} (up to {hours_text(high)})")  # fmt: skip
    else:
        rec.advice = f"not feasible on {inp.gpu.label}: {chosen.model.name} needs {chosen.peak_gb:.1f} GB even as {opt.label}"
    rec.alternatives[:0] = rescue(inp, chosen, n, objective, rank, target_batch, slow)
    smaller = None if not inp.model else largest_fitting(inp, options(n, objective, inp.gpu), n, target_batch)
    if smaller and not any(a.option.endswith(f"on {smaller.model.name}") for a in rec.alternatives):
        rec.alternatives.insert(0, Alternative(f"{smaller.option.label} on {smaller.model.name}", round(smaller.peak_gb, 2), True,
                                               f"the largest model that fits this budget and {inp.hours:g} h"))  # fmt: skip
    if smaller:
        rec.advice += f"; largest that fits: {smaller.model.name} ({smaller.option.label})"
