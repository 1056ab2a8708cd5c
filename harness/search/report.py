"""The report's "Search" section (``harness report DIR`` when DIR holds a study database).

Per study: what was searched and how it went; the Pareto front (each objective ± its stderr from
the record, every probe's drop, a link to the record); every trial in the order it was asked
(objectives over time, as a table and a plot); and each parameter's importance per objective,
from Optuna's own evaluator. Every string reaches the page through ``harness.render``, which
escapes it (HTML) or backslash-escapes it (Markdown).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from harness.render import Link
from harness.search.space import describe, value_of
from harness.search.trials import StudyView, TrialRow, importances, load_studies

ARROW = {"maximize": "↑", "minimize": "↓"}


def short_params(params: dict) -> str:
    """'lora r=16 lr=4.2e-04 max_steps=24': the method bare, other keys by their last part."""
    parts = []
    for k, v in params.items():
        name = k.split(".")[-1]
        text = f"{v:.2g}" if isinstance(v, float) else str(v)
        parts.append(text if name == "method" else f"{name}={text}")
    return " ".join(parts)


def fmt(value: float | None, se: float | None = None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = f"{value:.{digits}g}"
    return text + (f" ± {se:.2g}" if se is not None and math.isfinite(se) else "")


def objective_cells(t: TrialRow, objectives: list[str]) -> list[str]:
    metrics = t.record.get("metrics") or {}
    out = []
    for i, o in enumerate(objectives):
        value, se = value_of(o, metrics) if metrics else (None, None)
        if value is None and t.values:  # no record here: the value the study was told
            value = t.values[i]
        out.append(fmt(value, se))
    return out


def probe_cells(t: TrialRow, probes: list[str]) -> list[str]:
    forgetting = (t.record.get("metrics") or {}).get("forgetting") or {}
    out = []
    for p in probes:
        e = forgetting.get(p)
        if not e:
            out.append("–")
            continue
        from harness.forgetting import drop

        out.append(f"{e['base']:.3g} → {e['tuned']:.3g} ({fmt(drop(e), e.get('stderr'))}{', significant' if e.get('significant') else ''})")
    return out


def record_link(t: TrialRow, out_dir: Path | None) -> str | Link:
    if t.record_path is None:
        return t.run_id or "no record"
    href = os.path.relpath(t.record_path.resolve(), out_dir.resolve()) if out_dir else t.record_path.resolve().as_uri()
    return Link(t.run_id, href)


def _probes(sv: StudyView) -> list[str]:
    return sorted({p for t in sv.trials for p in ((t.record.get("metrics") or {}).get("forgetting") or {})})


def study_blocks(sv: StudyView, out_dir: Path | None) -> list:
    counts: dict[str, int] = {}
    for t in sv.trials:
        key = "infeasible" if t.state == "complete" and not t.feasible else t.state
        counts[key] = counts.get(key, 0) + 1
    heads = [f"{o} {ARROW.get(d, '')}" for o, d in zip(sv.objectives, sv.directions)]
    probes = _probes(sv)
    b: list = [("h2", f"Search: {sv.name}")]
    b.append(("p", f"{len(sv.trials)} trials ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}) in {sv.storage}; "
                   f"objectives: {', '.join(heads)}. "
                   + "; ".join(f"{o}: {describe(o)}" for o in sv.objectives)
                   + ". Infeasible: out of memory (budget_gb), past timeout_s, or a recorded peak above budget_gb."))
    front = sorted(sv.front, key=lambda t: t.number)
    b.append(("p", f"Pareto front: {len(front)} of the feasible trials, none of which another beats on every objective "
                   "(± one stderr from the record; forgetting per probe: base → tuned, drop > 0 = worse)."))
    headers = ["trial", "parameters", *heads, *[f"{p} (drop)" for p in probes], "record"]
    rows = [[str(t.number), short_params(t.params), *objective_cells(t, sv.objectives), *probe_cells(t, probes),
             record_link(t, out_dir)] for t in front]
    b.append(("table", headers, rows, ["ok"] * len(rows)))
    b.append(("p", "Every trial in the order the study asked for it: how the objectives moved over the search "
                   "(the plot below draws the same)."))
    rows, classes = [], []
    for t in sorted(sv.trials, key=lambda t: t.number):
        state = "infeasible" if t.state == "complete" and not t.feasible else t.state
        rows.append([str(t.number), short_params(t.params), f"{state}{' (' + t.status + ')' if t.status and t.status != 'ok' else ''}",
                     *objective_cells(t, sv.objectives), "front" if t.front else "", record_link(t, out_dir)])
        classes.append("oom" if state == "infeasible" else "fail" if state == "fail" else "ok" if t.front else "")
    b.append(("table", ["trial", "parameters", "state", *heads, "front", "record"], rows, classes))
    imps, why = importances(sv)
    b.append(("p", "Parameter importances per objective, summing to 1 (optuna.importance.get_param_importances with "
                   "Optuna's default evaluator: how much each parameter decides reaching the objective's good values; "
                   f"{len([t for t in sv.trials if t.feasible])} feasible trials, so read them as a hint)." + (f" {why}." if why else "")))
    if imps:
        params = sorted({p for d in imps.values() for p in d})
        b.append(("table", ["objective", *params], [[o, *[f"{d.get(p, float('nan')):.2f}" for p in params]] for o, d in imps.items()], []))
    return b


def search_section(results_dir: Path, out_dir: Path | None = None) -> tuple[list, list]:
    """(blocks, plots) for every study under ``results_dir``; ([], []) when there is none."""
    views, notes = load_studies(results_dir)
    if not views and not notes:
        return [], []
    from harness.search.figures import front_plot, timeline_plot

    blocks, figures = [], []
    for note in notes:
        blocks.append(("p", f"Study database skipped: {note}"))
    for sv in views:
        blocks.extend(study_blocks(sv, out_dir))
        figures.extend([front_plot(sv), timeline_plot(sv)])
        blocks.extend(("plot", p) for p in figures[-2:])
    return blocks, figures
