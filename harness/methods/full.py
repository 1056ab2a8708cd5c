"""Full fine-tuning: every parameter trainable, SFT on the task's chats.

Default lr 2e-5 (sweeps/method/full.yaml): every weight moves, so 10× below LoRA's.
Optimizers (``train.optimizer``): ``adamw`` (2 fp32 states: 8 B/param), ``adamw8bit`` (bitsandbytes
block-wise 8-bit states: 2 B/param), ``paged_adamw8bit`` (the same, states in pageable CUDA
memory that spills to host under pressure), ``sgd`` (no state). On CPU bitsandbytes 0.50 runs the
8-bit optimizers (checked: state1/state2 are uint8), and ``paged_adamw8bit`` falls back to the
non-paged one with a warning: paging is a CUDA unified-memory feature.
"""

from __future__ import annotations

from harness.method_table import METHODS
from harness.methods.base import Single
from harness.train import sft


class Full(Single):
    name = "full"
    capabilities = METHODS["full"].capabilities

    def prepare(self, model, method, train):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def fit(self, model, tok, job, clock, progress):
        return sft(model, tok, job.splits["train"], job, clock, progress)


METHOD = Full()
