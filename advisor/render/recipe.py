"""How a recommendation looks: the recipe as a dict for ``--json``, as tables for people
(``recommend``, ``explain``), and as the harness command line that measures it.

Shared formats live in ``common``; the estimate, validate and time views in their own modules.
"""

from __future__ import annotations

from advisor.decide.rules import RULES
from advisor.render.common import UNITS, breakdown_table, console, duration, esc, memory_dict, rounded, sci


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
        f"train.lr={sci(rec.lr)}", f"train.epochs={rec.epochs}", "train.max_steps=-1",
        f"train.batch_size={plan.micro_batch}", f"train.grad_accum={plan.grad_accum}",
        f"train.max_seq_len={plan.setup.seq_len}", f"train.grad_checkpointing={str(plan.setup.grad_checkpointing).lower()}",
    ]  # fmt: skip
    stack, left = _stack_overrides(rec, supervised=opt.objective == "sft" and opt.gpus == 1)
    dtype = "fp32" if plan.setup.precision == "fp32" else rec.precision
    parts += [*stack, f"train.dtype={dtype}", f"train.weight_decay={rec.weight_decay}", f"budget_gb={plan.budget_gb:g}",
              "task=custom", "task.train_file=train.jsonl", "task.eval_file=eval.jsonl"]  # fmt: skip
    line = " ".join(parts)
    return line + (f"  # not carried: {'; '.join(left)}" if left else "")


def _stack_overrides(rec, *, supervised: bool) -> tuple[list[str], list[str]]:
    """The recipe's stack options as harness overrides (``train.loss``, ``train.checkpointing``, ``train.kernels``), and the
    ones the harness cannot run, each with why (they stay in the estimate, not in the measurement)."""
    s, opts = rec.plan.setup, rec.inputs.stack
    want = []
    if s.loss_kind in ("fused", "chunked"):  # the harness's chunked loss never holds the whole logits either
        want.append(("train.loss=chunked", f"--loss {s.loss}"))
    if s.ckpt == "selective":
        want.append(("train.checkpointing=selective", "--checkpointing selective"))
    if s.kernels:  # quoted: a shell would read [...] as a glob
        want.append((f"'train.kernels=[{','.join(s.kernels)}]'", f"--kernels {'+'.join(s.kernels)}"))
    if supervised:
        parts, left = [w for w, _ in want], []
    else:  # fsdp/grpo/dpo run their own loop: the harness refuses these there
        parts, left = [], [f"{flag} (the harness's {rec.plan.option.top_method} runs its own loop)" for _, flag in want]
    if opts.offload != "none":
        left.append(f"--offload {opts.offload} (the harness has no CPU offload)")
    if s.precision == "bf16-mixed":
        left.append("--precision bf16-mixed (the harness loads weights in the compute dtype)")
    if s.precision == "bf16-true":
        left.append("--precision bf16-true (the harness trains under autocast)")
    if s.method == "qlora" and opts.kbit_prep is False:
        left.append("--no-kbit-prep (the harness's QLoRA runs prepare_model_for_kbit_training)")
    if opts.float8:
        left.append("--float8 (the harness has no float8 linears)")
    return parts, left


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
        "model_params_b": rounded(model.params / 1e9, 3) if model else None,
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
        "estimated_peak_gb": rounded(plan.peak_gb) if plan else None,  # the high end + CUDA context: what the verdict uses
        "budget_gb": inp.gpu.per_gpu_gb,
        "margin_gb": rounded(plan.margin_gb) if plan else None,
        "memory": memory_dict(plan.memory) if plan else None,
        "generation_gb": rounded(plan.generation_gb) if plan and plan.generation_gb else None,
        "time_per_epoch_s": rounded(rec.time_per_epoch_s, 0),
        "time_per_epoch_s_range": [rounded(x, 0) for x in rec.time_per_epoch_range_s] if rec.time_per_epoch_range_s else None,
        "total_time_s": rounded(rec.time_per_epoch_s * rec.epochs, 0) if rec.time_per_epoch_s and rec.epochs else None,
        "total_time_s_range": ([rounded(x * rec.epochs, 0) for x in rec.time_per_epoch_range_s]
                               if rec.time_per_epoch_range_s and rec.epochs else None),
        "time_basis": rec.time_basis or None,
        "time_budget_h": inp.hours,
        "total_time_h_high": rounded(rec.hours_high, 2) if rec.hours_high is not None else None,
        "setup_phases": plan.whole.to_dict() if plan and plan.whole else None,
        "alternatives": [{"option": a.option, "estimated_peak_gb": a.peak_gb, "fits": a.fits, "why_not": a.why_not} for a in rec.alternatives],
        "rules": [{"id": r, "section": RULES[r].section, "quote": RULES[r].quote} for r in rec.rules],
        "steps": [{"title": st.title, "text": st.text, "rules": list(st.rules)} for st in rec.steps],
        "evidence": rec.evidence,
        "forgetting": _forgetting_dict(rec.forgetting),
        "warnings": rec.warnings,
        "harness_command": harness_command(rec),
        "inputs": {
            "gpu": inp.gpu.to_dict(), "examples": inp.examples, "capability": inp.capability,
            "auditability": inp.auditability, "model": inp.model.name if inp.model else None, "seq_len": inp.seq_len,
            "verifiable_reward": inp.verifiable_reward, "preference_pairs": inp.preference_pairs, "hours": inp.hours,
            "stack": inp.stack.describe(),
        },  # fmt: skip
        "units": UNITS,
    }


def _forgetting_dict(f) -> dict | None:
    """Forgetting measured in matching records, per (method, rank, lr), and the guide rules it contradicts."""
    if f is None:
        return None
    return {"summary": f.text(), "rules_contradicted": list(f.contradicts), "configs": [c.row() for c in f.configs]}


def print_recipe(rec) -> None:
    from rich.table import Table

    c = console()
    inp = rec.inputs
    what = f"{inp.examples:,} {inp.capability} examples" if inp.examples else f"{inp.capability}"
    if inp.preference_pairs:
        what += f", {inp.preference_pairs:,} preference pairs"
    c.print(f"[bold]advisor recommend[/] — {inp.gpu.label}, {what}, auditability {inp.auditability}, time budget {inp.hours:g} h")
    ok = "[green]feasible[/]" if rec.feasible else "[red]not feasible[/]"
    c.print(f"[bold]{esc(rec.advice)}[/]  ({ok})\n")
    if rec.plan is None:
        for st in rec.steps:
            c.print(f"  {esc(st.text)}  [dim]{', '.join(st.rules)}[/]\n")
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
    t.add_row("learning rate", f"{sci(rec.lr)}, cosine, 10% warmup, weight decay {rec.weight_decay}")
    t.add_row("epochs", f"{rec.epochs}")
    t.add_row("batch", f"{plan.micro_batch} per GPU × {plan.grad_accum} accumulation"
              + (f" × {plan.option.gpus} GPUs" if plan.option.gpus > 1 else "")
              + f" = {plan.micro_batch * plan.grad_accum * plan.option.gpus}; up to {s.seq_len} tokens each")  # fmt: skip
    t.add_row("grad checkpointing", "on" if s.grad_checkpointing else "off")
    t.add_row("precision / optimizer", f"{rec.precision} / AdamW")
    given = rec.inputs.stack.describe()
    if given:  # the stack flags the estimate was made with
        t.add_row("stack", esc(given))
    pct = 100 * plan.margin_gb / plan.budget_gb
    m = plan.memory
    expected = plan.whole.peak_reserved_gb if plan.whole is not None else m.peak_reserved_gb
    if m.peak_reserved_gb_range and expected:  # the verdict and margin use the range's high end (+ the CUDA context)
        t.add_row("peak memory", f"{expected:.1f} GB expected, {plan.peak_gb:.1f} GB at the range's high end incl. {m.cuda_context_gb:.1f} GB CUDA context, "
                  f"of {plan.budget_gb:g} GB per GPU — margin at the high end {plan.margin_gb:+.1f} GB ({pct:+.0f}%)")  # fmt: skip
    else:
        t.add_row("peak memory", f"{plan.peak_gb:.1f} GB of {plan.budget_gb:g} GB per GPU — margin {plan.margin_gb:+.1f} GB ({pct:+.0f}%)")
    rng = rec.time_per_epoch_range_s
    span = f" ({duration(rng[0])}–{duration(rng[1])})" if rng and rng[1] > rng[0] else ""
    t.add_row("time per epoch", f"~{duration(rec.time_per_epoch_s)}{span}  [dim]({esc(rec.time_basis)})[/]")
    if rec.time_per_epoch_s and rec.epochs:
        total = f" ({duration(rng[0] * rec.epochs)}–{duration(rng[1] * rec.epochs)})" if span else ""
        t.add_row("total time", f"~{duration(rec.time_per_epoch_s * rec.epochs)}{total} for {rec.epochs:g} epoch(s); "
                  f"budget {inp.hours:g} h at the high end")  # fmt: skip
    c.print(t)
    c.print()
    if plan.whole is not None:  # GRPO / DPO: every phase of the setup
        from advisor.render.speed import phases_table

        c.print(phases_table(plan.whole, f"Estimated peak per GPU by phase ({plan.whole.objective.name}; the largest sets the budget)"))
        notes = plan.whole.notes
    else:
        c.print(breakdown_table(plan.memory, f"Estimated peak per GPU ({plan.memory.peak_phase})"))
        notes = plan.memory.notes
    for note in notes:
        c.print(f"  [dim]{esc(note)}[/]")
    c.print()
    _print_alternatives(c, rec)
    _print_rules(c, rec)
    if rec.evidence:
        _print_evidence(c, rec)
    if rec.forgetting is not None:
        c.print("[bold]Forgetting measured in matching records[/]")
        c.print(f"  {esc(rec.forgetting.text())}.\n")
    if rec.warnings:
        c.print("[bold yellow]Warnings[/]")
        for w in rec.warnings:
            c.print(f"  • {esc(w)}")
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
        t.add_row(esc(a.option), "–" if a.peak_gb is None else f"{a.peak_gb:.1f}", fits, esc(a.why_not))
    c.print(t)
    c.print()


def _print_rules(c, rec) -> None:
    from rich.table import Table

    t = Table(title="Rules applied (tunebench reference: practitioners' decision rules)", title_justify="left", show_edge=False)
    t.add_column("id", no_wrap=True)
    t.add_column("the guide says", overflow="fold")
    for rid in rec.rules:
        t.add_row(rid, esc(RULES[rid].quote))
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
    c = console()
    inp = rec.inputs
    c.print(f"[bold]advisor explain[/] — {inp.gpu.label}, examples={inp.examples}, capability={inp.capability}, "
            f"auditability={inp.auditability}, model={inp.model.name if inp.model else '(largest that fits)'}, "
            f"seq_len={inp.seq_len}, verifiable_reward={inp.verifiable_reward}, preference_pairs={inp.preference_pairs}\n")  # fmt: skip
    for i, st in enumerate(rec.steps, 1):
        c.print(f"[bold]{i}. {st.title}[/]")
        c.print(f"   {esc(st.text)}")
        for rid in st.rules:
            c.print(f"   [dim]{rid}: {esc(RULES[rid].quote)}[/]")
        c.print()
    c.print(f"[bold]→ {esc(rec.advice)}[/]" + ("" if rec.feasible else " [red](not feasible)[/]"))
    for a in rec.alternatives:
        c.print(f"   not {esc(a.option)}: {esc(a.why_not)}")
    for w in rec.warnings:
        c.print(f"   [yellow]warning:[/] {esc(w)}")
