"""What every advisor view shares: units, number and duration formats, the memory breakdown as a dict
and as a table, and the console.

``rich`` is imported inside the printing functions only, so ``--json`` stays as light as possible.
"""

from __future__ import annotations

from advisor.memory import overhead

UNITS = "GB = GiB (2^30 bytes), the unit torch.cuda and nvidia-smi report"


def rounded(x, nd=2):
    return None if x is None else round(float(x), nd)


def sci(x: float) -> str:
    """2e-4, 5e-6: the spelling the guides and configs use."""
    mant, exp = f"{x:e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def duration(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def range_list(pair) -> list | None:
    return None if pair is None else [rounded(pair[0], 3), rounded(pair[1], 3)]


def memory_dict(b) -> dict:
    return {
        "breakdown_gb": {k: rounded(v, 3) for k, v in b.items().items()},
        "peak_allocated_gb": rounded(b.peak_allocated_gb, 3),
        "peak_reserved_gb": rounded(b.peak_reserved_gb, 3),
        "peak_allocated_gb_range": range_list(b.peak_allocated_gb_range),
        "peak_reserved_gb_range": range_list(b.peak_reserved_gb_range),
        "cuda_context_gb": b.cuda_context_gb or None,
        "churn_gb": rounded(b.churn_gb, 3) if b.peak_reserved_gb is not None else None,
        "peak_device_gb_high": rounded(b.peak_gb_high, 3) if b.peak_reserved_gb is not None else None,
        "cpu_offload_gb": rounded(b.cpu_offload_gb, 3) or None,
        "cpu_resident_gb": rounded(b.cpu_resident_gb, 3),
        "peak_phase": b.peak_phase,
        "other_phase_gb": rounded(b.other_phase_gb, 3),
        "paged_optimizer_gb": rounded(b.paged_optimizer_gb, 3),
        "trainable_params": b.trainable_params,
        "total_params": b.total_params,
        "per_gpu": b.per_gpu,
        "notes": list(b.notes),
    }


def esc(text) -> str:
    """Dynamic text never carries rich markup: `eval.probes=[general_mc]` must print as is."""
    from rich.markup import escape

    return escape(str(text))


def console():
    from rich.console import Console

    c = Console(highlight=False)
    if not c.is_terminal:  # piped or captured: 100 columns rather than rich's 80, so tables stay tables
        c = Console(highlight=False, width=100)
    return c


def breakdown_table(b, title: str):
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
        how = b.reserved_basis or f"allocator: +{overhead.FRAG:.0%} of {b.churn_gb:.2f} churned"
        t.add_row(f"peak reserved ({how})",
                  f"{b.peak_reserved_gb:.2f}  (range {rng[0]:.2f}–{rng[1]:.2f})")
        t.add_row("CUDA context" + (" + NCCL" if b.per_gpu else "") + " (outside the allocator)", f"{b.cuda_context_gb:.2f}")
        t.add_row("[bold]device total (nvidia-smi), high end[/]", f"[bold]{b.peak_gb_high:.2f}[/]")
    if b.cpu_offload_gb:
        t.add_row("host memory (offloaded)", f"{b.cpu_offload_gb:.2f}")
    if b.cpu_resident_gb is not None:
        t.add_row("CPU resident (RSS delta)", f"{b.cpu_resident_gb:.2f}")
    return t
