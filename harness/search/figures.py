"""The Search section's plots: the front (task score against each other objective, ± stderr)
and every objective over the trials, in the order the study asked for them."""

from __future__ import annotations

import io
import math
import re

from matplotlib.figure import Figure

from harness.charts import DPI, WIDTH, Plot, color
from harness.search.space import value_of
from harness.search.trials import StudyView, TrialRow


def _safe(name: str) -> str:
    """A study name as a file name (the PNG beside report.md): nothing that could leave plots/."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:80]


def _png(name: str, title: str, caption: str, fig: Figure) -> Plot:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return Plot(name, title, caption, buf.getvalue())


def _value(t: TrialRow, objective: str, i: int) -> tuple[float | None, float | None]:
    metrics = t.record.get("metrics") or {}
    v, se = value_of(objective, metrics) if metrics else (None, None)
    if v is None and t.values and math.isfinite(t.values[i]):
        v = t.values[i]
    return v, se


def _method(t: TrialRow) -> str:
    return str(t.params.get("method") or (t.record.get("config") or {}).get("method", {}).get("name") or "?")


def front_plot(sv: StudyView) -> Plot:
    """The first objective (y) against each other one (x): every feasible trial, the front ringed."""
    name, title = f"search_front_{_safe(sv.name)}", f"Search {sv.name}: {sv.objectives[0]} against the other objectives"
    others = list(range(1, len(sv.objectives))) or [0]
    fig = Figure(figsize=(WIDTH, 3.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(others), squeeze=False)[0]
    feasible = [t for t in sv.trials if t.feasible]
    for ax, j in zip(axes, others):
        for t in feasible:
            (y, ye), (x, xe) = _value(t, sv.objectives[0], 0), _value(t, sv.objectives[j], j)
            if x is None or y is None:
                continue
            ax.errorbar(x, y, xerr=xe or None, yerr=ye or None, fmt="o", ms=5, color=color(_method(t)), alpha=0.8, elinewidth=0.8)
            if t.front:
                ax.plot(x, y, "o", ms=11, mfc="none", mec="#222222", mew=1.2)
                ax.annotate(str(t.number), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7.5)
        ax.set_xlabel(f"{sv.objectives[j]} ({'higher' if sv.directions[j] == 'maximize' else 'lower'} is better)", fontsize=8.5)
        ax.set_ylabel(sv.objectives[0], fontsize=8.5)
        ax.tick_params(labelsize=7.5)
    for m in sorted({_method(t) for t in feasible}):
        axes[0].plot([], [], "o", color=color(m), label=m)
    if feasible:
        axes[0].legend(fontsize=7.5, frameon=False)
    caption = (f"{len(feasible)} feasible trials, coloured by method; ringed and numbered: the Pareto front over all "
               f"{len(sv.objectives)} objectives. Bars: ± one stderr where the record has one.")
    return _png(name, title, caption, fig)


def timeline_plot(sv: StudyView) -> Plot:
    """Each objective against the trial number: infeasible trials as crosses at the panel's edge."""
    name, title = f"search_timeline_{_safe(sv.name)}", f"Search {sv.name}: objectives over the trials"
    n = len(sv.objectives)
    fig = Figure(figsize=(WIDTH, 1.9 * n + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(n, 1, squeeze=False, sharex=True)[:, 0]
    for i, (ax, o) in enumerate(zip(axes, sv.objectives)):
        pts = [(t, *_value(t, o, i)) for t in sorted(sv.trials, key=lambda t: t.number)]
        good = [(t, v, se) for t, v, se in pts if t.feasible and v is not None]
        for t, v, se in good:
            ax.errorbar(t.number, v, yerr=se or None, fmt="o", ms=4.5, color=color(_method(t)), elinewidth=0.8)
        if good:
            best = max if sv.directions[i] == "maximize" else min
            run, line = None, []
            for t, v, _ in good:
                run = v if run is None else best(run, v)
                line.append((t.number, run))
            ax.step([a for a, _ in line], [b for _, b in line], where="post", color="#555555", lw=1, label="best so far")
            low = min(v for _, v, _ in good)
            for t in sv.trials:
                if t.state == "complete" and not t.feasible:
                    ax.plot(t.number, low, "x", color="#b00000", ms=6)
        ax.set_ylabel(o, fontsize=8)
        ax.tick_params(labelsize=7.5)
    axes[-1].set_xlabel("trial (order asked)", fontsize=8.5)
    caption = ("Each objective per trial, coloured by method, with the best value so far; red crosses: infeasible "
               "trials (out of memory or time), drawn at the bottom of the panel.")
    return _png(name, title, caption, fig)
