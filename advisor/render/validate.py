"""How ``advisor validate`` looks: the memory model against published rows and harness runs."""

from __future__ import annotations

from advisor.memory import estimate as memory_estimate
from advisor.memory import overhead
from advisor.render.common import console, esc, rounded, range_list


def validate_dict(directory, published, harness, warnings, fitted, sources=(), device=()) -> dict:
    from advisor.validate import memory as v
    from advisor.validate.calibration import mape

    def rows(rs):
        out = []
        for r in rs:
            d = r.to_dict() | {k: rounded(r.to_dict()[k], 3) for k in ("measured_gb", "predicted_gb", "error_pct")}
            d["range_gb"] = range_list(r.range_gb)
            out.append(d)
        return out

    scored = [r for r in published if r.in_range is not None]
    n = len(scored)
    return {
        "published": {
            "rows": rows(published),
            "mape_pct": rounded(mape(published, metrics=v.KNOWN)),
            "mape_unknown_metric_pct": rounded(mape(published, metrics=("?",))),
            "mape_all_pct": rounded(mape(published)),
            "loso": {
                "sources": [s.to_dict() for s in sources],
                "n": n,
                "mae_pct": rounded(sum(abs(r.error_pct) for r in scored) / n) if n else None,
                "bias_pct": rounded(sum(r.error_pct for r in scored) / n) if n else None,
                "in_range_pct": rounded(100 * sum(r.in_range for r in scored) / n) if n else None,
                "under_high_pct": rounded(100 * sum(r.measured_gb <= r.range_gb[1] for r in scored) / n) if n else None,
                "method": "each source's rows estimated with the allocator's FRAG fitted on the other sources; its range "
                          "from the other sources' residuals in the same peak phase",
            },
            "excluded": [{"id": r.id, "reason": r.excluded} for r in published if r.excluded],
            "units": "published GB (10^9 bytes) converted to GiB",
            "device_total": {  # nvidia-smi readings vs reserved + CUDA context (+ NCCL), and the verdict's high end
                "rows": [{"id": r.id, "nvidia_smi_gb": rounded(r.measured_gb, 3), "expected_gb": rounded(r.predicted_gb, 3),
                          "error_pct": rounded(r.error_pct), "high_end_gb": rounded(r.range_gb[1], 3), "covered": r.in_range}
                         for r in device],  # fmt: skip
                "covered": sum(bool(r.in_range) for r in device), "n": len(device),
                "mae_pct": rounded(sum(abs(r.error_pct) for r in device) / len(device)) if device else None,
            },
        },
        "harness": {
            "dir": str(directory),
            "rows": rows(harness),
            "n": sum(1 for r in harness if r.error_pct is not None and not r.excluded),
            "mape_pct": rounded(mape(harness)),
            "mape_cpu_pct": rounded(mape(harness, metrics=("cpu_rss_delta",))),
            "mape_cuda_pct": rounded(mape(harness, metrics=("cuda_allocated", "cuda_reserved"))),
            "excluded": [{"id": r.id, "reason": r.excluded} for r in harness if r.excluded],
        },
        "constants": {
            **{k: v for k, (v, _) in overhead.constants().items()},
            "CPU_SLACK_FRAC": memory_estimate.CPU_SLACK_FRAC, "CPU_RUNTIME_GB": memory_estimate.CPU_RUNTIME_GB,
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
        cells = [r["id"], esc(r["model"]), r["method"], r["metric"], str(r["seq_len"] or "–"),
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
        c.print(f"  [dim]{esc(shown)}: {esc(note)}[/]")


def _print_loso(c, loso) -> None:
    from rich.table import Table

    if not loso["sources"]:
        return
    t = Table(title="Leave-one-source-out (each source against constants and ranges from the others)", title_justify="left", show_edge=False)
    for col in ("source", "rows", "MAE", "bias", "≤ high end", "in range", "range applied", "FRAG"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for s in loso["sources"]:
        t.add_row(esc(s["source"]), str(s["n"]), f"{s['mae_pct']:.1f}%", f"{s['bias_pct']:+.1f}%",
                  f"{s['under_high']}/{s['n']}", f"{s['covered']}/{s['n']}",
                  f"{100 * s['low']:+.0f}% … {100 * s['high']:+.0f}%", f"{s['reserved_frac']:.2f}")  # fmt: skip
    c.print()
    c.print(t)
    c.print(f"[bold]leave-one-source-out over {loso['n']} rows: MAE {loso['mae_pct']:.1f}%, bias {loso['bias_pct']:+.1f}%, "
            f"{loso['under_high_pct']:.0f}% at or under the range's high end, {loso['in_range_pct']:.0f}% inside the range[/]")  # fmt: skip


def print_validate(report) -> None:
    c = console()
    if not c.is_terminal:  # the rows table has 9 columns
        c.width = 150
    p, h = report["published"], report["harness"]
    c.print(_rows_table("Published measurements (GB = GiB; allocated vs allocated, reserved vs reserved)", p["rows"]))
    _notes(c, p["rows"])
    c.print(f"\n[bold]published, known metric: MAPE {p['mape_pct']:.1f}%[/] over "
            f"{sum(1 for r in p['rows'] if r['metric'] in ('allocated', 'reserved') and not r['excluded'])} rows; "
            f"unknown metric ('?', compared as reserved): {p['mape_unknown_metric_pct']:.1f}%; all compared rows: {p['mape_all_pct']:.1f}%")  # fmt: skip
    for e in p["excluded"]:
        c.print(f"  excluded {e['id']}: {esc(e['reason'])}")
    _print_loso(c, p["loso"])
    dev = p.get("device_total")
    if dev and dev["n"]:
        under = ", ".join(f"{r['id']} ({r['nvidia_smi_gb']:.1f} > {r['high_end_gb']:.1f})" for r in dev["rows"] if not r["covered"])
        c.print(f"device total (nvidia-smi) vs reserved + CUDA context (+ NCCL): MAE {dev['mae_pct']:.1f}% over {dev['n']} rows; "
                f"at or under the verdict's high end: {dev['covered']}/{dev['n']}" + (f"; over it: {under}" if under else ""))  # fmt: skip
    c.print()
    if h["rows"]:
        c.print(_rows_table(f"Harness runs in {h['dir']} (CPU resident vs cpu_rss_delta, allocated vs cuda_allocated)", h["rows"]))
        _notes(c, h["rows"])
        for e in h["excluded"]:
            c.print(f"  excluded {e['id']}: {esc(e['reason'])}")
        parts = [f"[bold]harness runs: MAPE {h['mape_pct']:.1f}%[/] over {h['n']}" if h["mape_pct"] is not None else "harness runs: nothing comparable"]
        if h["mape_cpu_pct"] is not None:
            parts.append(f"CPU {h['mape_cpu_pct']:.1f}%")
        if h["mape_cuda_pct"] is not None:
            parts.append(f"CUDA {h['mape_cuda_pct']:.1f}%")
        c.print("\n" + "; ".join(parts))
    else:
        c.print(f"harness runs: none found in {h['dir']} (run the harness first, e.g. python -m harness debug=smoke)")
    for w in report["warnings"]:
        c.print(f"[yellow]warning:[/] {esc(w)}")
    k = report["constants"]
    c.print("\n[dim]constants: " + ", ".join(f"{name} {value}" for name, value in k.items()) + "[/]")
    if report["fit"]:
        c.print(f"[bold]fit[/] (best on this data): {report['fit']}")
