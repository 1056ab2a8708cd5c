"""One measured run, end to end: load → score base → train → measure → score tuned → record.

Read top to bottom: this is the whole life of a run. Methods only supply checks, load options,
``prepare`` and ``fit``, and declare what they are as data (``capabilities``; see
``harness/methods/base.py``); nothing here branches on a method's name.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from harness.config import RunSpec
from harness.errors import UserError
from harness.record import build_record, error_info, finished, write_record
from harness.tasks.base import fingerprint


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return "out of memory" in str(exc).lower()


def execute(spec: RunSpec, progress: Any = None, tracker: dict | None = None) -> dict:
    """Run ``spec`` and write its record; returns the record whatever happened.

    ``progress``: where steps and phases go (rich's bar, plain lines, a sweep's progress file, a
    tracker; ``harness/plain_progress.py``); ``tracker``: the run's tracker run, kept in the record.

    A UserError (bad data file, unknown task option) propagates: it is the user's input, not a
    measurement, and gets no record.
    """
    import torch
    import transformers

    from harness import artifacts, evaluate, forgetting, init_from, models
    from harness.measure import MemoryMonitor, StepClock, device_of, flops_per_token, peak_flops
    from harness.methods import get_method
    from harness.methods.base import Job, count_params
    from harness.plain_progress import phase
    from harness.tasks import get_task

    device = device_of()
    # A sweep point: its sweep, its slot and how many points shared the machine (harness/sweep/slots.py).
    execution = json.loads(os.environ["TUNEBENCH_EXECUTION"]) if os.environ.get("TUNEBENCH_EXECUTION") else None
    search = json.loads(os.environ["TUNEBENCH_SEARCH"]) if os.environ.get("TUNEBENCH_SEARCH") else None  # a search trial
    record = build_record(spec, device, sweep=os.environ.get("TUNEBENCH_SWEEP"), execution=execution, tracker=tracker,
                          search=search)
    metrics = record["metrics"]
    t_start = time.perf_counter()
    import psutil

    metrics["startup_s"] = time.time() - psutil.Process().create_time()  # process start → here: imports, config (sweep overhead)
    task = get_task(spec.task)
    splits = task.splits()
    method = get_method(spec.method.name, spec.method.inner)  # a wrapper (fsdp, grpo, dpo) around its inner method
    method.check(spec.method, spec.train, task)  # what cannot work fails now, before anything loads
    if spec.method.init_from:  # SFT → DPO/GRPO: a missing or wrong start adapter fails now too
        init_from.locate_start(spec)
    caps = method.capabilities
    job = Job(spec.method, spec.train, task, splits, spec.seed, run=spec if caps.launches_job else None)
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
    mem = MemoryMonitor(device)
    from harness.watchdog import Watchdog

    guard = Watchdog(mem, spec.budget_gb, record=record, results_dir=spec.results_dir)  # budget_gb → `oom`, on CPU too
    try:
        transformers.set_seed(spec.seed)
        dtype = models.resolve_dtype(spec.train.dtype, device)
        mem.start()
        guard.start()
        t = time.perf_counter()
        loaded = models.load(spec.model, seed=spec.seed, dtype=dtype, device=device, **method.load_kwargs(spec.method))
        metrics["load_s"] = time.perf_counter() - t
        record["model_arch"] = loaded.arch  # measured; config stays the spec that ran
        record["model_identity"] = loaded.identity
        load_key = {"dtype": str(dtype), "quantize": spec.method.quantize, "device": device}
        if score_it:
            with phase(progress, "base eval", len(test)):
                base, cached = evaluate.base_score(
                    loaded.model, loaded.tokenizer, task, test, identity=loaded.identity, load=load_key, batch_size=spec.eval.batch_size
                )
            metrics.update(task_score_base=base.mean, task_score_base_stderr=base.stderr, base_eval_cached=cached)
            if caps.needs_reference:  # a policy refined from a ~0 start is no verdict on the method: say so
                if note := init_from.floor_note(spec.method.name, base.mean, spec.method.init_from):
                    metrics["base_score_floor"] = note
        if probe_names:
            with phase(progress, "base probes", len(probe_names)):
                base_probes, metrics["base_probes_cached"] = evaluate.base_probe_scores(
                    loaded.model, loaded.tokenizer, probe_names, limit=spec.eval.probe_limit, batch_size=spec.eval.batch_size,
                    identity=loaded.identity, load=load_key,
                )

        transformers.set_seed(spec.seed)  # adapter init does not depend on whether the base score was cached
        model = loaded.model
        if spec.method.init_from:  # merge the start run's adapter; the method's own adapter goes on top
            model, start = init_from.apply(model, spec)
            metrics.update(start)
        model = method.prepare(model, spec.method, spec.train)
        trainable, total = count_params(model)
        metrics.update(trainable_params=trainable, total_params=total)
        clock = StepClock(device, skip=spec.train.measure_skip_steps)
        fitted = method.fit(model, loaded.tokenizer, job, clock, progress) or {}
        metrics.update(mem.peak())
        metrics.update(fitted)  # a method that launches its own job (fsdp) reports its workers' peak memory
        mem.stop()

        run = clock.summary()
        metrics.update(run)
        if clock.losses:
            metrics.update(train_loss_first=clock.losses[0], train_loss_last=clock.losses[-1], train_losses=clock.losses)
        if run.get("tokens_per_s") and run.get("tokens_trained"):
            ranks = method.ranks(spec.method)  # a launched job (fsdp): every rank trains a batch per step
            samples = run["steps"] * spec.train.batch_size * spec.train.grad_accum * ranks
            seq = run["tokens_trained"] / max(1, samples)
            adapter = trainable if not caps.trains_base else 0
            fpt = flops_per_token(loaded.arch, seq, trains_base=caps.trains_base, adapter_params=adapter)
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
        if score_it:
            with phase(progress, "tuned eval", len(test)):
                tuned, _ = evaluate.score(model, loaded.tokenizer, task, test, batch_size=spec.eval.batch_size)
            metrics.update(task_score=tuned.mean, task_score_stderr=tuned.stderr, task_eval_n=tuned.n, task_eval_s=tuned.seconds)
        if probe_names:
            with phase(progress, "tuned probes", len(probe_names)):
                tuned_probes = evaluate.probe_scores(model, loaded.tokenizer, probe_names, limit=spec.eval.probe_limit,
                                                     batch_size=spec.eval.batch_size)
            metrics["forgetting"] = forgetting.entries(base_probes, tuned_probes)
        if score_it and caps.needs_reference:
            # PEFT: the base is the same model with adapters off; full fine-tune: a fresh copy of the base.
            reference = None if hasattr(model, "disable_adapter") else models.load(spec.model, seed=spec.seed, dtype=dtype, device=device).model
            metrics["kl_from_base"] = evaluate.kl_from_base(model, reference, loaded.tokenizer, test, batch_size=spec.eval.batch_size)
            del reference
        guard.stop()
        guard.raise_if_tripped(metrics.get("peak_memory_gb"))
        # train.save: adapter/model under <results_dir>/artifacts/<run_id>/; a failure is a warning, never a lost run.
        record["artifacts"] = artifacts.save(model, loaded.tokenizer, spec, loaded, record)
        status, error = "ok", None
    except (UserError, KeyboardInterrupt):
        guard.stop()
        mem.stop()
        raise  # bad input is not a measurement; an interrupted run measured nothing whole
    except Exception as exc:  # noqa: BLE001 — every failure is a result to record
        guard.stop()
        status, error = ("oom" if _is_oom(exc) else "error"), error_info(exc)
        metrics.update(mem.peak())
    mem.stop()
    metrics["wall_s"] = time.perf_counter() - t_start
    record = finished(record, status, error=error)
    write_record(spec.results_dir, record)
    return record
