"""TRL's trainers run the harness's way: the wrapper methods (DPO, GRPO) differ in their trainer,
its config and their data, and share everything else.

``train`` builds the TRL config from the run spec (``harness.train.training_args``: one place for
lr, batch, steps, precision), measures every optimizer step (``MeasureCallback``: time, tokens,
loss, progress), silences the Trainer's own printing and trains; it returns every dict the
trainer logged, from which ``logged`` picks one figure's series (DPO's margins, GRPO's rewards).
"""

from __future__ import annotations


def train(model, tok, job, clock, progress, *, trainer_cls, config_cls, rows: list[dict], config: dict,
          **trainer_kw) -> list[dict]:
    """Train ``model`` with ``trainer_cls`` on ``rows``; ``config``: the method's own ``config_cls``
    fields; ``trainer_kw``: its own trainer arguments (GRPO's ``reward_funcs``)."""
    from datasets import Dataset

    from harness.measure import device_of
    from harness.train import MeasureCallback, quiet, training_args

    args = training_args(job, device_of(), config_cls, **config)
    measure = MeasureCallback(clock, job.train.batch_size * job.train.grad_accum, progress)
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                          callbacks=[measure], **trainer_kw)
    quiet(trainer)
    trainer.train()
    return measure.logs


def logged(logs: list[dict], key: str) -> list[float]:
    """Every logged value of ``key``, in step order (TRL logs a figure only on some steps)."""
    return [float(log[key]) for log in logs if key in log]
