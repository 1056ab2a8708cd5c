"""The guide's budget table (GPU memory × model size → method and rank range) and how a plan compares.

``recommend`` sizes plans from the memory model, then states where the table agrees and where it
departs, and why (rank follows the data, not the budget; the estimate decides what fits).
"""

from __future__ import annotations

from dataclasses import replace

from advisor.decide.recipe import Step
from advisor.decide.rules import RULES
from advisor.decide.sizing import Plan
from advisor.inputs.catalog import GpuBudget, Model
from advisor.memory.estimate import estimate


def _budget_rule(model: Model, gpu: GpuBudget) -> tuple[str, set[str], tuple[int, int | None] | None] | None:
    """The guide's budget-table row for this (model, GPU), if one applies: (id, methods, rank range)."""
    p, mem, count = model.params, gpu.per_gpu_gb, gpu.count
    if count >= 8 and mem >= 70 and p >= 30e9:
        return "R-GPU-8X80", {"fsdp"}, None
    if 1 < count < 8 and 60e9 <= p <= 80e9:
        return "R-FSDP-BREAKEVEN", {"fsdp"}, None
    if count > 1:
        return None
    if 6e9 <= p <= 9.5e9:
        if 14 <= mem < 20:
            return "R-GPU-16-7B", {"qlora"}, (16, 32)
        if 20 <= mem < 30:
            return "R-GPU-24-7B", {"lora", "qlora"}, (32, 64)
        if mem >= 38:
            return "R-GPU-80-7B", {"lora"}, (64, None)
    if 60e9 <= p <= 80e9:
        if mem < 30:
            return "R-GPU-24-70B", set(), None
        if 38 <= mem < 60:
            return "R-GPU-40-70B", {"qlora"}, (16, 16)
        if mem >= 70:
            return "R-GPU-80-70B", {"qlora", "lora"}, (32, None)
    return None


def compare_with_table(plan: Plan, gpu: GpuBudget, n: int, feasible: bool, tried: dict) -> Step | None:
    row = _budget_rule(plan.model, gpu)
    if row is None:
        return None
    rid, methods, ranks = row
    opt = plan.option
    label = opt.top_method if opt.objective == "sft" else opt.method
    parts = [f"Guide: \"{RULES[rid].quote}\""]
    if rid == "R-GPU-24-70B":
        parts.append("Agrees: " + ("nothing fits." if not feasible else f"the advisor found {opt.label}, see margins."))
        return Step("Budget table", " ".join(parts), (rid,))
    if not feasible:
        parts.append(f"Departs: by this estimate even {opt.label} needs {plan.peak_gb:.1f} GB per GPU, above the "
                     f"{plan.usable_gb:.1f} GB usable.")  # fmt: skip
        if rid == "R-GPU-40-70B":
            parts.append("The guide itself calls it tight, and the other guides' 41–48 GB agree with this estimate.")
        if rid == "R-FSDP-BREAKEVEN":
            parts.append("It fits with parameters or optimizer states offloaded to CPU, which the advisor does not model.")
        return Step("Budget table", " ".join(parts), (rid,))
    agree_method = label in methods or (not methods)
    parts.append(("Method agrees." if agree_method else
                  f"Method departs: {opt.label}, because the estimate says it fits with {plan.margin_gb:.1f} GB to spare."))  # fmt: skip
    rules = [rid]
    if rid == "R-GPU-8X80" and opt.method != "full":
        full = [p for (name, o), p in tried.items() if name == plan.model.name and o.method == "full" and o.gpus > 1]
        if full and not full[0].fits:
            parts.append(f"Its \"full fine-tuning\" half departs here: sharded over {gpu.count} GPUs, full fine-tuning with "
                         f"AdamW (8 B/param in pure bf16) still needs {full[0].peak_gb:.0f} GB per GPU; it fits only with "
                         "8-bit or CPU-offloaded optimizer states, so LoRA it is.")  # fmt: skip
            rules.append("R-MEM-FULL")
    if ranks and opt.method != "full":
        lo, hi = ranks
        inside = opt.rank >= lo and (hi is None or opt.rank <= hi)
        if inside:
            parts.append(f"Rank {opt.rank} is inside the table's range.")
        else:
            table_rank = hi or lo
            extra = estimate(replace(plan.setup, rank=table_rank)).peak_gb - plan.memory.peak_gb
            parts.append(f"Rank departs: r={opt.rank}, not {lo}{'–' + str(hi) if hi else '+'}: rank follows the data "
                         f"({n:,} examples), not the budget; r={table_rank} would add only {extra:+.2f} GB here, so "
                         "memory never decides it.")  # fmt: skip
            rules.append("R-DATA-500-10K" if n < 10_000 else "R-DATA-10K-500K")
        if rid == "R-GPU-24-7B":
            parts.append("The guides disagree (r=32–64 vs QLoRA r=8–16 for 3K examples); the advisor takes the "
                         "data-sized rank and bf16 LoRA whenever it fits, QLoRA only when it does not.")  # fmt: skip
    return Step("Budget table", " ".join(parts), tuple(rules))
