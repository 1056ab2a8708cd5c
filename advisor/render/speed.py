"""How whole-setup estimates and time look: GRPO/DPO phases, step time, the time validation table.

Beside recipe.py (recipes), estimate.py (SFT memory, catalogs) and validate.py, on the
formats of common.py; ``rich`` is imported inside the printing functions only, so ``--json``
stays light.
"""

from __future__ import annotations

from advisor.render.common import UNITS, console, esc, memory_dict, rounded


def step_dict(step) -> dict | None:
    if step is None:
        return None
    st, dev = step
    return {"seconds": rounded(st.seconds, 3), "seconds_range": [rounded(st.low, 3), rounded(st.high, 3)],
            "tokens_per_step": st.tokens, "tokens_per_s": rounded(st.tokens_per_s, 0),
            "tokens_per_s_range": [rounded(x, 0) for x in st.tokens_per_s_range], "basis": dev.basis}  # fmt: skip


def print_step(step) -> None:
    if step is None:
        return
    st, dev = step
    lo, hi = st.tokens_per_s_range
    console().print(f"\n  one optimizer step: ~{st.seconds:.3g} s ({st.low:.3g}–{st.high:.3g} s), {st.tokens_per_s:,.0f} tokens/s "
                     f"({lo:,.0f}–{hi:,.0f})  [dim]{esc(dev.basis)}[/]")  # fmt: skip


def setup_estimate_dict(model, whole, step) -> dict:
    s, obj = whole.setup, whole.objective
    return {
        "model": model.name,
        "model_params_b": rounded(model.params / 1e9, 3),
        "method": obj.name,
        "inner": s.method,
        "setup": {
            "rank": s.rank if s.adapted else None, "targets": s.targets if s.adapted else None,
            "sequences_per_micro_batch": s.batch_size, "seq_len": s.seq_len, "grad_checkpointing": s.grad_checkpointing,
            "precision": s.precision, "optimizer": s.optimizer, "gpus": s.gpus, "grad_accum": s.grad_accum, "device": s.device,
            "num_generations": obj.num_generations if obj.name == "grpo" else None,
            "max_completion_len": obj.max_completion_len if obj.name == "grpo" else None,
            "beta": obj.beta if obj.name == "grpo" else None,
        },  # fmt: skip
        **whole.to_dict(),
        "training": memory_dict(whole.training),
        "step_time": step_dict(step),
        "units": UNITS,
    }


def phases_table(whole, title: str):
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_edge=False)
    cols = [k for k in dict.fromkeys(k for p in whole.phases for k in p.items) if any(p.items.get(k) for p in whole.phases)]
    t.add_column("component")
    for p in whole.phases:
        t.add_column(p.name, justify="right")
    for k in cols:
        t.add_row(k.replace("_", " "), *(f"{p.items.get(k, 0.0):.2f}" for p in whole.phases))
    t.add_row("[bold]allocated[/]", *(f"[bold]{p.allocated_gb:.2f}[/]" for p in whole.phases))
    if whole.setup.device == "cpu":
        t.add_row("CPU resident", *(f"{p.cpu_resident_gb:.2f}" for p in whole.phases))
    else:
        from advisor.memory import overhead

        t.add_row(f"reserved (+{overhead.FRAG:.0%} of the churn)",
                  *(f"{overhead.reserved_gb(p.allocated_gb, overhead.churn_gb(p.items)):.2f}" for p in whole.phases))
    return t


def print_setup_estimate(model, whole, step) -> None:
    c = console()
    s, obj = whole.setup, whole.objective
    what = (f"{obj.num_generations} generations × {obj.max_completion_len} completion tokens, β {obj.beta:g}" if obj.name == "grpo"
            else f"{s.batch_size // 2} pair(s) per micro-batch")  # fmt: skip
    c.print(f"[bold]advisor estimate[/] — {model.name} ({model.params / 1e9:.2f}B), {obj.name} training {s.method}"
            + (f" r={s.rank} {s.targets}" if s.adapted else "") + f", {what}, reference: {whole.reference}\n")  # fmt: skip
    c.print(phases_table(whole, "Peak by phase (the largest sets the budget)"))
    peak = whole.peak_gb
    kind = "CPU resident" if s.device == "cpu" else "reserved"
    c.print(f"\n  [bold]peak: {peak:.2f} GB {kind}[/] in the {whole.peak_phase.name} phase "
            f"(allocated {whole.peak_allocated_gb:.2f} GB)")  # fmt: skip
    for n in whole.notes:
        c.print(f"  [dim]{esc(n)}[/]")
    print_step(step)
    c.print(f"\n[dim]{UNITS}.[/]")


# ---------------------------------------------------------------- validate


def _rows(rows) -> list[dict]:
    out = []
    for r in rows:
        d = r.to_dict()
        for k in ("measured_tps", "predicted_tps", "low_tps", "high_tps", "error_pct", "seq_len"):
            d[k] = rounded(d[k], 1)
        out.append(d)
    return out


def time_dict(published, harness) -> dict:
    from advisor.validate.calibration import mape

    return {
        "published": {"rows": _rows(published), "mape_pct": rounded(mape(published)),
                      "in_range": sum(r.in_range for r in published if not r.excluded), "n": sum(r.error_pct is not None and not r.excluded for r in published)},
        "harness": {"rows": _rows(harness), "mape_pct": rounded(mape(harness)),
                    "in_range": sum(r.in_range for r in harness), "n": sum(r.error_pct is not None and not r.excluded for r in harness)},
        "basis": "tokens/s as each source counts them; predicted = geometric mean of the fast and slow ends of the device's rates",
    }  # fmt: skip


def _time_table(title, rows, *, model: bool = True):
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    cols = ("id", "model", "method", "device", "seq", "tok/s", "predicted", "range", "error")
    for col in cols if model else tuple(c for c in cols if c != "model"):
        t.add_column(col, justify="left" if col in ("id", "model", "method", "device") else "right",
                     overflow="fold", no_wrap=col not in ("id", "model", "device"), min_width=6 if col == "device" else None)  # fmt: skip
    for r in rows:
        err = "–" if r["error_pct"] is None else f"{r['error_pct']:+.0f}%" + ("" if r["in_range"] else "[yellow]*[/]")
        if r["excluded"]:
            err = "[yellow]excl.[/]"
        rng = "–" if r["low_tps"] is None else f"{r['low_tps']:,.0f}–{r['high_tps']:,.0f}"
        fmt = lambda v: "–" if v is None else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"  # noqa: E731
        cells = [esc(r["id"])] + ([esc(r["model"])] if model else []) + [esc(r["method"]), esc(r["device"]), "–" if r["seq_len"] is None else f"{r['seq_len']:,.0f}",
                                                                         fmt(r["measured_tps"]), fmt(r["predicted_tps"]), rng, err]  # fmt: skip
        t.add_row(*cells)
    return t


def print_time(report: dict, directory) -> None:
    c = console()
    p, h = report["published"], report["harness"]
    c.print()
    c.print(_time_table("Time: published rows with tokens/s (predicted on the row's GPU: datasheet peak and bandwidth)", p["rows"]))
    for r in p["rows"]:
        if r["note"]:
            c.print(f"  [dim]{esc(r['id'])}: {esc(r['note'])}[/]")
        if r["excluded"]:
            c.print(f"  [dim]{esc(r['id'])} not scored: {esc(r['excluded'])}[/]")
    if p["mape_pct"] is not None:
        c.print(f"\n[bold]time, published: MAPE {p['mape_pct']:.0f}%[/] over {p['n']} rows; {p['in_range']} inside the predicted range")
    if h["rows"]:
        c.print()
        c.print(_time_table(f"Time: harness runs in {directory} (tokens/s; a CPU priced at the run's measured matmul peak)",
                            h["rows"], model=False))
        reasons: dict[str, list[str]] = {}
        for r in h["rows"]:
            if r["excluded"]:
                reasons.setdefault(r["excluded"], []).append(r["id"])
        for why, ids in reasons.items():
            c.print(f"  excluded {esc(', '.join(ids[:3]))}{' +' + str(len(ids) - 3) if len(ids) > 3 else ''}: {esc(why)}")
        if h["mape_pct"] is not None:
            c.print(f"\n[bold]time, harness runs: MAPE {h['mape_pct']:.0f}%[/] over {h['n']}; {h['in_range']} inside the predicted range")
    c.print(f"[dim]* measured outside the predicted range. {esc(report['basis'])}[/]")
