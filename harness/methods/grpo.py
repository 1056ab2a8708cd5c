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

from dataclasses import dataclass

from harness.errors import UserError
from harness.methods import trl_trainer
from harness.methods.base import Wrapper, options

EDGE = 3  # reward_first / reward_last average this many logged steps: one step's mean is noisy


def task_reward(task):
    """The task's verifiable reward ``f(completions, answer, **kw) -> list[float]``, or a one-line error."""
    fn = getattr(task, "reward", None) or getattr(importlib.import_module(type(task).__module__), "reward", None)
    if not callable(fn):
        raise UserError(f"method=grpo needs a task with a verifiable reward; task '{task.name}' has none "
                        f"(try task=arithmetic)")
    return fn


def _edge_mean(values: list[float], last: bool) -> float | None:
    if not values:
        return None
    k = max(1, min(EDGE, len(values) // 2))
    part = values[-k:] if last else values[:k]
    return sum(part) / len(part)


@dataclass(frozen=True)
class GRPO(Wrapper):
    name = "grpo"

    def check(self, method, train, task):
        # A task without a reward, an unknown option, a batch that does not split into groups.
        super().check(method, train, task)
        task_reward(task)
        opts = options(method)
        if (train.batch_size * train.grad_accum) % opts["num_generations"]:
            raise UserError(f"train.batch_size × train.grad_accum ({train.batch_size * train.grad_accum}) must be a "
                            f"multiple of method.options.num_generations ({opts['num_generations']})")

    def fit(self, model, tok, job, clock, progress):
        from trl import GRPOConfig, GRPOTrainer

        opts = options(job.method)
        config = dict(
            num_generations=opts["num_generations"],
            max_completion_length=opts["max_completion_length"],
            beta=opts["beta"],
            temperature=opts["temperature"],
            # GRPO counts prompt + completion tokens itself; the Trainer's own count finds no input_ids.
            include_num_input_tokens_seen="no",
        )
        rows = [{"prompt": ex.prompt, "answer": ex.answer} for ex in job.splits["train"]]
        logs = trl_trainer.train(model, tok, job, clock, progress, trainer_cls=GRPOTrainer, config_cls=GRPOConfig,
                                 rows=rows, config=config, reward_funcs=task_reward(job.task))
        rewards = trl_trainer.logged(logs, "reward")
        lengths = trl_trainer.logged(logs, "completions/mean_length")
        kls = trl_trainer.logged(logs, "kl")
        return {
            "reward_first": _edge_mean(rewards, last=False),
            "reward_last": _edge_mean(rewards, last=True),
            "rewards": rewards,
            "completion_length": sum(lengths) / len(lengths) if lengths else None,
            "kl": kls[-1] if kls else None,
            "grpo_num_generations": opts["num_generations"],
            "tokens_counted": "prompt+completion",
        }


WRAPPER = GRPO  # harness.methods.get_method builds GRPO(inner=…)
