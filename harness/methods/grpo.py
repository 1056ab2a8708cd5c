"""GRPO (Shao et al. 2024) through TRL's GRPOTrainer, rewarded by the task's own checker.

Each step samples ``num_generations`` completions per prompt, scores them with the task's
``reward`` (arithmetic: 1.0 when the number is right), and pushes up the completions that beat
their group's mean, with a KL pull (``beta``) towards the frozen start. LoRA by default
(``method.inner=full`` trains every weight). Use ``method=grpo task=arithmetic``.

Tokens for tokens/s = prompt + completion tokens processed (TRL's ``num_input_tokens_seen``),
so GRPO's throughput counts generation work too; it is not comparable with SFT's token rate.
"""

from __future__ import annotations

import importlib

from harness.errors import UserError
from harness.methods.base import check_options, inner_method, prepare_inner

# method.options and their defaults (sweeps/method/grpo.yaml restates them with reasons).
OPTIONS = {"num_generations": 4, "max_completion_length": 16, "beta": 0.04, "temperature": 1.0}
EDGE = 3  # reward_first / reward_last average this many logged steps: one step's mean is noisy


def task_reward(spec):
    """The task's verifiable reward ``f(completions, answer, **kw) -> list[float]``, or a one-line error."""
    from harness.tasks import get_task

    task = get_task(spec.task)
    fn = getattr(task, "reward", None) or getattr(importlib.import_module(type(task).__module__), "reward", None)
    if not callable(fn):
        raise UserError(f"method=grpo needs a task with a verifiable reward; task '{spec.task.name}' has none "
                        f"(try task=arithmetic)")
    return fn


def _edge_mean(values: list[float], last: bool) -> float | None:
    if not values:
        return None
    k = max(1, min(EDGE, len(values) // 2))
    part = values[-k:] if last else values[:k]
    return sum(part) / len(part)


class GRPO:
    name = "grpo"
    trains_base = False  # set in prepare() from method.inner

    def load_kwargs(self, spec):
        # Checked before anything loads: a task without a reward, an unknown option, a bad batch.
        task_reward(spec)
        opts = check_options(spec, OPTIONS)
        if (spec.train.batch_size * spec.train.grad_accum) % opts["num_generations"]:
            raise UserError(f"train.batch_size × train.grad_accum ({spec.train.batch_size * spec.train.grad_accum}) must be a "
                            f"multiple of method.options.num_generations ({opts['num_generations']})")
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
        from trl import GRPOConfig, GRPOTrainer

        from harness.measure import device_of
        from harness.train import MeasureCallback, quiet, training_args

        opts = check_options(spec, OPTIONS)
        args = training_args(
            spec,
            device_of(),
            GRPOConfig,
            num_generations=opts["num_generations"],
            max_completion_length=opts["max_completion_length"],
            beta=opts["beta"],
            temperature=opts["temperature"],
            # GRPO counts prompt + completion tokens itself; the Trainer's own count finds no input_ids.
            include_num_input_tokens_seen="no",
        )
        rows = [{"prompt": ex.prompt, "answer": ex.answer} for ex in splits["train"]]
        measure = MeasureCallback(clock, spec.train.batch_size * spec.train.grad_accum, progress)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=task_reward(spec),
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tok,
            callbacks=[measure],
        )
        quiet(trainer)
        trainer.train()
        rewards = [float(log["reward"]) for log in measure.logs if "reward" in log]
        lengths = [float(log["completions/mean_length"]) for log in measure.logs if "completions/mean_length" in log]
        kls = [float(log["kl"]) for log in measure.logs if "kl" in log]
        return {
            **self.start,
            "reward_first": _edge_mean(rewards, last=False),
            "reward_last": _edge_mean(rewards, last=True),
            "rewards": rewards,
            "completion_length": sum(lengths) / len(lengths) if lengths else None,
            "kl": kls[-1] if kls else None,
            "grpo_num_generations": opts["num_generations"],
            "tokens_counted": "prompt+completion",
        }


METHOD = GRPO()
