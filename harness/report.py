"""``harness report [RESULTS_DIR] --out DIR``: which configuration wins where, as one HTML page and Markdown.

``RESULTS_DIR`` is read recursively (``harness report results`` reads every sweep's folder). The page
opens with the answer, one row per comparable group (task · training budget, see
``harness.analysis``): best task score and its statistical ties, fastest, lowest memory, and which
configurations forgot nothing measurable. Then the Pareto sets, the regression verdict when there is
one, forgetting per probe, learning curves (when runs differ only in ``task.n_train``), what was run,
a table per sweep, the plots, the failed runs and every configuration's full settings.

Configurations are named by what differs among those on display (``lora r=16``); in the HTML each
name links to its full settings and shows them on hover, and ``report.md`` ends with the same table.
``report.html`` is self-contained (plots are base64 PNGs, CSS inline, no script) and every string
that came from a record or config is ``html.escape``d; in ``report.md`` such strings are escaped
for Markdown (no raw HTML, links or emphasis can come from a record).

A regression result (``harness regress``, which writes ``results/regress/<time>.json``) is shown when
``--regress FILE`` is given, or when the results directory holds a ``regress.json`` (where older
versions wrote it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness import analysis, charts, curves
from harness.claims import GroupClaims, claims as group_claims
from harness.render import Cfg, Report, md_escape, to_html, to_markdown, write  # noqa: F401  (re-exported)
from harness.analysis import METRICS, REGRESS_FILE, Metric, load_frame, pareto_mask, tidy  # noqa: F401  (re-exported)
from harness.analysis import col as _col, identity_cols as _identity_cols, num as _num, text as _text  # noqa: F401  (regress)
from harness.errors import UserError, run_cli

Z = analysis.SIGNIFICANCE_Z


# ---------------------------------------------------------------- advisor


def sweep_about(name: str) -> str:
    """The preset's own ``sweep.about``, if the preset still ships under that name."""
    import yaml

    from harness.paths import CONFIG_DIR

    path = CONFIG_DIR / "sweep" / f"{name}.yaml"
    try:
        about = (yaml.safe_load(path.read_text()) or {}).get("sweep", {}).get("about")
    except (OSError, yaml.YAMLError, AttributeError):
        return ""
    return str(about or "")


def advisor_estimates(frame: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.Series, str | None]:
    """The advisor's peak-memory estimate (GB) per successful run, of the same kind as the measured
    one (CPU: resident set above the pre-load baseline; CUDA: allocated), and why none if missing.
    The record is read by the advisor itself (``advisor.validate.memory.estimate_record``), as ``advisor validate`` does."""
    try:
        from advisor.validate.memory import estimate_record
    except ImportError as e:
        return pd.Series(float("nan"), index=runs.index), f"the advisor's memory model is not available ({e})"
    out, last_error = {}, None
    for i in runs.index[runs["status"] == "ok"]:
        row = frame.loc[i]
        record = {"run_id": row.get("run_id"), "status": "ok", "config": _unflatten(row, "config."),
                  "metrics": _unflatten(row, "metrics."), "hardware": _unflatten(row, "hardware."),
                  "model_arch": _unflatten(row, "model_arch.") or None}  # record schema 2 keeps the measured arch apart
        try:
            gb, why = estimate_record(record)
        except Exception as e:  # noqa: BLE001 — one config the advisor cannot size must not sink the report
            gb, why = None, f"{type(e).__name__}: {e}"
        if gb is None:
            last_error = why
            continue
        out[i] = gb
    series = pd.Series(out, index=runs.index, dtype=float)
    return series, None if out else f"the advisor could not size these runs ({last_error})"


def _unflatten(row: pd.Series, prefix: str) -> dict:
    nested: dict = {}
    for col, value in row.items():
        if not col.startswith(prefix):
            continue
        if isinstance(value, np.generic):  # pandas' numpy scalars → the JSON types the record had
            value = value.item()
        if isinstance(value, float) and pd.isna(value):
            value = None
        node = nested
        *parents, leaf = col[len(prefix):].split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


# ---------------------------------------------------------------- content


def _cfgs(points: pd.DataFrame) -> dict[int, Cfg]:
    out = {}
    for i, p in points.iterrows():
        flag = f"⚠ collapsed {p['collapsed']}" if p["collapsed"] else (f"⚠ {p['n_sig']}/{p['n_probes']} probes dropped"
                                                                          if p["n_sig"] else "")
        out[i] = Cfg(p["label"], p["config"], f"cfg-{i}", flag)
    return out


def _names(idx: list[int], cfg: dict[int, Cfg], most: int = 3) -> list:
    parts: list = []
    for k, i in enumerate(idx[:most]):
        parts += ([", "] if k else []) + [cfg[i]]
    return parts + ([f" and {len(idx) - most} more"] if len(idx) > most else [])


def _score(p) -> str:
    se = f" ± {p['task_score_stderr']:.3f}" if pd.notna(p["task_score_stderr"]) else ""
    n = f" (n={int(p['task_eval_n'])})" if pd.notna(p["task_eval_n"]) else ""
    return f"{p['task_score']:.3f}{se}{n}"


def _shared(p) -> str:
    return " †" if pd.notna(p["concurrency"]) and p["concurrency"] > 1 else ""


def _headline(claims: list[GroupClaims], cfg: dict[int, Cfg]) -> list:
    rows, singles, fronts = [], [], []
    for c in claims:
        g = c.points
        if len(g) == 1:
            p = g.iloc[0]
            singles += [[f"{c.group}: ", cfg[g.index[0]]] + ([f" scores {_score(p)}" + (f", base model {p['task_score_base']:.3f}" if pd.notna(p["task_score_base"]) else "")]
                                                       if pd.notna(p["task_score"]) else [])]
            continue
        best = ([cfg[c.best_score], f" {_score(g.loc[c.best_score])}"] + ([f"; tied within {Z:g} stderr: "] + _names(c.score_ties, cfg)
                if c.score_ties else ["; above every other beyond noise"]) if c.best_score is not None else "not measured")
        fast = [cfg[c.fastest], f" {g.at[c.fastest, 'tokens_per_s']:.1f} tokens/s{_shared(g.loc[c.fastest])}"] if c.fastest is not None else "–"
        mem = [cfg[c.lowest_memory], f" {g.at[c.lowest_memory, 'peak_memory_gb']:.2f} GB"] if c.lowest_memory is not None else "–"
        if g["memory_kind"].nunique() > 1 and c.lowest_memory is not None:
            mem.append(f" (memory kinds differ: {', '.join(sorted(g['memory_kind'].unique()))})")
        if c.no_drop or c.flagged:
            forget = (["no significant drop: "] + _names(c.no_drop, cfg, 4) if c.no_drop else ["none without a significant drop"])
            forget += (["; flagged: "] + _names(c.flagged, cfg, 4)) if c.flagged else []
        else:
            forget = "not measured (no eval.probes)"
        rows.append([c.group + f" ({len(g)} configs)", best, fast, mem, forget])
        if c.front:
            arrows = ", ".join(f"{METRICS[k].label} {'↑' if METRICS[k].higher_is_better else '↓'}" for k in c.front_metrics)
            fronts.append([f"{c.group} ({arrows}): "] + _names(c.front, cfg, 12))
    blocks = [("p", f"Each row compares only configurations on the same task and training budget (steps × examples per step, "
                    f"or epochs × training examples). Scores are medians over successful repeats ± the evaluation's stderr; "
                    f"'tied' means within {Z:g} combined stderr of the best. Least forgetting goes only to configurations with "
                    f"no probe dropping by more than {Z:g} stderr (see Forgetting per probe); a name ending in ⚠ lost on a probe. "
                    "Hover or click a name for its full settings.")]
    if rows:
        blocks.append(("table", ["task · training budget", "best task score", "fastest", "lowest peak memory",
                                 "least forgetting (probes)"], rows, []))
    if fronts:
        blocks += [("p", "Pareto sets, per group (no configuration outside a set is at least as good on all its metrics at once):"),
                   ("list", fronts)]
    if singles:
        blocks += [("p", "Groups with a single configuration (nothing to compare it with):"), ("list", singles)]
    return blocks


def _forgetting_blocks(points: pd.DataFrame, probes: pd.DataFrame, cfg: dict[int, Cfg]) -> list:
    if probes.empty:
        return []
    blocks = [("h2", "Forgetting per probe"),
              ("p", "Each probe is scored on the base and the tuned model, in its own unit: accuracy points for multiple "
                    "choice, Δ log-perplexity (with the ratio of perplexities) for perplexity; never averaged across "
                    f"probes. ⚠ significant: worse by more than {Z:g} stderr. ⚠ collapsed: significant, and accuracy halved "
                    "or perplexity doubled. The one cross-probe figure is the number of probes with a significant drop.")]
    names = sorted(probes["probe"].unique())
    pos = {p: i for i, p in points["point"].items()}
    for group, g in points[points["n_probes"] > 0].groupby("group", sort=False):
        rows, classes = [], []
        for i, p in g.iterrows():
            mine = probes[probes["point"] == p["point"]].set_index("probe")
            cells = [analysis.show_drop(mine.loc[n]) + (" ⚠ collapsed" if mine.at[n, "collapsed"] else " ⚠ significant"
                     if mine.at[n, "significant"] else "") if n in mine.index else "–" for n in names]
            rows.append([cfg[pos[p["point"]]]] + cells + [f"{p['n_sig']} of {p['n_probes']}"])
            classes.append("fail" if p["collapsed"] else "oom" if p["n_sig"] else "ok")
        blocks += [("p", f"{group}:"), ("table", ["configuration"] + names + ["probes with a significant drop"], rows, classes)]
    return blocks


def _curve_blocks(learning: pd.DataFrame, reach: dict) -> list:
    if learning.empty:
        return []
    rows = []
    for (model, task, label), c in learning.groupby(["model", "task", "label"], sort=False):
        best = c.loc[c["score"].idxmax()]
        n90 = reach[(model, task, label)]
        rows.append([f"{task} · {model}", label, ", ".join(f"{int(r.n_train)}: {r.score:.3f} ± {r.se:.3f}" for r in c.itertuples()),
                     f"{best['score']:.3f} at {int(best['n_train'])}", "–" if pd.isna(n90) else f"{int(n90)}"])
    return [("h2", "Learning curves"),
            ("p", "Task score against the number of training examples (task.n_train, fixed epochs), mean over repeats ± stderr, "
                  "for configurations that differ only in that number; the last column is the smallest size reaching 90% of "
                  "the configuration's best score."),
            ("table", ["task · model", "configuration", "examples: score ± stderr", "best", "90% of best at"], rows, [])]


def _point_table(points: pd.DataFrame, cfg: dict[int, Cfg]) -> tuple[list[str], list[list], list[str]]:
    headers = ["task · training budget", "configuration", "runs", "peak memory (GB)", "tokens/s", "MFU (%)",
               "task score ± stderr", "probes dropped", "wall (s)"]
    rows, classes = [], []
    for i, p in points.iterrows():
        peak = METRICS["peak_memory_gb"].show(p["peak_memory_gb"])
        if p["n_ok"] == 0 and "oom" in p["status"] and peak != "–":
            peak = "≥ " + peak  # the peak reached when the budget stopped it
        score = _score(p) if pd.notna(p["task_score"]) else "–"
        dropped = f"{p['n_sig']} of {p['n_probes']}" if p["n_probes"] else "–"
        rows.append([p["group"], cfg[i], p["status"], peak, METRICS["tokens_per_s"].show(p["tokens_per_s"]) + _shared(p),
                     METRICS["mfu"].show(p["mfu"]), score, dropped, METRICS["wall_s"].show(p["wall_s"])])
        classes.append("ok" if p["n_ok"] == p["n"] else ("oom" if "oom" in p["status"] else "fail"))
    return headers, rows, classes


def _distinct(frame: pd.DataFrame, name: str) -> str:
    vals = sorted({_text(v) for v in _col(frame, name) if _text(v) != "null"})
    return ", ".join(vals) if vals else "–"


def _regress_blocks(result: dict) -> list:
    s = result.get("summary", {})
    verdict = s.get("verdict", "?")
    blocks = [("h2", "Regression check"),
              ("p", f"Verdict: {verdict.upper()} — {s.get('regression', 0)} regression(s), {s.get('improvement', 0)} "
                    f"improvement(s), {s.get('unchanged', 0)} unchanged; candidate {result.get('candidate', '?')} vs "
                    f"baseline {result.get('baseline', '?')}.")]
    warns = [f"{d['field']}: {' / '.join(d['baseline'])} → {' / '.join(d['candidate'])}"
             for d in result.get("provenance", []) if d.get("severity") == "warning"]
    if warns:
        blocks.append(("p", "Provenance differs (results may not be comparable):"))
        blocks.append(("list", warns))
    headers = ["configuration", "metric", "baseline median [min–max]", "candidate median [min–max]", "ratio [95% CI] / Δ", "verdict"]
    rows, classes = [], []
    for r in result.get("rows", []):
        rows.append([r["point"], r["metric"], r.get("baseline_text", ""), r.get("candidate_text", ""), r.get("change_text", ""),
                     r["verdict"] + (f" ({r['note']})" if r.get("note") else "")])
        classes.append({"regression": "fail", "improvement": "ok"}.get(r["verdict"], ""))
    blocks.append(("table", headers, rows, classes))
    return blocks


def build(results_dir: Path, regress: dict | None = None, out_dir: Path | None = None) -> tuple[Report, list[charts.Plot]]:
    frame = load_frame(results_dir)
    if frame.empty:
        raise UserError(f"no run records in or below {results_dir} (expected <run_id>.json files written by `harness` or a sweep)")
    runs = tidy(frame)
    runs["estimate_gb"], why_no_estimate = advisor_estimates(frame, runs)
    probes = analysis.aggregate_probes(runs, analysis.probe_drops(frame))
    points = analysis.aggregate(runs, probes)
    cfg = _cfgs(points)
    claims = group_claims(points)
    learning = curves.learning_curves(runs, frame)
    reach = {k: curves.reach(c) for k, c in learning.groupby(["model", "task", "label"])} if len(learning) else {}

    counts = runs["status"].value_counts()
    report = Report(
        title="tunebench report",
        subtitle=f"{len(runs)} run{'s' if len(runs) != 1 else ''} ({', '.join(f'{n} {s}' for s, n in counts.items())}) in "
                 f"{len(points)} configurations and {points['group'].nunique()} comparable groups, from {results_dir} · "
                 f"generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        blocks=[],
    )
    b = report.blocks
    b.append(("h2", "Which configuration wins where"))
    b.extend(_headline(claims, cfg))
    if (runs["concurrency"] > 1).any():
        b.append(("p", "† throughput measured while other points shared the machine (execution.concurrency > 1): "
                       "not comparable with runs measured alone."))
    if regress:
        b.extend(_regress_blocks(regress))
    b.extend(_forgetting_blocks(points, probes, cfg))
    b.extend(_curve_blocks(learning, reach))

    b.extend(_what_was_run(frame, runs))
    b.extend(_sweep_blocks(points, cfg))
    from harness.search.report import search_section  # a study database under results_dir: its Pareto front, trials, importances

    search_blocks, search_figures = search_section(results_dir, out_dir)
    b.extend(search_blocks)
    figures = _figures(runs, points, probes, claims, learning, reach, why_no_estimate)
    b.append(("h2", "Plots"))
    b.extend(("plot", p) for p in figures)
    figures += search_figures  # shown in their section above; written beside report.md like the others
    b.extend(_failed_blocks(runs))
    b.append(("h2", "Configurations"))
    b.append(("p", "Every configuration's full settings; names above show only what differs within a group."))
    b.append(("table", ["task · training budget", "configuration", "runs", "settings"],
              [[p["group"], cfg[i], p["run_ids"], p["config"]] for i, p in points.iterrows()], [], "configs"))
    return report, figures


def _what_was_run(frame, runs) -> list:
    """Sweeps, models, tasks, methods, hardware, packages and commits behind the records."""
    hw = sorted({" · ".join(_text(v) for v in row if _text(v) != "null")
                 for row in frame.reindex(columns=["hardware.device", "hardware.device_name", "hardware.cpu_count",
                                                   "hardware.memory_gb", "hardware.driver"]).itertuples(index=False)})
    pkgs = [f"{c.split('.')[-1]} {_distinct(frame, c)}" for c in sorted(frame.columns) if c.startswith("provenance.packages.")]
    return [("h2", "What was run"), ("list", [
        f"sweeps: {', '.join(sorted(runs['sweep'].unique()))}", f"models: {_distinct(frame, 'model')}",
        f"tasks: {_distinct(frame, 'task')}", f"methods: {_distinct(frame, 'method')}",
        "hardware (device · name · CPUs · RAM GB · driver): " + ("; ".join(hw) or "–"),
        f"python {_distinct(frame, 'provenance.python')}; " + "; ".join(pkgs),
        f"tunebench {_distinct(frame, 'provenance.tunebench_version')} at commit(s) {_distinct(frame, 'provenance.git_commit')}",
        f"memory is measured as: {_distinct(frame, 'metrics.memory_kind')} (cpu_rss_delta = process RSS growth; "
        "cuda_allocated = torch allocator peak)",
    ])]


def _sweep_blocks(points, cfg) -> list:
    """One section per sweep (or folder of runs outside a sweep): what it is for, and its table."""
    b = []
    for sweep in sorted(points["sweep"].unique()):
        sub = points[points["sweep"] == sweep]
        b.append(("h2", f"Sweep: {sweep}" if not sweep.startswith(("folder ", "(")) else f"Runs outside a sweep: {sweep}"))
        about = sweep_about(sweep) if not sweep.startswith(("folder ", "(")) else ""
        if about:
            b.append(("p", f"About: {about} (sweeps/sweep/{sweep}.yaml)"))
        b.append(("table", *_point_table(sub, cfg)))
    return b


def _figures(runs, points, probes, claims, learning, reach, why_no_estimate) -> list:
    group_order = [c.group for c in claims]
    figures = [charts.throughput(runs, group_order), charts.memory_vs_score(points, {c.group: c.front for c in claims}),
               charts.score_vs_forgetting(points, probes), charts.memory_vs_rank(runs), charts.oom_boundary(runs),
               charts.advisor_vs_measured(runs, why_no_estimate)]
    if len(learning):
        figures.insert(3, charts.learning_curves(learning, reach))
    return figures


def _failed_blocks(runs) -> list:
    failed = runs[runs["status"] != "ok"]
    if failed.empty:
        return [("h2", "Failed runs"), ("p", "None: every run finished.")]
    rows = [[r.run_id, r.status, r.point, _text(r.error_type), _text(r.error_message)[:300]] for r in failed.itertuples()]
    return [("h2", "Failed runs"), ("table", ["run", "status", "configuration", "error", "message"], rows,
                                    ["oom" if r[1] == "oom" else "fail" for r in rows])]


def read_regress(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"--regress {path}: not a readable regress result ({e})") from None
    if not isinstance(data, dict) or "rows" not in data:
        raise UserError(f"--regress {path}: not a `harness regress --json` result (no 'rows')")
    return data


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir", nargs="?", default="results/runs", help="directory of run records, read recursively (default: results/runs)")
    parser.add_argument("--out", help="output directory (default: results/reports/<name of RESULTS_DIR>)")
    parser.add_argument("--regress", help=f"a `harness regress` result to show (default: RESULTS_DIR/{REGRESS_FILE} if present)")
    args = parser.parse_args(argv)

    def work() -> int:
        results_dir = Path(args.results_dir)
        if not results_dir.is_dir():
            raise UserError(f"results directory '{results_dir}' does not exist")
        regress_path = Path(args.regress) if args.regress else results_dir / REGRESS_FILE
        regress = read_regress(regress_path) if args.regress or regress_path.exists() else None
        out_dir = Path(args.out) if args.out else Path("results/reports") / results_dir.resolve().name
        report, figures = build(results_dir, regress, out_dir)
        html_path, md_path = write(report, figures, out_dir)
        print(f"wrote {html_path} and {md_path} ({len(figures)} plots in {out_dir / 'plots'})")
        return 0

    return run_cli("harness report", work)
