"""DPO (Rafailov et al. 2023) through TRL's DPOTrainer, on the task's preference pairs.

The task supplies ``preference_pairs(split)`` → conversational ``{prompt, chosen, rejected}``
(``task=tickets_prefs``: chosen = the right label, rejected = the label a keyword matcher
would pick). LoRA by default, whose reference model is the base with adapters switched off (no
second copy in memory); ``method.inner=full`` keeps a frozen reference copy (2× weights).
Loss starts at ln 2 = 0.693 (policy = reference) and falls as the margin grows.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import UserError
from harness.methods import trl_trainer
from harness.methods.base import Wrapper, options


def pairs_of(task, split: str = "train") -> list[dict]:
    if not callable(getattr(task, "preference_pairs", None)):
        raise UserError(f"method=dpo needs a task with preference pairs; task '{task.name}' has none "
                        f"(try task=tickets_prefs)")
    return task.preference_pairs(split)


@dataclass(frozen=True)
class DPO(Wrapper):
    name = "dpo"

    def check(self, method, train, task):
        super().check(method, train, task)
        pairs_of(task, "validation")  # fails fast on a task without pairs; validation is the small split

    def fit(self, model, tok, job, clock, progress):
        from trl import DPOConfig, DPOTrainer

        opts = options(job.method)
        logs = trl_trainer.train(model, tok, job, clock, progress, trainer_cls=DPOTrainer, config_cls=DPOConfig,
                                 rows=pairs_of(job.task, "train"),
                                 config=dict(beta=opts["beta"], loss_type=[opts["loss_type"]], max_length=job.train.max_seq_len))
        acc, margins = trl_trainer.logged(logs, "rewards/accuracies"), trl_trainer.logged(logs, "rewards/margins")
        return {
            "dpo_beta": opts["beta"],
            "reward_accuracy_last": acc[-1] if acc else None,
            "reward_margin_first": margins[0] if margins else None,
            "reward_margin_last": margins[-1] if margins else None,
        }


WRAPPER = DPO  # harness.methods.get_method builds DPO(inner=…)
