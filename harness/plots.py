"""The report's figures, drawn from the tidy run table that ``harness.report`` builds.

Every function takes that table (one row per run: method, point, status, r, batch_size,
max_seq_len, budget_gb, peak_memory_gb, memory_kind, tokens_per_s, mfu, task_score,
forgetting, estimate_gb, on_front_*) and returns a ``Plot`` holding PNG bytes. A plot whose
data is missing still exists and says why, so a report always has the same sections.

No pyplot: ``matplotlib.figure.Figure`` keeps no global state and needs no display.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

# One colour per method in every plot (colour-blind-safe Okabe-Ito order).
METHOD_COLORS = {
    "lora": "#0072B2", "qlora": "#009E73", "dora": "#E69F00", "full": "#D55E00",
    "fsdp": "#CC79A7", "grpo": "#56B4E9", "dpo": "#000000",
}
FALLBACK_COLORS = ("#999999", "#882255", "#44AA99", "#117733", "#332288")
DPI = 100  # 7.5 x 4.2 in → 750 x 420 px: readable in a 1000 px page column and in Markdown viewers


@dataclass(frozen=True)
class Plot:
    name: str  # stable id: the HTML anchor and the PNG file name
    title: str
    caption: str
    png: bytes


def color(method: str) -> str:
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return FALLBACK_COLORS[sum(map(ord, str(method))) % len(FALLBACK_COLORS)]


def _figure(width: float = 7.5, height: float = 4.2) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _empty(name: str, title: str, why: str) -> Plot:
    fig = _figure(7.5, 1.8)
    ax = fig.add_subplot()
    ax.set_axis_off()
    text = textwrap.fill(f"no data: {why}", 80)
    ax.text(0.5, 0.5, f"{title}\n\n{text}", ha="center", va="center", fontsize=10.5, color="#555555")
    return Plot(name, title, f"No data: {why}.", _png(fig))


def _mem_label(runs: pd.DataFrame) -> str:
    kinds = sorted({k for k in runs.get("memory_kind", pd.Series(dtype=object)).dropna().unique()})
    return f"peak memory (GB, {' / '.join(kinds)})" if kinds else "peak memory (GB)"


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False)


def modal_settings(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs at the most common model, task, batch size and sequence length, without a budget.

    Memory and speed depend on all four; holding them fixed makes a per-method line comparable.
    """
    out = runs[runs["budget_gb"].isna()] if "budget_gb" in runs else runs
    for col in ("model", "task", "batch_size", "max_seq_len"):
        if col in out and out[col].notna().any():
            out = out[out[col] == out[col].mode().iloc[0]]
    return out


def memory_vs_rank(runs: pd.DataFrame) -> Plot:
    name, title = "memory_vs_rank", "Peak memory vs adapter rank"
    ok = modal_settings(runs[runs["status"] == "ok"]).dropna(subset=["peak_memory_gb"])
    if ok.empty:
        return _empty(name, title, "no successful run measured peak memory")
    fig = _figure()
    ax = fig.add_subplot()
    ranked = ok[ok["r"].notna()]
    for method, grp in ranked.groupby("method", sort=True):
        med = grp.groupby("r")["peak_memory_gb"].median().sort_index()
        ax.plot(med.index.astype(float), med.values, "o-", color=color(method), label=method)
    for method, grp in ok[ok["r"].isna()].groupby("method", sort=True):
        ax.axhline(grp["peak_memory_gb"].median(), ls="--", color=color(method), label=f"{method} (no adapter)")
    if not ranked.empty and ranked["r"].max() / max(ranked["r"].min(), 1) >= 8:
        ax.set_xscale("log", base=2)
    ranks = sorted(ranked["r"].unique())
    if ranks:
        ax.set_xticks([float(r) for r in ranks], [str(int(r)) for r in ranks])
    ax.set_xlabel("adapter rank r")
    ax.set_ylabel(_mem_label(ok))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax)
    return Plot(name, title, "Median over repeats, at the most common model, task, batch size and sequence length; "
                "dashed lines are methods without a rank.", _png(fig))


def throughput(runs: pd.DataFrame) -> Plot:
    name, title = "throughput", "Throughput per method"
    ok = runs[(runs["status"] == "ok") & runs["tokens_per_s"].notna()]
    if ok.empty:
        return _empty(name, title, "no successful run measured tokens/s")
    stats = ok.groupby("point").agg(method=("method", "first"), tps=("tokens_per_s", "median"),
                                    lo=("tokens_per_s", "min"), hi=("tokens_per_s", "max"),
                                    mfu=("mfu", "median")).sort_values("tps")
    fig = _figure(7.5, max(2.4, 0.9 + 0.28 * len(stats)))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    y = range(len(stats))
    colors = [color(m) for m in stats["method"]]
    ax1.barh(y, stats["tps"], xerr=[stats["tps"] - stats["lo"], stats["hi"] - stats["tps"]], color=colors, capsize=2)
    ax1.set_yticks(list(y), list(stats.index), fontsize=8)
    ax1.set_xlabel("training tokens/s (median, whiskers min–max)")
    ax2.barh(y, 100 * stats["mfu"].fillna(0), color=colors)
    ax2.set_xlabel("MFU (% of peak FLOP/s)")
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return Plot(name, title, "Steady-state training throughput (warm-up steps excluded) and model FLOP utilisation; "
                "one bar per configuration.", _png(fig))


def _front_scatter(name: str, title: str, pts: pd.DataFrame, x: str, y: str, front: str,
                   xlabel: str, ylabel: str, caption: str) -> Plot:
    fig = _figure()
    ax = fig.add_subplot()
    for method, grp in pts.groupby("method", sort=True):
        ax.scatter(grp[x], grp[y], s=36, color=color(method), label=method, zorder=3)
    on = pts[pts[front]].sort_values(x)
    if not on.empty:
        ax.step(on[x], on[y], where="post", color="#333333", lw=1, ls=":", zorder=2, label="Pareto front")
        ax.scatter(on[x], on[y], s=120, facecolors="none", edgecolors="#333333", zorder=4)
        for _, row in on.iterrows():
            ax.annotate(str(row["point"]), (row[x], row[y]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax)
    return Plot(name, title, caption, _png(fig))


def score_vs_forgetting(points: pd.DataFrame) -> Plot:
    name, title = "score_vs_forgetting", "Task score vs forgetting"
    pts = points.dropna(subset=["task_score", "forgetting"])
    if pts.empty:
        return _empty(name, title, "no run has both a task score and forgetting probes (eval.probes)")
    return _front_scatter(name, title, pts, "forgetting", "task_score", "front_score_forgetting",
                          "forgetting (mean probe drop, score points; lower is better)", "task score (higher is better)",
                          "One point per configuration (median over repeats); circled points are the Pareto front: "
                          "no other configuration scores higher and forgets less.")


def memory_vs_score(points: pd.DataFrame) -> Plot:
    name, title = "memory_vs_score", "Peak memory vs task score"
    pts = points.dropna(subset=["task_score", "peak_memory_gb"])
    if pts.empty:
        return _empty(name, title, "no successful run has both a task score and a peak memory")
    return _front_scatter(name, title, pts, "peak_memory_gb", "task_score", "front_memory_score",
                          _mem_label(points) + " — lower is better", "task score (higher is better)",
                          "One point per configuration (median over repeats); circled points are the Pareto front: "
                          "no other configuration scores higher in less memory.")


BOUNDARY_AXES = (("batch_size", "batch size"), ("max_seq_len", "max sequence length (tokens)"), ("r", "adapter rank r"))


def oom_boundary(runs: pd.DataFrame) -> Plot:
    name, title = "oom_boundary", "OOM boundary under a memory budget"
    budgeted = runs[runs["budget_gb"].notna()] if "budget_gb" in runs else runs.iloc[:0]
    if budgeted.empty:
        return _empty(name, title, "no run set a memory budget (budget_gb)")
    axis, label = next(((c, lab) for c, lab in BOUNDARY_AXES if budgeted[c].nunique() > 1), ("batch_size", "batch size"))
    fig = _figure()
    ax = fig.add_subplot()
    for budget in sorted(budgeted["budget_gb"].unique()):
        ax.axhline(budget, color="#C00000", ls="--", lw=1)
        ax.annotate(f"budget {budget:g} GB", (0.01, budget), xycoords=("axes fraction", "data"), fontsize=8,
                    color="#C00000", xytext=(0, 3), textcoords="offset points")
    for method, grp in budgeted.groupby("method", sort=True):
        ok = grp[grp["status"] == "ok"].groupby(axis)["peak_memory_gb"].median().sort_index()
        if not ok.empty:
            ax.plot(ok.index, ok.values, "o-", color=color(method), label=f"{method} ok")
        bad = grp[grp["status"] == "oom"]
        if not bad.empty:
            y = bad["peak_memory_gb"].fillna(bad["budget_gb"]).clip(lower=bad["budget_gb"])
            ax.scatter(bad[axis], y, marker="X", s=90, color=color(method), edgecolors="#C00000", label=f"{method} oom")
    ax.set_xlabel(label)
    ax.set_ylabel(_mem_label(budgeted))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax)
    return Plot(name, title, f"Runs with a budget: measured peak of the runs that fit, and an X where the run went out of "
                f"memory; the boundary lies between the last circle and the first X along {label}.", _png(fig))


def advisor_vs_measured(runs: pd.DataFrame, why_missing: str | None) -> Plot:
    name, title = "advisor_vs_measured", "Advisor estimate vs measured peak memory"
    pts = runs[(runs["status"] == "ok")].dropna(subset=["estimate_gb", "peak_memory_gb"]) if "estimate_gb" in runs else runs.iloc[:0]
    if pts.empty:
        return _empty(name, title, why_missing or "the advisor gave no estimate for these runs")
    fig = _figure()
    ax = fig.add_subplot()
    for method, grp in pts.groupby("method", sort=True):
        ax.scatter(grp["estimate_gb"], grp["peak_memory_gb"], s=36, color=color(method), label=method, zorder=3)
    hi = float(max(pts["estimate_gb"].max(), pts["peak_memory_gb"].max())) * 1.1
    ax.plot([0, hi], [0, hi], color="#333333", lw=1, ls="--", label="estimate = measured")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("advisor estimate (GB)")
    ax.set_ylabel("measured " + _mem_label(pts))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax)
    err = (pts["peak_memory_gb"] / pts["estimate_gb"] - 1).abs().median()
    return Plot(name, title, f"Each successful run; points above the diagonal used more than estimated. "
                f"Median |error| {100 * err:.0f}% over {len(pts)} runs.", _png(fig))
