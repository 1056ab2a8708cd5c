"""``advisor validate --simulate``: the simulated step's time against published tokens/s.

Every row of ``advisor/data/published_throughput.csv`` is set up as the analytic time model sets
it up (``validate.speed.published_setup``: the row's model, method, batch, padded length,
checkpointing, loss, optimizer, attention kernel), its step is traced on fake tensors
(``ops.trace``) and priced on the row's GPU (``pricing.price``), counting the tokens the source
counts (``mean_len``: non-padding tokens). A multi-GPU row (FSDP) is one rank's step: its local
batch on unsharded weights, collectives overlapped with compute, the optimizer over 1/N of the
parameters. No constant of the pricing is fitted to these rows, so leave-one-source-out equals the
plain figure per source.
"""

from __future__ import annotations

from dataclasses import replace


def simulated_time_rows(rows: list[dict] | None = None, *, progress=None) -> list:
    from advisor.simulate import config_for
    from advisor.simulate.timing import simulated_time
    from advisor.speed.step import gpu_rates
    from advisor.validate.speed import TimeRow, published_rows, published_setup

    out = []
    for r in rows if rows is not None else published_rows():
        model, g, s, mean_len = published_setup(r)
        dev = gpu_rates(g)
        priced, _ = simulated_time(s, config_for(model), dev, tokens=s.batch_size * mean_len * s.grad_accum,
                                   optimizer_shards=int(r.get("gpus") or 1))  # fmt: skip
        measured = float(r["tokens_per_s"])
        lo, hi = priced.tokens_per_s_range
        label = r["method"] + (f" r{r['rank']}" if r["rank"] else "")
        err = 100 * (priced.tokens_per_s - measured) / measured
        out.append(TimeRow(r["id"], model.name, label, g.name, s.seq_len, measured, priced.tokens_per_s, lo, hi, err,
                           r.get("src") or r["source"], r.get("time_excluded") or ""))  # fmt: skip
        if progress:
            progress(out[-1])
    return out


def by_source(rows) -> dict:
    """MAPE, bias and the share inside the range / under the range's high end, per source and overall."""
    groups: dict = {}
    rows = [r for r in rows if not r.excluded]  # a row whose workload the source does not state (printed, not scored)
    for r in rows:
        groups.setdefault(r.note, []).append(r)
    groups["all"] = list(rows)

    def summary(rs):
        if not rs:
            return {"n": 0, "mape_pct": None, "bias_pct": None, "in_range": 0, "time_high_holds": 0}
        errs = [r.error_pct for r in rs]
        return {"n": len(rs), "mape_pct": round(sum(map(abs, errs)) / len(rs), 1), "bias_pct": round(sum(errs) / len(rs), 1),
                "in_range": sum(r.in_range for r in rs),
                # the range's high end in time is its low end in tokens/s: a measurement at or above it
                "time_high_holds": sum(r.measured_tps >= r.low_tps for r in rs)}  # fmt: skip

    return {k: summary(v) for k, v in groups.items()}


def as_dict(rows, analytic) -> dict:
    from advisor.render.speed import _rows

    src = {r.id: (r.note, r.excluded) for r in rows}  # the analytic rows grouped by the same sources
    same = [replace(a, note=src[a.id][0], excluded=src[a.id][1]) for a in analytic if a.id in src]
    return {"rows": _rows(rows), "by_source": by_source(rows), "analytic_same_rows": by_source(same),
            "basis": "simulated step priced per operator on the row's GPU datasheet (advisor/simulate/pricing.py); "
                     "no fitted constant: leave-one-source-out = per source"}  # fmt: skip


def print_report(d: dict) -> None:
    from advisor.render.common import console
    from advisor.render.speed import _time_table

    c = console()
    c.print()
    c.print(_time_table("Time, simulated: published rows (the harness's step on fake tensors, priced per operator)", d["rows"]))
    c.print(f"  {'source':<24} {'n':>3} {'MAPE':>6} {'bias':>6} {'in range':>9} {'time ≤ high':>12}   analytic MAPE")
    for src, s in d["by_source"].items():
        a = d["analytic_same_rows"].get(src, {}).get("mape_pct")
        if not s["n"]:
            continue
        c.print(f"  {src:<24} {s['n']:>3} {s['mape_pct']:>5.1f}% {s['bias_pct']:>+5.1f}% {s['in_range']:>5}/{s['n']:<3} "
                f"{s['time_high_holds']:>8}/{s['n']:<3}   {'–' if a is None else f'{a:.1f}%'}")  # fmt: skip
    for r in d["rows"]:
        if r["excluded"]:
            c.print(f"  [dim]{r['id']} not scored: {r['excluded']}[/]")
    c.print(f"[dim]{d['basis']}[/]")


__all__ = ["as_dict", "by_source", "print_report", "simulated_time_rows"]
