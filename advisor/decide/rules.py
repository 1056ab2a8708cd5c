"""The practitioners' rules the advisor starts from, as data: one citation id per rule, quoting the guide.

Source: tunebench's reference "Fine-tuning decision rules: what practitioners' guides say"
(copied here so nothing at run time reads outside the package). Figures are as the guides
state them; where guides disagree the quote keeps both sides and ``procedure.py`` says which side
it takes and why. Ids read ``R-<TOPIC>-<CASE>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.errors import AdvisorError, did_you_mean

SOURCE = "tunebench reference: Fine-tuning decision rules (practitioners' guides)"


@dataclass(frozen=True)
class Rule:
    id: str
    section: str
    quote: str


_RULES = [
    # ---- memory arithmetic (7B unless said)
    Rule("R-MEM-WEIGHTS", "Memory arithmetic",
         "Weights: fp16/bf16 = 2 bytes/param (7B ≈ 14 GB, 70B ≈ 140 GB); 4-bit NF4 ≈ 0.5 byte/param plus "
         "quantization constants (7B ≈ 3.5 GB; 70B ≈ 35–39 GB)."),
    Rule("R-MEM-FULL", "Memory arithmetic",
         "Full fine-tuning with Adam, mixed precision: 14 GB weights + 14 GB grads + 28 GB optimizer ≈ 56 GB (one guide); "
         "~70 GB with fp32 Adam states (another); \"80 GB+\" in practice. Equivalent per-parameter forms: 16 B/param "
         "(ZeRO paper: 2+2+12), 18 B/param (HF/Megatron with fp32 grads), 8 B/param for pure bf16 AdamW."),
    Rule("R-MEM-LORA", "Memory arithmetic",
         "LoRA (bf16 base, r=16): ~17–18 GB for 7B; ~28 GB 13B; ~60 GB 34B; ~120 GB 70B."),
    Rule("R-MEM-QLORA", "Memory arithmetic",
         "QLoRA (4-bit base, r=16): ~6–10 GB for 7B; ~14 GB 13B; ~24 GB 34B; ~40 GB 70B."),
    Rule("R-MEM-LORA-PARAMS", "Memory arithmetic",
         "LoRA trainable params: a d×k matrix at rank r trains r·(d+k); 4096×4096 at r=16 → 131,072 (99.2% fewer). "
         "32 layers × 4 attention projections × 131K ≈ 16.7M ≈ 0.24% of 7B."),
    Rule("R-MEM-CKPT", "Memory arithmetic",
         "Activations dominate at long sequences; gradient checkpointing cuts activation memory by up to ~70% at a "
         "20–40% slowdown (QLoRA + checkpointing ≈ 25–40% slower than plain LoRA)."),
    Rule("R-MEM-FSDP", "Memory arithmetic",
         "FSDP shards weights, grads and optimizer states: per-GPU ≈ total / N plus one gathered layer; "
         "70B fp16 (140 GB) over 8 GPUs ≈ 17.5 GB/GPU of weights."),
    # ---- by GPU budget
    Rule("R-GPU-16-7B", "By GPU budget", "16 GB, 7B: QLoRA, rank 16–32."),
    Rule("R-GPU-24-7B", "By GPU budget",
         "24 GB, 7B: LoRA or QLoRA, rank 32–64 (another guide: QLoRA r=8–16 for 3K examples on a 24 GB A10G)."),
    Rule("R-GPU-24-MAX", "By GPU budget",
         "24 GB: QLoRA up to 13B in 4-bit, or up to 7B in fp16 LoRA (QLoRA paper: 33B fits 24 GB)."),
    Rule("R-GPU-80-7B", "By GPU budget", "40–80 GB, 7B: LoRA (fp16), rank 64+."),
    Rule("R-GPU-24-70B", "By GPU budget", "24 GB, 70B: not feasible for training on one GPU."),
    Rule("R-GPU-40-70B", "By GPU budget",
         "40 GB, 70B: QLoRA rank 16 (tight; other guides put 70B QLoRA at 41–48 GB)."),
    Rule("R-GPU-80-70B", "By GPU budget", "80 GB+, 70B: QLoRA rank 32+ or LoRA."),
    Rule("R-GPU-8X80", "By GPU budget",
         "8×80 GB node: FSDP: up to 70B in fp16, or 405B in 4-bit; full fine-tuning or LoRA."),
    Rule("R-GPU-MULTINODE", "By GPU budget",
         "multi-node: only for very large models or datasets; interconnect cost must be justified."),
    Rule("R-FSDP-BREAKEVEN", "By GPU budget",
         "FSDP break-even (one guide): base model > 13B in fp16, or > 30B in 4-bit, or > 500K examples with "
         "multi-epoch training. FSDP and QLoRA compose (QLoRA+FSDP: 70B on 2×24–48 GB GPUs)."),
    # ---- by data
    Rule("R-DATA-LT10", "By data", "< 10 examples: prompt engineering / few-shot, not fine-tuning."),
    Rule("R-DATA-NOLABELS", "By data", "no labels: few-shot prompting or RAG instead."),
    Rule("R-DATA-LT500", "By data",
         "< 500 examples: LoRA or QLoRA on one GPU; SFT overfits below ~500; dropout up to 0.15, few epochs."),
    Rule("R-DATA-500-10K", "By data",
         "500 – 10K examples: LoRA/QLoRA sweet spot (2K–10K); r=8–16 to start, ablate r ∈ {4,8,16,32}."),
    Rule("R-DATA-10K-500K", "By data",
         "10K – 500K examples: QLoRA or full SFT with LoRA depending on quality needs; > 50K: full SFT or "
         "high-rank LoRA viable."),
    Rule("R-DATA-GT500K", "By data", "> 500K examples, or GRPO rollouts: multi-GPU infrastructure."),
    Rule("R-DATA-PREF", "By data",
         "preference pairs: DPO for < 50K pairs (minimum ~3K); PPO/RLHF for larger budgets (minimum ~5K)."),
    Rule("R-DATA-BY-TASK", "By data",
         "Size guides by task: classification 50–200 per class; extraction 100–500; instruction following "
         "500–1,000 diverse; style adaptation 1,000–5,000."),
    # ---- by capability
    Rule("R-CAP-SFT", "By capability",
         "Classification, extraction, instruction following, style, domain adaptation: SFT (QLoRA, LoRA or full "
         "depending on scale)."),
    Rule("R-CAP-GRPO", "By capability",
         "Reasoning, multi-step problem solving, code with automated tests: consider GRPO (needs a verifiable reward; "
         "4–16 rollouts per prompt, i.e. 4–16× SFT's forward cost), or STaR-style self-improvement."),
    Rule("R-CAP-MIXED", "By capability",
         "Mixed tasks: SFT first for domain knowledge, then preference optimization."),
    Rule("R-CAP-ALIGN", "By capability",
         "Safety, tone, helpfulness alignment: DPO (or RLHF/PPO at large scale) on preference pairs."),
    Rule("R-CAP-STRUCT", "By capability",
         "Complex structural outputs (nested JSON, proprietary DSL): full SFT can beat LoRA by 5–15 points; "
         "benchmark both if compute allows."),
    Rule("R-CAP-DORA", "By capability",
         "DoRA: consistently better than LoRA at equal rank, small overhead (+~10% memory, +~25% time in one "
         "benchmark); several guides call it the new default."),
    # ---- auditability
    Rule("R-AUDIT", "Auditability",
         "Overrides the others: SFT from a controlled, documented dataset is the defensible choice. GRPO trains on "
         "the model's own rollouts scored by a reward function, so \"what data did you train on\" includes synthetic "
         "rollouts; many regulators don't accept that yet."),
    # ---- hyperparameters
    Rule("R-HP-LR", "Hyperparameter defaults",
         "learning rate: full 1e-5 – 5e-5 (2e-5 safe); LoRA / QLoRA 1e-4 – 5e-4 (2e-4 safe)."),
    Rule("R-HP-EPOCHS", "Hyperparameter defaults",
         "epochs: full 1–3; LoRA / QLoRA 2–5 (1–3 under 1K examples)."),
    Rule("R-HP-SCHEDULE", "Hyperparameter defaults", "schedule: cosine, warmup 5–10% (never 0)."),
    Rule("R-HP-WD", "Hyperparameter defaults", "weight decay: full 0.01–0.1; LoRA / QLoRA 0.0–0.01."),
    Rule("R-HP-ALPHA", "Hyperparameter defaults", "alpha: 2 × r (keep the ratio when r changes)."),
    Rule("R-HP-DROPOUT", "Hyperparameter defaults", "dropout: 0.05–0.1; 0.15 when data is very scarce."),
    # ---- forgetting
    Rule("R-FORGET", "Forgetting",
         "Check a general benchmark before and after; a drop of > 2–3 points is a warning (another guide: > 5%). "
         "Mitigations: mix 5–10% general data, lower learning rate, fewer epochs, early stopping; LoRA forgets less "
         "than full fine-tuning (and also learns less)."),
]  # fmt: skip

RULES: dict[str, Rule] = {r.id: r for r in _RULES}


def rule(rule_id: str) -> Rule:
    if rule_id not in RULES:
        raise AdvisorError(f"unknown rule '{rule_id}'{did_you_mean(rule_id, RULES)}")
    return RULES[rule_id]
