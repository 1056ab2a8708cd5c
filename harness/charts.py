"""The report's figures, drawn from ``harness.analysis``'s tables (runs, points, probe drops, curves).

Every function returns a ``Plot`` holding PNG bytes and the layout it was drawn with (each data
axes' x-extent as a fraction of the figure width, so a test can check that labels never crush the
data area). A plot whose data is missing still exists and says why, so a report always has the same
sections. Legibility from 2 to 60 configurations: bar charts grow 0.24 in per bar, labels are
wrapped to ``LABEL_CHARS`` characters on at most two lines (about a quarter of a 7.5 in figure at
8 pt), and panels that compare different groups are stacked, never squeezed side by side.

No pyplot: ``matplotlib.figure.Figure`` keeps no global state and needs no display.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

# One colour per method in every plot (colour-blind-safe Okabe-Ito order).
METHOD_COLORS = {
    "lora": "#0072B2", "qlora": "#009E73", "dora": "#E69F00", "full": "#D55E00",
    "fsdp": "#CC79A7", "grpo": "#56B4E9", "dpo": "#000000",
}
FALLBACK_COLORS = ("#999999", "#882255", "#44AA99", "#117733", "#332288")
DPI = 100  # 7.5 in wide → 750 px: shown unscaled in the report's 1020 px column and in Markdown viewers
WIDTH = 7.5
LABEL_CHARS = 30  # 8 pt ≈ 0.06 in a character: 30 characters ≈ 1.8 in, a quarter of the width
MAX_PANELS = 6  # stacked panels per figure; the caption names what was left out
ANNOTATE_MAX = 10  # scatter points named beside them, per panel; more would overprint


@dataclass(frozen=True)
class Plot:
    name: str  # stable id: the HTML anchor and the PNG file name
    title: str
    caption: str
    png: bytes
    axes: tuple[tuple[float, float], ...] = ()  # each data axes' (x0, width), fractions of the figure width


def color(method: str) -> str:
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return FALLBACK_COLORS[sum(map(ord, str(method))) % len(FALLBACK_COLORS)]


def short(label: str, chars: int = LABEL_CHARS, lines: int = 2) -> str:
    """Wrapped to ``chars`` a line, at most ``lines`` lines; the rest becomes "…"."""
    wrapped = textwrap.wrap(str(label), chars, break_long_words=True) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: chars - 1] + "…"
    return "\n".join(wrapped)


def _figure(width: float = WIDTH, height: float = 4.2) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _plot(name: str, title: str, caption: str, fig: Figure) -> Plot:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # runs the constrained layout: positions below are final
    boxes = tuple((round(ax.get_position().x0, 4), round(ax.get_position().width, 4)) for ax in fig.axes if ax.axison)
    return Plot(name, title, caption, buf.getvalue(), boxes)


def _empty(name: str, title: str, why: str) -> Plot:
    fig = _figure(WIDTH, 1.8)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"{title}\n\n{textwrap.fill(f'no data: {why}', 80)}", ha="center", va="center", fontsize=10.5, color="#555555")
    return _plot(name, title, f"No data: {why}.", fig)


def _mem_label(frame: pd.DataFrame) -> str:
    kinds = sorted({k for v in frame.get("memory_kind", pd.Series(dtype=object)).dropna() for k in str(v).split("/") if k})
    return f"peak memory (GB, {' / '.join(kinds)})" if kinds else "peak memory (GB)"


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7.5, frameon=False)


def _panels(n: int, height: float) -> tuple[Figure, list]:
    fig = _figure(WIDTH, 0.5 + height * n)
    return fig, list(np.atleast_1d(fig.subplots(n, 1, squeeze=False)[:, 0]))


def memory_vs_rank(runs: pd.DataFrame) -> Plot:
    name, title = "memory_vs_rank", "Peak memory vs adapter rank"
    ok = runs[(runs["status"] == "ok") & runs["budget_gb"].isna()].dropna(subset=["peak_memory_gb"])
    ranked = ok[ok["r"].notna()]
    if ranked.empty:
        return _empty(name, title, "no successful run with an adapter rank measured peak memory")
    # The group (task, training budget) with the most ranks measured: memory also depends on the
    # batch and sequence length, which a group holds fixed.
    group = ranked.groupby("group")["r"].nunique().sort_values(ascending=False, kind="stable").index[0]
    ok, ranked = ok[ok["group"] == group], ranked[ranked["group"] == group]
    fig = _figure()
    ax = fig.add_subplot()
    for method, grp in ranked.groupby("method", sort=True):
        med = grp.groupby("r")["peak_memory_gb"].median().sort_index()
        ax.plot(med.index.astype(float), med.values, "o-", color=color(method), label=method)
    for method, grp in ok[ok["r"].isna()].groupby("method", sort=True):
        ax.axhline(grp["peak_memory_gb"].median(), ls="--", color=color(method), label=f"{method} (no adapter)")
    if ranked["r"].max() / max(ranked["r"].min(), 1) >= 8:
        ax.set_xscale("log", base=2)
    ranks = sorted(ranked["r"].unique())
    ax.set_xticks([float(r) for r in ranks], [str(int(r)) for r in ranks])
    ax.set_xlabel("adapter rank r")
    ax.set_ylabel(_mem_label(ok))
    ax.set_title(short(f"{title} — {group}", 80, 1), fontsize=10)
    ax.grid(alpha=0.3)
    _legend(ax)
    return _plot(name, title, f"Median over repeats, in {group} (the group with the most ranks); "
                 "dashed lines are methods without a rank.", fig)


def throughput(runs: pd.DataFrame, group_order: list[str]) -> Plot:
    name, title = "throughput", "Throughput per configuration"
    ok = runs[(runs["status"] == "ok") & runs["tokens_per_s"].notna()]
    if ok.empty:
        return _empty(name, title, "no successful run measured tokens/s")
    stats = ok.groupby(["group", "label"]).agg(method=("method", "first"), tps=("tokens_per_s", "median"),
                                               lo=("tokens_per_s", "min"), hi=("tokens_per_s", "max"), mfu=("mfu", "median"),
                                               conc=("concurrency", "max")).reset_index()
    rows = []  # (label, stats row or None for a group heading)
    for group in [g for g in group_order if g in set(stats["group"])]:
        rows.append((group, None))
        rows += [(lab, s) for lab, s in stats[stats["group"] == group].sort_values("tps", ascending=False)
                 .set_index("label").iterrows()]
    fig = _figure(WIDTH, 1.2 + 0.24 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    for yi, (lab, s) in zip(y, rows):
        if s is None:
            continue
        shared = pd.notna(s["conc"]) and s["conc"] > 1
        ax.barh(yi, s["tps"], xerr=[[s["tps"] - s["lo"]], [s["hi"] - s["tps"]]], color=color(s["method"]), capsize=2,
                hatch="///" if shared else None, edgecolor="white" if shared else None, height=0.7)
        mfu = f" · MFU {100 * s['mfu']:.2f}%" if pd.notna(s["mfu"]) else ""
        ax.annotate(f"{s['tps']:.0f}{mfu}{' †' if shared else ''}", (s["hi"], yi), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)
    ax.set_yticks(y, [short(lab) for lab, _ in rows], fontsize=8)
    for tick, (_, s) in zip(ax.get_yticklabels(), rows):
        if s is None:
            tick.set_fontweight("bold")
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(0, float(stats["hi"].max()) * 1.3)  # room for the value beside the longest bar
    ax.set_xlabel("training tokens/s (median; whiskers min–max over repeats)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    return _plot(name, title, "Steady-state training throughput (warm-up steps excluded), one bar per configuration under "
                 "its comparable group (bold: task · training budget); MFU beside each bar. † hatched: measured while other "
                 "points shared the machine, not comparable with sequential runs.", fig)


def _scatter_panel(ax, pts: pd.DataFrame, x: str, y: str, xerr: str | None, yerr: str | None, name_all: bool,
                   front: pd.Series | None = None) -> None:
    for method, grp in pts.groupby("method", sort=True):
        ax.errorbar(grp[x], grp[y], xerr=grp[xerr] if xerr else None, yerr=grp[yerr] if yerr else None, fmt="o", ms=5,
                    color=color(method), label=method, elinewidth=0.8, capsize=2, zorder=3)
    named = pts if name_all else pts[front] if front is not None else pts.iloc[:0]
    for _, row in named.iterrows():
        ax.annotate(short(row["label"], 24, 1), (row[x], row[y]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    if front is not None and front.any():  # circles only: the set is over more metrics than these two axes
        on = pts[front]
        ax.scatter(on[x], on[y], s=120, facecolors="none", edgecolors="#333333", zorder=4, label="Pareto set")
    ax.grid(alpha=0.3)
    _legend(ax)


def score_vs_forgetting(points: pd.DataFrame, probes: pd.DataFrame) -> Plot:
    name, title = "score_vs_forgetting", "Task score vs forgetting, per probe"
    if probes is None or probes.empty:
        return _empty(name, title, "no run has forgetting probes (eval.probes)")
    pts = points.dropna(subset=["task_score"]).drop(columns=["collapsed", "n"], errors="ignore").merge(probes, on="point")
    if pts.empty:
        return _empty(name, title, "no run has both a task score and forgetting probes")
    keys = list(pts.groupby(["group", "probe"]).groups)[:MAX_PANELS]
    fig, axes = _panels(len(keys), 3.0)
    for ax, (group, probe) in zip(axes, keys):
        p = pts[(pts["group"] == group) & (pts["probe"] == probe)].copy()
        calm = p[~p["collapsed"]]
        span = max(float((calm["drop"].abs() + calm["se"]).max()) if len(calm) else 0.0, 1e-9)
        far = p["drop"] > 10 * span  # off the scale of the others: drawn at the edge, value written
        edge = 1.15 * span
        p["x"] = p["drop"].where(~far, edge)
        p["xe"] = p["se"].where(~far, 0.0)
        _scatter_panel(ax, p, "x", "task_score", "xe", "task_score_stderr", len(p) <= ANNOTATE_MAX)
        for _, row in p[far].iterrows():
            ax.annotate(f"→ {row['drop']:+.3g} off scale", (edge, row["task_score"]), xytext=(-4, -12), textcoords="offset points",
                        fontsize=7, ha="right", color="#C00000")
        sig = p[p["significant"]]
        ax.scatter(sig["x"], sig["task_score"], s=110, facecolors="none", edgecolors="#C00000", lw=1.2, zorder=4,
                   label="significant drop" if len(sig) else None)
        ax.axvline(0, color="#333333", lw=0.8)
        ax.set_xlim(min(-0.15 * span, float((p["x"] - p["xe"]).min()) - 0.05 * span), 1.3 * span if far.any() else None)
        unit = p["unit"].iloc[0]
        ax.set_xlabel(f"{probe}: drop in {unit} (right = forgot; ± stderr)", fontsize=8.5)
        ax.set_ylabel("task score ± stderr", fontsize=8.5)
        ax.set_title(short(group, 80, 1), fontsize=9)
        _legend(ax)
    left = len(pts.groupby(["group", "probe"])) - len(keys)
    return _plot(name, title, "One point per configuration (median over repeats) and probe, in the probe's own unit; "
                 "red circles: a drop beyond 2 stderr. Points far off the others' scale sit at the right edge with their "
                 f"value written.{f' {left} more panel(s) not drawn.' if left > 0 else ''}", fig)


def memory_vs_score(points: pd.DataFrame, pareto: dict) -> Plot:
    name, title = "memory_vs_score", "Peak memory vs task score, per group"
    pts = points[points["n_ok"] > 0].dropna(subset=["task_score", "peak_memory_gb"])
    groups = [g for g, n in pts.groupby("group").size().sort_values(ascending=False, kind="stable").items() if n >= 2]
    if not groups:
        return _empty(name, title, "no group (task · training budget) has two configurations with a task score and a peak memory")
    shown = groups[:MAX_PANELS]
    fig, axes = _panels(len(shown), 3.0)
    for ax, group in zip(axes, shown):
        p = pts[pts["group"] == group]
        front = p.index.isin(pareto.get(group, []))
        _scatter_panel(ax, p, "peak_memory_gb", "task_score", None, "task_score_stderr", len(p) <= ANNOTATE_MAX,
                       pd.Series(front, index=p.index))
        ax.set_xlabel(_mem_label(p) + " — lower is better", fontsize=8.5)
        ax.set_ylabel("task score ± stderr", fontsize=8.5)
        ax.set_title(short(group, 80, 1), fontsize=9)
    left = len(groups) - len(shown)
    return _plot(name, title, "One point per configuration (median over repeats), one panel per task and training budget; "
                 "circled: the group's Pareto set (task score ↑, memory ↓, throughput ↑, probes dropped ↓)."
                 f"{f' {left} smaller group(s) not drawn.' if left else ''}", fig)


BOUNDARY_AXES = (("batch_size", "batch size"), ("max_seq_len", "max sequence length (tokens)"), ("r", "adapter rank r"))


def oom_boundary(runs: pd.DataFrame) -> Plot:
    name, title = "oom_boundary", "OOM boundary under a memory budget"
    budgeted = runs[runs["budget_gb"].notna()]
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
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _legend(ax)
    return _plot(name, title, f"Runs with a budget: measured peak of the runs that fit, and an X where the run went out of "
                 f"memory; the boundary lies between the last circle and the first X along {label}.", fig)


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
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _legend(ax)
    err = (pts["peak_memory_gb"] / pts["estimate_gb"] - 1).abs().median()
    return _plot(name, title, f"Each successful run; points above the diagonal used more than estimated. "
                 f"Median |error| {100 * err:.0f}% over {len(pts)} runs.", fig)


def learning_curves(curves: pd.DataFrame, reach: dict) -> Plot:
    name, title = "learning_curves", "Learning curves: task score vs training examples"
    if curves.empty:
        return _empty(name, title, "no runs differ only in task.n_train (sweep=data_scaling)")
    keys = list(curves.groupby(["model", "task"]).groups)[:MAX_PANELS]
    fig, axes = _panels(len(keys), 3.2)
    for ax, (model, task) in zip(axes, keys):
        c = curves[(curves["model"] == model) & (curves["task"] == task)]
        for label, line in c.groupby("label", sort=True):
            col = color(line["method"].iloc[0])
            ax.errorbar(line["n_train"], line["score"], yerr=line["se"], fmt="o-", color=col, capsize=2, label=short(label, 24, 1))
            n90 = reach.get((model, task, label))
            if n90 is not None and math.isfinite(n90):
                ax.axvline(n90, color=col, ls=":", lw=1)
        ax.set_xscale("log", base=2)
        sizes = sorted(c["n_train"].unique())
        ax.set_xticks(sizes, [f"{int(n)}" for n in sizes])
        ax.set_xlabel("training examples (task.n_train)", fontsize=8.5)
        ax.set_ylabel("task score ± stderr", fontsize=8.5)
        ax.set_title(f"{task} · {model}", fontsize=9)
        ax.grid(alpha=0.3)
        _legend(ax)
    return _plot(name, title, "Mean task score over repeats at each training-set size (fixed epochs), ± stderr; dotted "
                 "lines: the size at which each configuration first reaches 90% of its best score.", fig)
