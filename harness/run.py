"""One measured run, end to end: load → score base → train → measure → score tuned → record.

Read top to bottom: this is the whole life of a run. Methods only supply checks, load options,
``prepare`` and ``fit``, and declare what they are as data (``capabilities``; see
``harness/methods/base.py``); nothing here branches on a method's name.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.record import build_record, error_info, finished, write_record
from harness.spec import RunSpec
from harness.tasks.base import fingerprint


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return "out of memory" in str(exc).lower()


def failure(exc: BaseException, guard) -> tuple[str, dict]:
    """Status and error of a run that raised ``exc``. Past the budget the watchdog raises its MemoryError wherever
    the main thread is; a library can catch it and raise its own (transformers' "Can't load tokenizer" when it
    lands in ``from_pretrained``), so an error after the watchdog tripped is the budget's ``oom``, with the
    library's error kept in the traceback."""
    if not _is_oom(exc) and guard.tripped_gb is not None:
        try:
            guard.raise_if_tripped()
        except MemoryError as budget:
            budget.__context__ = exc
            exc = budget
    return ("oom" if _is_oom(exc) else "error"), error_info(exc)


@dataclass(frozen=True)
class Plan:
    """What a run will do, settled before anything loads: every check that can fail has run."""

    task: Any
    splits: dict
    test: list  # the scored test examples (eval.limit applied)
    method: Any  # harness.methods.base.Method
    job: Any  # harness.methods.base.Job
    score_it: bool  # task score (a scored model with eval enabled)
    probe_names: list[str]  # general probes scored before and after (forgetting)


def execute(spec: RunSpec, progress: Any = None, tracker: dict | None = None) -> dict:
    """Run ``spec`` and write its record; returns the record whatever happened.

    ``progress``: where steps and phases go (rich's bar, plain lines, a sweep's progress file, a
    tracker; ``harness/plain_progress.py``); ``tracker``: the run's tracker run, kept in the record.

    A UserError (bad data file, unknown task option) propagates: it is the user's input, not a
    measurement, and gets no record.
    """
    from harness.measure import MemoryMonitor, device_of
    from harness.watchdog import Watchdog

    _import_libraries()
    device = device_of()
    record = _new_record(spec, device, tracker)
    metrics = record["metrics"]
    t_start = time.perf_counter()
    plan = _plan(spec, metrics)
    mem = MemoryMonitor(device)
    guard = Watchdog(mem, spec.budget_gb, record=record, results_dir=spec.results_dir)  # budget_gb → `oom`, on CPU too
    try:
        _measure(spec, plan, record, mem, guard, device, progress)
        status, error = "ok", None
    except (UserError, KeyboardInterrupt):
        guard.stop()
        mem.stop()
        raise  # bad input is not a measurement; an interrupted run measured nothing whole
    except Exception as exc:  # noqa: BLE001 — every failure is a result to record
        guard.stop()
        status, error = failure(exc, guard)
        metrics.update(mem.peak())
    mem.stop()
    metrics["wall_s"] = time.perf_counter() - t_start
    record = finished(record, status, error=error)
    write_record(spec.results_dir, record)
    return record


def _import_libraries() -> None:
    """torch, transformers and the harness's heavy modules, before the record starts: their import
    time counts in ``startup_s`` (process start → record), not in ``wall_s``."""
    for name in ("torch", "transformers", "harness.artifacts", "harness.evaluate", "harness.init_from", "harness.models",
                 "harness.methods.base", "harness.plain_progress", "harness.tasks"):  # fmt: skip
        importlib.import_module(name)


def _new_record(spec: RunSpec, device: str, tracker: dict | None) -> dict:
    """The record, started: where this run comes from (a sweep, a search) and how long its process took to get here."""
    import psutil

    # A sweep point: its sweep, its slot and how many points shared the machine (harness/sweep/slots.py).
    execution = json.loads(os.environ["TUNEBENCH_EXECUTION"]) if os.environ.get("TUNEBENCH_EXECUTION") else None
    search = json.loads(os.environ["TUNEBENCH_SEARCH"]) if os.environ.get("TUNEBENCH_SEARCH") else None  # a search trial
    record = build_record(spec, device, sweep=os.environ.get("TUNEBENCH_SWEEP"), execution=execution, tracker=tracker,
                          search=search)
    record["metrics"]["startup_s"] = time.time() - psutil.Process().create_time()  # process start → here: imports, config (sweep overhead)
    return record


def _plan(spec: RunSpec, metrics: dict) -> Plan:
    """Build the task and the method and run every check that can fail, before anything loads."""
    from harness import evaluate, init_from
    from harness.methods import get_method
    from harness.methods.base import Job
    from harness.tasks import get_task

    task = get_task(spec.task)
    splits = task.splits()
    method = get_method(spec.method.name, spec.method.inner)  # a wrapper (fsdp, grpo, dpo) around its inner method
    method.check(spec.method, spec.train, task)  # what cannot work fails now, before anything loads
    if spec.method.init_from:  # SFT → DPO/GRPO: a missing or wrong start adapter fails now too
        init_from.locate_start(spec)
    job = Job(spec.method, spec.train, task, splits, spec.seed, run=spec if method.capabilities.launches_job else None)
    test = splits["test"][: spec.eval.limit] if spec.eval.limit else splits["test"]
    # What the data was, as content hashes: a run id names the settings, not what a generator or a
    # file produced from them. harness regress compares task scores only over the same test examples.
    metrics.update(train_fingerprint=fingerprint(splits["train"]), test_fingerprint=fingerprint(test))
    score_it = spec.eval.enabled and spec.model.scored
    if not spec.model.scored:
        metrics["task_score_na"] = "random-init cost-only model: task score and forgetting are not meaningful"
    probe_names = list(spec.eval.probes) if score_it else []
    if probe_names:
        evaluate.check_probes(probe_names)  # unknown or unavailable probes fail now, before any training
    return Plan(task, splits, test, method, job, score_it, probe_names)


def _measure(spec: RunSpec, plan: Plan, record: dict, mem: Any, guard: Any, device: str, progress: Any) -> None:
    """The measured part: load, score the base, train, score the tuned model, save. Fills ``record``."""
    import transformers

    from harness import artifacts, models

    metrics = record["metrics"]
    transformers.set_seed(spec.seed)
    dtype = models.resolve_dtype(spec.train.dtype, device)
    mem.start()
    guard.start()
    loaded = _load(spec, plan, record, dtype, device)
    load_key = {"dtype": str(dtype), "quantize": spec.method.quantize, "device": device}
    base_probes = _score_base(spec, plan, loaded, metrics, load_key, progress)
    model, clock, trainable = _train(spec, plan, loaded, metrics, mem, device, progress)
    _throughput(spec, plan, metrics, clock, trainable, loaded.arch, dtype, device)
    _score_tuned(spec, plan, model, loaded, metrics, base_probes, dtype, device, progress)
    guard.stop()
    guard.raise_if_tripped(metrics.get("peak_memory_gb"))
    # train.save: adapter/model under <results_dir>/artifacts/<run_id>/; a failure is a warning, never a lost run.
    record["artifacts"] = artifacts.save(model, loaded.tokenizer, spec, loaded, record)


def _load(spec: RunSpec, plan: Plan, record: dict, dtype: Any, device: str) -> Any:
    from harness import models

    t = time.perf_counter()
    loaded = models.load(spec.model, seed=spec.seed, dtype=dtype, device=device, **plan.method.load_kwargs(spec.method))
    record["metrics"]["load_s"] = time.perf_counter() - t
    record["model_arch"] = loaded.arch  # measured; config stays the spec that ran
    record["model_identity"] = loaded.identity
    return loaded


def _score_base(spec: RunSpec, plan: Plan, loaded: Any, metrics: dict, load_key: dict, progress: Any) -> dict | None:
    """The base model's task score and probe scores (cached per model identity); returns the probe scores."""
    from harness import evaluate, init_from
    from harness.plain_progress import phase

    if plan.score_it:
        with phase(progress, "base eval", len(plan.test)):
            base, cached = evaluate.base_score(
                loaded.model, loaded.tokenizer, plan.task, plan.test, identity=loaded.identity, load=load_key, batch_size=spec.eval.batch_size
            )
        metrics.update(task_score_base=base.mean, task_score_base_stderr=base.stderr, base_eval_cached=cached)
        if plan.method.capabilities.needs_reference:  # a policy refined from a ~0 start is no verdict on the method: say so
            if note := init_from.floor_note(spec.method.name, base.mean, spec.method.init_from):
                metrics["base_score_floor"] = note
    if not plan.probe_names:
        return None
    with phase(progress, "base probes", len(plan.probe_names)):
        base_probes, metrics["base_probes_cached"] = evaluate.base_probe_scores(
            loaded.model, loaded.tokenizer, plan.probe_names, limit=spec.eval.probe_limit, batch_size=spec.eval.batch_size,
            identity=loaded.identity, load=load_key,
        )
    return base_probes


def _train(spec: RunSpec, plan: Plan, loaded: Any, metrics: dict, mem: Any, device: str, progress: Any) -> tuple:
    """Start from the loaded model (and a start run's adapter), let the method prepare and fit it; peak memory."""
    import transformers

    from harness import init_from
    from harness.measure import StepClock
    from harness.methods.base import count_params

    transformers.set_seed(spec.seed)  # adapter init does not depend on whether the base score was cached
    model = loaded.model
    if spec.method.init_from:  # merge the start run's adapter; the method's own adapter goes on top
        model, start = init_from.apply(model, spec)
        metrics.update(start)
    model = plan.method.prepare(model, spec.method, spec.train)
    trainable, total = count_params(model)
    metrics.update(trainable_params=trainable, total_params=total)
    clock = StepClock(device, skip=spec.train.measure_skip_steps)
    fitted = plan.method.fit(model, loaded.tokenizer, plan.job, clock, progress) or {}
    metrics.update(mem.peak())
    metrics.update(fitted)  # a method that launches its own job (fsdp) reports its workers' peak memory
    mem.stop()
    return model, clock, trainable


def _throughput(spec: RunSpec, plan: Plan, metrics: dict, clock: Any, trainable: int, arch: dict, dtype: Any, device: str) -> None:
    """Steps, tokens/s and losses from the clock; FLOPs per token and MFU against the device's datasheet peak."""
    import torch

    from harness.measure import flops_per_token, peak_flops

    run = clock.summary()
    metrics.update(run)
    if clock.losses:
        metrics.update(train_loss_first=clock.losses[0], train_loss_last=clock.losses[-1], train_losses=clock.losses)
    if not (run.get("tokens_per_s") and run.get("tokens_trained")):
        return
    caps = plan.method.capabilities
    ranks = plan.method.ranks(spec.method)  # a launched job (fsdp): every rank trains a batch per step
    samples = run["steps"] * spec.train.batch_size * spec.train.grad_accum * ranks
    seq = run["tokens_trained"] / max(1, samples)
    adapter = trainable if not caps.trains_base else 0
    fpt = flops_per_token(arch, seq, trains_base=caps.trains_base, adapter_params=adapter)
    dtype_name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    peak, source = peak_flops(device, dtype_name)
    if peak and device == "cuda":  # a launched job (fsdp) reports global tokens/s over world_size GPUs;
        peak *= ranks  # on CPU its ranks share the cores the peak was measured on
    metrics.update(
        mean_seq_len=seq,
        flops_per_token=fpt,
        achieved_tflops=fpt * run["tokens_per_s"] / 1e12,
        peak_tflops=peak / 1e12 if peak else None,
        peak_flops_source=source,
        mfu=fpt * run["tokens_per_s"] / peak if peak else None,
    )


def _score_tuned(spec: RunSpec, plan: Plan, model: Any, loaded: Any, metrics: dict, base_probes: dict | None,
                 dtype: Any, device: str, progress: Any) -> None:
    """The tuned model's task score, forgetting on the probes, and (for a refined policy) KL from the base."""
    from harness import evaluate, forgetting, models
    from harness.plain_progress import phase

    if plan.score_it:
        with phase(progress, "tuned eval", len(plan.test)):
            tuned, _ = evaluate.score(model, loaded.tokenizer, plan.task, plan.test, batch_size=spec.eval.batch_size)
        metrics.update(task_score=tuned.mean, task_score_stderr=tuned.stderr, task_eval_n=tuned.n, task_eval_s=tuned.seconds)
    if plan.probe_names:
        with phase(progress, "tuned probes", len(plan.probe_names)):
            tuned_probes = evaluate.probe_scores(model, loaded.tokenizer, plan.probe_names, limit=spec.eval.probe_limit,
                                                 batch_size=spec.eval.batch_size)
        metrics["forgetting"] = forgetting.entries(base_probes, tuned_probes)
    if plan.score_it and plan.method.capabilities.needs_reference:
        # PEFT: the base is the same model with adapters off; full fine-tune: a fresh copy of the base.
        reference = None if hasattr(model, "disable_adapter") else models.load(spec.model, seed=spec.seed, dtype=dtype, device=device).model
        metrics["kl_from_base"] = evaluate.kl_from_base(model, reference, loaded.tokenizer, plan.test, batch_size=spec.eval.batch_size)
        del reference
