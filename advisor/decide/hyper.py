"""The guide's hyperparameters for a chosen method: learning rate, epochs, schedule, weight decay, rank.

Set on the recipe's typed fields, with the step that says why (R-HP-*). ``epochs`` is apart so the
time budget can price a run before the recipe exists.
"""

from __future__ import annotations

from advisor.decide.recipe import Recipe, Step
from advisor.facts import default_lora_alpha


def epochs(n: int, objective: str, method: str) -> int:
    """R-HP-EPOCHS: full 1–3 (1 from 50K examples), adapters 1–3 under 1K else 2–5; DPO/GRPO one pass."""
    if objective in ("dpo", "grpo"):
        return 1
    if method == "full":
        return 1 if n >= 50_000 else 2
    return 2 if n < 1000 else 3 if n < 10_000 else 2


def hyper(rec: Recipe, n: int, objective: str, method: str) -> Step:
    full = method == "full"
    if objective == "dpo":
        rec.lr, rec.epochs = 5e-6, 1
        lr_note = "DPO lr 5e-6, 1 epoch (not in the guide: the alignment-handbook's QLoRA DPO recipe)"
    elif objective == "grpo":
        rec.lr, rec.epochs = 1e-5, 1
        lr_note = "GRPO lr 1e-5, 1 pass over the prompts (not in the guide: TRL's LoRA GRPO examples)"
    elif full:
        rec.lr, rec.epochs = 2e-5, epochs(n, objective, method)
        lr_note = f"full fine-tuning lr 2e-5 (\"safe\"), {rec.epochs} epoch{'s' if rec.epochs > 1 else ''} (the guide: 1–3)"
    else:
        rec.lr = 2e-4
        rec.epochs = epochs(n, objective, method)
        lr_note = f"adapter lr 2e-4 (\"safe\"), {rec.epochs} epochs ({'1–3 under 1K' if n < 1000 else '2–5'} in the guide)"
    rec.weight_decay = 0.01 if full else 0.0
    rules = ["R-HP-LR", "R-HP-EPOCHS", "R-HP-SCHEDULE", "R-HP-WD"]
    text = lr_note + "; cosine schedule with 10% warmup; weight decay " + ("0.01" if full else "0.0")
    if full:
        rec.rank = rec.alpha = rec.dropout = None
    else:
        rank = rec.plan.option.rank
        rec.rank, rec.alpha = rank, default_lora_alpha(rank)
        rec.dropout = 0.15 if n < 500 else 0.1 if n < 1000 else 0.05
        text += f"; r={rank}, alpha={rec.alpha} (2×r), dropout {rec.dropout}, all linear layers (as the QLoRA paper)"
        rules += ["R-HP-ALPHA", "R-HP-DROPOUT"]
        if n < 500:
            rules.append("R-DATA-LT500")
    return Step("Hyperparameters", text + ".", tuple(rules))
