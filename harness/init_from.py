"""Start a preference or RL run from a fine-tuned model: ``method.init_from=<run id | record | artifact dir>``.

DPO and GRPO refine a policy; they do not teach a task from nothing. SmolLM2-135M answers a
tickets prompt with a label 1 time in 100 (``results/main``: task_score_base 0.01), so DPO
pairs that prefer one label over another compare two answers the model never gives, and the
tuned score stays at the base's (the method matrix's DPO scored 0.00). Chained on the SFT run's
adapter, DPO starts from a model that answers with labels and the pairs can move it.

How: the SFT adapter is merged into the base weights, then the method's own fresh adapter goes
on top. The reference of a LoRA DPO/GRPO run (adapters off) is then the SFT model, as in the
usual SFT → DPO chain.
"""

from __future__ import annotations

from typing import Any

from harness.errors import UserError

# A start this close to 0 cannot be refined: with 4 labels chance is 0.25, and a model under
# 0.05 is not answering the question at all (tickets base: 0.01).
SCORE_FLOOR = 0.05


def locate_start(spec) -> Any:
    """The ``Located`` artifact of ``method.init_from``; a one-line error before any model loads."""
    from harness.artifacts import locate

    where = spec.method.init_from
    located = locate(where, spec.results_dir)
    if located.manifest["kind"] != "adapter":
        raise UserError(f"method.init_from={where}: run {located.run_id} saved a full model; init_from takes a LoRA adapter")
    trained_on = located.manifest["config"]["model"]["name"]
    if trained_on != spec.model.name:
        raise UserError(f"method.init_from={where}: run {located.run_id} trained {trained_on}, this run loads {spec.model.name}")
    if spec.method.quantize:
        raise UserError("method.init_from with method.quantize=4bit is not supported: the start adapter is merged into full-precision weights")
    return located


def apply(model, spec) -> tuple[Any, dict]:
    """(model with the start adapter merged in, metrics naming the start and its score)."""
    from peft import PeftModel

    located = locate_start(spec)
    model = PeftModel.from_pretrained(model, str(located.directory)).merge_and_unload()
    metrics = located.record.get("metrics") or {}
    return model, {"init_from": located.run_id, "init_task_score": metrics.get("task_score"),
                   "init_task_score_stderr": metrics.get("task_score_stderr")}


def floor_note(method: str, base_score: float | None, init_from: str | None) -> str | None:
    """A record note for a preference/RL run whose starting model scores ~0 (its score is no verdict)."""
    if init_from or base_score is None or base_score >= SCORE_FLOOR:
        return None
    return (f"{method} started from a model scoring {base_score:.2f} (< {SCORE_FLOOR}): it never gives a "
            f"scorable answer, so its tuned score measures the start, not the method; chain it on an SFT "
            f"run with method.init_from=<run_id>")
