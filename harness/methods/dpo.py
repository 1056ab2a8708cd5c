"""DPO (Rafailov et al. 2023) through TRL's DPOTrainer, on the task's preference pairs.

The task supplies ``preference_pairs(split)`` → conversational ``{prompt, chosen, rejected}``
(``task=tickets_prefs``: chosen = the right label, rejected = the label a keyword matcher
would pick). LoRA by default, whose reference model is the base with adapters switched off (no
second copy in memory); ``method.inner=full`` keeps a frozen reference copy (2× weights).
Loss starts at ln 2 = 0.693 (policy = reference) and falls as the margin grows.
"""

from __future__ import annotations

from harness.errors import UserError
from harness.methods.base import check_options, inner_method, prepare_inner

OPTIONS = {"beta": 0.1, "loss_type": "sigmoid"}  # beta: strength of the pull towards the reference


def pairs_of(spec, split: str = "train") -> list[dict]:
    from harness.tasks import get_task

    task = get_task(spec.task)
    if not callable(getattr(task, "preference_pairs", None)):
        raise UserError(f"method=dpo needs a task with preference pairs; task '{spec.task.name}' has none "
                        f"(try task=tickets_prefs)")
    return task.preference_pairs(split)


class DPO:
    name = "dpo"
    trains_base = False  # set in prepare() from method.inner

    def load_kwargs(self, spec):
        check_options(spec, OPTIONS)
        pairs_of(spec, "validation")  # fails fast on a task without pairs; validation is the small split
        if spec.method.init_from:
            from harness.init_from import locate_start

            locate_start(spec)  # a missing or wrong start fails here, before the model loads
        return inner_method(spec).load_kwargs(spec)

    def prepare(self, model, spec):
        self.start = {}
        if spec.method.init_from:  # SFT → DPO/GRPO chain: merge the start adapter, then a fresh one
            from harness import init_from

            model, self.start = init_from.apply(model, spec)
        return prepare_inner(self, model, spec)

    def fit(self, model, tok, splits, spec, clock, progress):
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        from harness.measure import device_of
        from harness.train import MeasureCallback, quiet, training_args

        opts = check_options(spec, OPTIONS)
        args = training_args(spec, device_of(), DPOConfig, beta=opts["beta"], loss_type=[opts["loss_type"]],
                             max_length=spec.train.max_seq_len)
        measure = MeasureCallback(clock, spec.train.batch_size * spec.train.grad_accum, progress)
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(pairs_of(spec, "train")),
            processing_class=tok,
            callbacks=[measure],
        )
        quiet(trainer)
        trainer.train()
        acc = [float(log["rewards/accuracies"]) for log in measure.logs if "rewards/accuracies" in log]
        margins = [float(log["rewards/margins"]) for log in measure.logs if "rewards/margins" in log]
        return {
            **self.start,
            "dpo_beta": opts["beta"],
            "reward_accuracy_last": acc[-1] if acc else None,
            "reward_margin_first": margins[0] if margins else None,
            "reward_margin_last": margins[-1] if margins else None,
        }


METHOD = DPO()
