"""How results look: dicts for ``--json``, rich tables for people, the harness command line.

``rich`` is imported inside the printing functions only, so ``--json`` stays as light as possible.
"""

from __future__ import annotations

from advisor import memory
from advisor.catalog import GPUS, model_table
from advisor.guide import RULES

UNITS = "GB = GiB (2^30 bytes), the unit torch.cuda and nvidia-smi report"


def _r(x, nd=2):
    return None if x is None else round(float(x), nd)


def _sci(x: float) -> str:
    """2e-4, 5e-6: the spelling the guides and configs use."""
    mant, exp = f"{x:e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def _duration(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


# ---------------------------------------------------------------- recommend / explain


def harness_command(rec) -> str:
    """The `python -m harness …` line that measures this recipe (keys of sweeps/config.yaml)."""
    if rec.plan is None:
        return f"# advisor: {rec.advice}; nothing for the harness to run"
    plan, opt, model = rec.plan, rec.plan.option, rec.plan.model
    parts = ["python -m harness"]
    if model.harness_name:
        parts.append(f"model={model.harness_name}")
    else:
        parts += ["model=hub", f"model.name_or_path={model.hub_id or '<path-or-hub-id>'}"]
    inner = opt.method
    if opt.objective == "sft" and opt.gpus == 1:
        parts.append(f"method={inner}")
    else:
        parts.append(f"method={opt.top_method}")
        parts.append(f"method.inner={'full' if inner == 'full' else 'lora'}")
        if inner == "qlora":
            parts.append("method.quantize=4bit")
        if inner == "dora":
            parts.append("method.use_dora=true")
    if opt.gpus > 1:
        parts.append(f"method.world_size={opt.gpus}")
    if inner != "full":
        parts += [f"method.r={rec.rank}", f"method.alpha={rec.alpha}", f"method.dropout={rec.dropout}", f"method.targets={plan.setup.targets}"]
    parts += [
        f"train.lr={_sci(rec.lr)}", f"train.epochs={rec.epochs}", "train.max_steps=-1",
        f"train.batch_size={plan.micro_batch}", f"train.grad_accum={plan.grad_accum}",
        f"train.max_seq_len={plan.setup.seq_len}", f"train.grad_checkpointing={str(plan.setup.grad_checkpointing).lower()}",
        f"train.dtype={rec.precision}", f"train.weight_decay={rec.weight_decay}", f"budget_gb={plan.budget_gb:g}",
        "task=custom", "task.train_file=train.jsonl", "task.eval_file=eval.jsonl",
    ]  # fmt: skip
    return " ".join(parts)


def _range(pair) -> list | None:
    return None if pair is None else [_r(pair[0], 3), _r(pair[1], 3)]


def _memory_dict(b) -> dict:
    return {
        "breakdown_gb": {k: _r(v, 3) for k, v in b.items().items()},
        "peak_allocated_gb": _r(b.peak_allocated_gb, 3),
        "peak_reserved_gb": _r(b.peak_reserved_gb, 3),
        "peak_allocated_gb_range": _range(b.peak_allocated_gb_range),
        "peak_reserved_gb_range": _range(b.peak_reserved_gb_range),
        "cuda_context_gb": b.cuda_context_gb or None,
        "cpu_offload_gb": _r(b.cpu_offload_gb, 3) or None,
        "cpu_resident_gb": _r(b.cpu_resident_gb, 3),
        "peak_phase": b.peak_phase,
        "other_phase_gb": _r(b.other_phase_gb, 3),
        "paged_optimizer_gb": _r(b.paged_optimizer_gb, 3),
        "trainable_params": b.trainable_params,
        "total_params": b.total_params,
        "per_gpu": b.per_gpu,
        "notes": list(b.notes),
    }


def recipe_dict(rec) -> dict:
    inp, plan = rec.inputs, rec.plan
    model = plan.model if plan else None
    s = plan.setup if plan else None
    return {
        "method": rec.method,
        "inner": rec.inner,
        "advice": rec.advice,
        "feasible": rec.feasible,
        "model": model.name if model else None,
        "model_hub_id": model.hub_id if model else None,
        "model_params_b": _r(model.params / 1e9, 3) if model else None,
        "rank": rec.rank,
        "alpha": rec.alpha,
        "dropout": rec.dropout,
        "targets": s.targets if s and s.method != "full" else None,
        "learning_rate": rec.lr,
        "epochs": rec.epochs,
        "lr_schedule": "cosine, 10% warmup" if plan else None,
        "weight_decay": rec.weight_decay,
        "batch_size": plan.micro_batch if plan else None,
        "grad_accum": plan.grad_accum if plan else None,
        "effective_batch": plan.micro_batch * plan.grad_accum * plan.option.gpus if plan else None,
        "seq_len": inp.seq_len,
        "grad_checkpointing": s.grad_checkpointing if s else None,
        "precision": rec.precision if plan else None,
        "optimizer": s.optimizer if s else None,
        "gpus": plan.option.gpus if plan else None,
        "estimated_peak_gb": _r(plan.peak_gb) if plan else None,  # the high end + CUDA context: what the verdict uses
        "budget_gb": inp.gpu.per_gpu_gb,
        "margin_gb": _r(plan.margin_gb) if plan else None,
        "memory": _memory_dict(plan.memory) if plan else None,
        "generation_gb": _r(plan.generation_gb) if plan and plan.generation_gb else None,
        "time_per_epoch_s": _r(rec.time_per_epoch_s, 0),
        "time_per_epoch_s_range": [_r(x, 0) for x in rec.time_per_epoch_range_s] if rec.time_per_epoch_range_s else None,
        "total_time_s": _r(rec.time_per_epoch_s * rec.epochs, 0) if rec.time_per_epoch_s and rec.epochs else None,
        "total_time_s_range": ([_r(x * rec.epochs, 0) for x in rec.time_per_epoch_range_s]
                               if rec.time_per_epoch_range_s and rec.epochs else None),
        "time_basis": rec.time_basis or None,
        "setup_phases": plan.whole.to_dict() if plan and plan.whole else None,
        "alternatives": [{"option": a.option, "estimated_peak_gb": a.peak_gb, "fits": a.fits, "why_not": a.why_not} for a in rec.alternatives],
        "rules": [{"id": r, "section": RULES[r].section, "quote": RULES[r].quote} for r in rec.rules],
        "steps": [{"title": st.title, "text": st.text, "rules": list(st.rules)} for st in rec.steps],
        "evidence": rec.evidence,
        "warnings": rec.warnings,
        "harness_command": harness_command(rec),
        "inputs": {
            "gpu": inp.gpu.to_dict(), "examples": inp.examples, "capability": inp.capability,
            "auditability": inp.auditability, "model": inp.model.name if inp.model else None, "seq_len": inp.seq_len,
            "verifiable_reward": inp.verifiable_reward, "preference_pairs": inp.preference_pairs,
        },  # fmt: skip
        "units": UNITS,
    }


def _e(text) -> str:
    """Dynamic text never carries rich markup: `eval.probes=[general_mc]` must print as is."""
    from rich.markup import escape

    return escape(str(text))


def _console():
    from rich.console import Console

    c = Console(highlight=False)
    if not c.is_terminal:  # piped or captured: 100 columns rather than rich's 80, so tables stay tables
        c = Console(highlight=False, width=100)
    return c


def _breakdown_table(b, title: str):
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_edge=False)
    t.add_column("component")
    t.add_column("GB", justify="right")
    for k, v in b.items().items():
        t.add_row(k.replace("_", " "), f"{v:.2f}")
    rng = b.peak_allocated_gb_range
    t.add_row("[bold]peak allocated[/]", f"[bold]{b.peak_allocated_gb:.2f}[/]" + (f"  (range {rng[0]:.2f}–{rng[1]:.2f})" if rng else ""))
    if b.peak_reserved_gb is not None:
        rng = b.peak_reserved_gb_range
        t.add_row(f"peak reserved (allocator +{memory.RESERVED_FRAC:.0%})", f"{b.peak_reserved_gb:.2f}  (range {rng[0]:.2f}–{rng[1]:.2f})")
        t.add_row("CUDA context + allocator cache", f"{b.cuda_context_gb:.2f}")
    if b.cpu_offload_gb:
        t.add_row("host memory (offloaded)", f"{b.cpu_offload_gb:.2f}")
    if b.cpu_resident_gb is not None:
        t.add_row("CPU resident (RSS delta)", f"{b.cpu_resident_gb:.2f}")
    return t


def print_recipe(rec) -> None:
    from rich.table import Table

    c = _console()
    inp = rec.inputs
    what = f"{inp.examples:,} {inp.capability} examples" if inp.examples else f"{inp.capability}"
    if inp.preference_pairs:
        what += f", {inp.preference_pairs:,} preference pairs"
    c.print(f"[bold]advisor recommend[/] — {inp.gpu.label}, {what}, auditability {inp.auditability}")
    ok = "[green]feasible[/]" if rec.feasible else "[red]not feasible[/]"
    c.print(f"[bold]{_e(rec.advice)}[/]  ({ok})\n")
    if rec.plan is None:
        for st in rec.steps:
            c.print(f"  {_e(st.text)}  [dim]{', '.join(st.rules)}[/]\n")
        _print_alternatives(c, rec)
        _print_rules(c, rec)
        return
    plan, s = rec.plan, rec.plan.setup
    t = Table(show_header=False, show_edge=False, box=None, padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    model = plan.model
    t.add_row("method", plan.option.label + ("  (FSDP: weights, grads and optimizer states sharded)" if plan.option.gpus > 1 else ""))
    t.add_row("base model", f"{model.name}  {model.hub_id or ''}  ({model.params / 1e9:.2f}B params)")
    if s.method != "full":
        t.add_row("adapter", f"rank {rec.rank}, alpha {rec.alpha}, dropout {rec.dropout}, targets {s.targets}"
                  + (", 4-bit NF4 base" if s.method == "qlora" else "") + (", DoRA" if s.method == "dora" else ""))  # fmt: skip
    t.add_row("learning rate", f"{_sci(rec.lr)}, cosine, 10% warmup, weight decay {rec.weight_decay}")
    t.add_row("epochs", f"{rec.epochs}")
    t.add_row("batch", f"{plan.micro_batch} per GPU × {plan.grad_accum} accumulation"
              + (f" × {plan.option.gpus} GPUs" if plan.option.gpus > 1 else "")
              + f" = {plan.micro_batch * plan.grad_accum * plan.option.gpus}; up to {s.seq_len} tokens each")  # fmt: skip
    t.add_row("grad checkpointing", "on" if s.grad_checkpointing else "off")
    t.add_row("precision / optimizer", f"{rec.precision} / AdamW")
    pct = 100 * plan.margin_gb / plan.budget_gb
    m = plan.memory
    expected = plan.whole.peak_reserved_gb if plan.whole is not None else m.peak_reserved_gb
    if m.peak_reserved_gb_range and expected:  # the verdict and margin use the range's high end (+ the CUDA context)
        t.add_row("peak memory", f"{expected:.1f} GB expected, {plan.peak_gb:.1f} GB at the range's high end incl. {m.cuda_context_gb:.1f} GB CUDA context, "
                  f"of {plan.budget_gb:g} GB per GPU — margin at the high end {plan.margin_gb:+.1f} GB ({pct:+.0f}%)")  # fmt: skip
    else:
        t.add_row("peak memory", f"{plan.peak_gb:.1f} GB of {plan.budget_gb:g} GB per GPU — margin {plan.margin_gb:+.1f} GB ({pct:+.0f}%)")
    rng = rec.time_per_epoch_range_s
    span = f" ({_duration(rng[0])}–{_duration(rng[1])})" if rng and rng[1] > rng[0] else ""
    t.add_row("time per epoch", f"~{_duration(rec.time_per_epoch_s)}{span}  [dim]({_e(rec.time_basis)})[/]")
    if rec.time_per_epoch_s and rec.epochs:
        total = f" ({_duration(rng[0] * rec.epochs)}–{_duration(rng[1] * rec.epochs)})" if span else ""
        t.add_row("total time", f"~{_duration(rec.time_per_epoch_s * rec.epochs)}{total} for {rec.epochs:g} epoch(s)")
    c.print(t)
    c.print()
    if plan.whole is not None:  # GRPO / DPO: every phase of the setup
        from advisor.render_time import phases_table

        c.print(phases_table(plan.whole, f"Estimated peak per GPU by phase ({plan.whole.objective.name}; the largest sets the budget)"))
        notes = plan.whole.notes
    else:
        c.print(_breakdown_table(plan.memory, f"Estimated peak per GPU ({plan.memory.peak_phase})"))
        notes = plan.memory.notes
    for note in notes:
        c.print(f"  [dim]{_e(note)}[/]")
    c.print()
    _print_alternatives(c, rec)
    _print_rules(c, rec)
    if rec.evidence:
        _print_evidence(c, rec)
    if rec.warnings:
        c.print("[bold yellow]Warnings[/]")
        for w in rec.warnings:
            c.print(f"  • {_e(w)}")
    c.print(f"\n[dim]{UNITS}. Reasoning step by step: advisor explain (same flags). "
            "Measure it: add --emit harness.[/]")  # fmt: skip


def _print_alternatives(c, rec) -> None:
    from rich.table import Table

    t = Table(title="Alternatives considered", title_justify="left", show_edge=False)
    t.add_column("option")
    t.add_column("peak GB", justify="right")
    t.add_column("fits")
    t.add_column("why it lost", overflow="fold")
    for a in rec.alternatives:
        fits = "–" if a.fits is None else ("yes" if a.fits else "[red]no[/]")
        t.add_row(_e(a.option), "–" if a.peak_gb is None else f"{a.peak_gb:.1f}", fits, _e(a.why_not))
    c.print(t)
    c.print()


def _print_rules(c, rec) -> None:
    from rich.table import Table

    t = Table(title="Rules applied (tunebench reference: practitioners' decision rules)", title_justify="left", show_edge=False)
    t.add_column("id", no_wrap=True)
    t.add_column("the guide says", overflow="fold")
    for rid in rec.rules:
        t.add_row(rid, _e(RULES[rid].quote))
    c.print(t)
    c.print()


def _print_evidence(c, rec) -> None:
    from rich.table import Table

    t = Table(title="Measured evidence (harness runs of this model)", title_justify="left", show_edge=False)
    for col in ("run", "status", "method", "measured GB", "estimated GB", "tokens/s", "task gain"):
        t.add_column(col, justify="right" if col not in ("run", "status", "method") else "left")
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    for e in rec.evidence[:20]:
        t.add_row(e["run_id"], e["status"], f"{e['method']}" + (f" r{e['rank']}" if e["rank"] else ""),
                  fmt(e["measured_peak_gb"], ".2f"), fmt(e["estimated_peak_gb"], ".2f"), fmt(e["tokens_per_s"], ",.0f"),
                  fmt(e["task_gain"], "+.3f"))  # fmt: skip
    c.print(t)
    if len(rec.evidence) > 20:
        c.print(f"  [dim]… and {len(rec.evidence) - 20} more (--json lists all)[/]")
    c.print()


def print_explain(rec) -> None:
    c = _console()
    inp = rec.inputs
    c.print(f"[bold]advisor explain[/] — {inp.gpu.label}, examples={inp.examples}, capability={inp.capability}, "
            f"auditability={inp.auditability}, model={inp.model.name if inp.model else '(largest that fits)'}, "
            f"seq_len={inp.seq_len}, verifiable_reward={inp.verifiable_reward}, preference_pairs={inp.preference_pairs}\n")  # fmt: skip
    for i, st in enumerate(rec.steps, 1):
        c.print(f"[bold]{i}. {st.title}[/]")
        c.print(f"   {_e(st.text)}")
        for rid in st.rules:
            c.print(f"   [dim]{rid}: {_e(RULES[rid].quote)}[/]")
        c.print()
    c.print(f"[bold]→ {_e(rec.advice)}[/]" + ("" if rec.feasible else " [red](not feasible)[/]"))
    for a in rec.alternatives:
        c.print(f"   not {_e(a.option)}: {_e(a.why_not)}")
    for w in rec.warnings:
        c.print(f"   [yellow]warning:[/] {_e(w)}")


# ---------------------------------------------------------------- estimate


def estimate_dict(model, setup, b) -> dict:
    d = {
        "model": model.name,
        "model_params_b": _r(model.params / 1e9, 3),
        "setup": {
            "method": setup.method, "rank": setup.rank if setup.method != "full" else None, "targets": setup.targets,
            "batch_size": setup.batch_size, "seq_len": setup.seq_len, "grad_checkpointing": setup.grad_checkpointing,
            "precision": setup.precision, "optimizer": setup.optimizer, "gpus": setup.gpus, "grad_accum": setup.grad_accum,
            "device": setup.device, "sharding": setup.sharding if setup.gpus > 1 else None, "offload": setup.offload,
            "stack": setup.stack,
        },  # fmt: skip
        "units": UNITS,
    }
    m = _memory_dict(b)
    d.update(peak_allocated_gb=m.pop("peak_allocated_gb"), peak_reserved_gb=m.pop("peak_reserved_gb"),
             peak_allocated_gb_range=m.pop("peak_allocated_gb_range"), peak_reserved_gb_range=m.pop("peak_reserved_gb_range"),
             cpu_resident_gb=m.pop("cpu_resident_gb"), breakdown=m.pop("breakdown_gb"), **m)  # fmt: skip
    return d


def print_estimate(model, setup, b) -> None:
    c = _console()
    where = f"per GPU over {setup.gpus} ({setup.sharding})" if setup.gpus > 1 else ("CPU" if setup.device == "cpu" else "one GPU")
    c.print(f"[bold]advisor estimate[/] — {model.name} ({model.params / 1e9:.2f}B), {setup.method}"
            + (f" r={setup.rank} {setup.targets}" if setup.method != "full" else "")
            + f", batch {setup.batch_size} × {setup.seq_len} tokens, checkpointing {'on' if setup.grad_checkpointing else 'off'}, "
            f"{setup.precision}, {setup.optimizer}, {where}, stack {setup.stack}"
            + (f", offload {setup.offload}" if setup.offload != "none" else "") + "\n")  # fmt: skip
    c.print(_breakdown_table(b, f"Peak training memory ({b.peak_phase}; the other phase: {b.other_phase_gb:.2f} GB)"))
    c.print(f"\n  trainable parameters {b.trainable_params:,} of {b.total_params:,} ({100 * b.trainable_params / b.total_params:.2f}%)")
    if b.paged_optimizer_gb:
        c.print(f"  paged optimizer states {b.paged_optimizer_gb:.2f} GB in unified memory (not in the peak)")
    for n in b.notes:
        c.print(f"  [dim]{_e(n)}[/]")
    c.print(f"\n[dim]{UNITS}.[/]")


# ---------------------------------------------------------------- validate


def validate_dict(directory, published, harness, warnings, fitted, sources=(), device=()) -> dict:
    from advisor import validate as v

    def rows(rs):
        out = []
        for r in rs:
            d = r.to_dict() | {k: _r(r.to_dict()[k], 3) for k in ("measured_gb", "predicted_gb", "error_pct")}
            d["range_gb"] = _range(r.range_gb)
            out.append(d)
        return out

    scored = [r for r in published if r.in_range is not None]
    n = len(scored)
    return {
        "published": {
            "rows": rows(published),
            "mape_pct": _r(v.mape(published, metrics=v.KNOWN)),
            "mape_unknown_metric_pct": _r(v.mape(published, metrics=("?",))),
            "mape_all_pct": _r(v.mape(published)),
            "loso": {
                "sources": [s.to_dict() for s in sources],
                "n": n,
                "mae_pct": _r(sum(abs(r.error_pct) for r in scored) / n) if n else None,
                "bias_pct": _r(sum(r.error_pct for r in scored) / n) if n else None,
                "in_range_pct": _r(100 * sum(r.in_range for r in scored) / n) if n else None,
                "method": "each source's rows estimated with RESERVED_FRAC fitted on the other sources; its range "
                          "from the other sources' residuals in the same peak phase",
            },
            "excluded": [{"id": r.id, "reason": r.excluded} for r in published if r.excluded],
            "units": "published GB (10^9 bytes) converted to GiB",
            "device_total": {  # nvidia-smi readings vs the verdict's figure (reserved high end + CUDA context)
                "rows": [{"id": r.id, "nvidia_smi_gb": _r(r.measured_gb, 3), "high_end_gb": _r(r.predicted_gb, 3),
                          "covered": r.in_range, "note": r.note} for r in device],
                "covered": sum(bool(r.in_range) for r in device), "n": len(device),
                "covered_single_gpu": sum(bool(r.in_range) for r in device if not r.note),
                "n_single_gpu": sum(1 for r in device if not r.note),
            },
        },
        "harness": {
            "dir": str(directory),
            "rows": rows(harness),
            "n": sum(1 for r in harness if r.error_pct is not None and not r.excluded),
            "mape_pct": _r(v.mape(harness)),
            "mape_cpu_pct": _r(v.mape(harness, metrics=("cpu_rss_delta",))),
            "mape_cuda_pct": _r(v.mape(harness, metrics=("cuda_allocated", "cuda_reserved"))),
            "excluded": [{"id": r.id, "reason": r.excluded} for r in harness if r.excluded],
        },
        "constants": {
            "ACT_FACTOR": memory.ACT_FACTOR, "RESERVED_FRAC": memory.RESERVED_FRAC, "CUDA_RUNTIME_GB": memory.CUDA_RUNTIME_GB,
            "CUDA_CONTEXT_GB": memory.CUDA_CONTEXT_GB, "RANGES": memory.RANGES,
            "CPU_SLACK_FRAC": memory.CPU_SLACK_FRAC, "CPU_RUNTIME_GB": memory.CPU_RUNTIME_GB,
        },  # fmt: skip
        "fit": fitted,
        "warnings": warnings,
    }


def _rows_table(title, rows):
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_edge=False)
    ranged = any(r.get("range_gb") for r in rows)
    cols = ("id", "model", "method", "metric", "seq", "measured", "predicted", "error") + (("LOSO range",) if ranged else ())
    for col in cols:
        t.add_column(col, justify="right" if col in ("seq", "measured", "predicted", "error", "LOSO range") else "left",
                     no_wrap=col not in ("id", "model"), overflow="fold", min_width=12 if col == "model" else None)  # fmt: skip
    for r in rows:
        err = "–" if r["error_pct"] is None else f"{r['error_pct']:+.1f}%"
        if r["excluded"]:
            err = f"[yellow]{err} excl.[/]"
        cells = [r["id"], _e(r["model"]), r["method"], r["metric"], str(r["seq_len"] or "–"),
                 "–" if r["measured_gb"] is None else f"{r['measured_gb']:.2f}",
                 "–" if r["predicted_gb"] is None else f"{r['predicted_gb']:.2f}", err]  # fmt: skip
        if ranged:
            rg = r.get("range_gb")
            cells.append("–" if not rg else f"{rg[0]:.1f}–{rg[1]:.1f}" + ("" if r["in_range"] else " [red]out[/]"))
        t.add_row(*cells)
    return t


def _notes(c, rows) -> None:
    """Notes shared by several rows are printed once, with the ids they apply to."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        if r["note"]:
            groups.setdefault(r["note"], []).append(r["id"])
    for note, ids in groups.items():
        shown = ", ".join(ids[:6]) + (f" +{len(ids) - 6}" if len(ids) > 6 else "")
        c.print(f"  [dim]{_e(shown)}: {_e(note)}[/]")


def _print_loso(c, loso) -> None:
    from rich.table import Table

    if not loso["sources"]:
        return
    t = Table(title="Leave-one-source-out (each source against constants and ranges from the others)", title_justify="left", show_edge=False)
    for col in ("source", "rows", "MAE", "bias", "in range", "range applied", "RESERVED_FRAC"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for s in loso["sources"]:
        t.add_row(_e(s["source"]), str(s["n"]), f"{s['mae_pct']:.1f}%", f"{s['bias_pct']:+.1f}%", f"{s['covered']}/{s['n']}",
                  f"{100 * s['low']:+.0f}% … {100 * s['high']:+.0f}%", f"{s['reserved_frac']:.2f}")  # fmt: skip
    c.print()
    c.print(t)
    c.print(f"[bold]leave-one-source-out over {loso['n']} rows: MAE {loso['mae_pct']:.1f}%, bias {loso['bias_pct']:+.1f}%, "
            f"{loso['in_range_pct']:.0f}% inside the range[/]")  # fmt: skip


def print_validate(report) -> None:
    c = _console()
    if not c.is_terminal:  # the rows table has 9 columns
        c.width = 150
    p, h = report["published"], report["harness"]
    c.print(_rows_table("Published measurements (GB = GiB; allocated vs allocated, reserved vs reserved)", p["rows"]))
    _notes(c, p["rows"])
    c.print(f"\n[bold]published, known metric: MAPE {p['mape_pct']:.1f}%[/] over "
            f"{sum(1 for r in p['rows'] if r['metric'] in ('allocated', 'reserved') and not r['excluded'])} rows; "
            f"unknown metric ('?', compared as reserved): {p['mape_unknown_metric_pct']:.1f}%; all compared rows: {p['mape_all_pct']:.1f}%")  # fmt: skip
    for e in p["excluded"]:
        c.print(f"  excluded {e['id']}: {_e(e['reason'])}")
    _print_loso(c, p["loso"])
    dev = p.get("device_total")
    if dev and dev["n"]:
        under = ", ".join(f"{r['id']} ({r['nvidia_smi_gb']:.1f} > {r['high_end_gb']:.1f})" for r in dev["rows"] if not r["covered"])
        c.print(f"device total (nvidia-smi) under the verdict's figure (range high end + CUDA context): "
                f"{dev['covered_single_gpu']}/{dev['n_single_gpu']} single-GPU rows, {dev['covered']}/{dev['n']} in all"
                + (f"; over it: {under} (multi-GPU: NCCL buffers not modelled)" if under else ""))  # fmt: skip
    c.print()
    if h["rows"]:
        c.print(_rows_table(f"Harness runs in {h['dir']} (CPU resident vs cpu_rss_delta, allocated vs cuda_allocated)", h["rows"]))
        _notes(c, h["rows"])
        for e in h["excluded"]:
            c.print(f"  excluded {e['id']}: {_e(e['reason'])}")
        parts = [f"[bold]harness runs: MAPE {h['mape_pct']:.1f}%[/] over {h['n']}" if h["mape_pct"] is not None else "harness runs: nothing comparable"]
        if h["mape_cpu_pct"] is not None:
            parts.append(f"CPU {h['mape_cpu_pct']:.1f}%")
        if h["mape_cuda_pct"] is not None:
            parts.append(f"CUDA {h['mape_cuda_pct']:.1f}%")
        c.print("\n" + "; ".join(parts))
    else:
        c.print(f"harness runs: none found in {h['dir']} (run the harness first, e.g. python -m harness debug=smoke)")
    for w in report["warnings"]:
        c.print(f"[yellow]warning:[/] {_e(w)}")
    k = report["constants"]
    c.print(f"\n[dim]constants: ACT_FACTOR {k['ACT_FACTOR']}, RESERVED_FRAC {k['RESERVED_FRAC']}, CUDA_RUNTIME_GB "
            f"{k['CUDA_RUNTIME_GB']}, CUDA_CONTEXT_GB {k['CUDA_CONTEXT_GB']}, RANGES {k['RANGES']}, "
            f"CPU_SLACK_FRAC {k['CPU_SLACK_FRAC']}, CPU_RUNTIME_GB {k['CPU_RUNTIME_GB']}[/]")  # fmt: skip
    if report["fit"]:
        c.print(f"[bold]fit[/] (best on this data): {report['fit']}")


# ---------------------------------------------------------------- catalogs


def catalog_rows(which: str) -> list[dict]:
    if which == "models":
        return model_table()
    return [{"name": g.name, "memory_gb": g.memory_gb, "usable_gb": g.usable_gb, "bf16_tflops": g.bf16_tflops, "bf16": g.bf16}
            for g in GPUS.values()]  # fmt: skip


SHORT = {"params_b": "params B", "active_params_b": "active B", "num_hidden_layers": "layers", "hidden_size": "hidden", "intermediate_size": "inter",
         "num_attention_heads": "heads", "num_key_value_heads": "kv", "vocab_size": "vocab", "tie_word_embeddings": "tied"}


def print_catalog(which: str, rows: list[dict]) -> None:
    from rich.table import Table

    rows = [{SHORT.get(k, k): v for k, v in r.items() if k not in ("hub_id", "head_dim")} for r in rows]
    t = Table(show_edge=False)
    for col in rows[0]:
        t.add_column(col, justify="right" if isinstance(rows[0][col], (int, float)) and not isinstance(rows[0][col], bool) else "left",
                     no_wrap=True, min_width=max(len(str(r[col])) for r in rows) if col == "name" else None)  # fmt: skip
    for r in rows:
        t.add_row(*("–" if v is None else str(v) for v in r.values()))
    c = _console()
    if not c.is_terminal:
        c.width = 130
    c.print(t)
