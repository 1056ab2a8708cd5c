"""Full fine-tuning: every parameter trainable, SFT on the task's chats."""

from __future__ import annotations

from harness.train import sft


class Full:
    name = "full"
    trains_base = True

    def load_kwargs(self, spec):
        return {}

    def prepare(self, model, spec):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def fit(self, model, tok, splits, spec, clock, progress):
        return sft(model, tok, splits["train"], spec, clock, progress)


METHOD = Full()
