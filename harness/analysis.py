"""Run records as tidy tables: labels, comparable groups, forgetting per probe, aggregation, Pareto.

Used by ``harness report``, ``harness regress`` and the plots; nothing here draws or prints. What
the report claims from these tables (best score and its ties, fastest, least forgetting) is
``harness.claims``.

Comparable groups. A claim ("best task score", a Pareto set) compares only runs on the same model,
task and *training budget*: optimizer steps × examples per step (``batch_size × grad_accum ×
world_size``), or, for epoch-based runs (``train.max_steps ≤ 0``), epochs × ``task.n_train``.

Labels. A configuration is named by its method plus only the settings that tell it apart from the
other configurations on display, in a short canonical form (``lora r=16``, ``full lr=1e-3``): keys
are named in ``KEYS`` order, each one that takes two values among the runs of one method, so a setting
that differs only *between* methods (LoRA's dropout vs full's) never lengthens a label, and two
settings changed together (a learning rate and an optimizer) are both named.

Forgetting (record field ``metrics.forgetting.<probe>``, ``delta = base − tuned``, see
``harness.probes``) is reported per probe, in the probe's own unit, oriented so that a positive
``drop`` is the worse direction:

    accuracy-like (higher is better, values in [0, 1]):  drop = (base − tuned) × 100  accuracy points
    perplexity (lower is better):                        drop = ln(tuned / base)      Δ log-perplexity
                                                         se   = √((se_b/base)² + (se_t/tuned)²)  (delta method)
    any other metric:                                    drop = the change in its own unit

    significant = drop > Z × se, Z = ``forgetting.SIGNIFICANCE_Z`` (2: 97.7% one-sided)
    collapsed   = significant, and the probe lost half of it: accuracy at most half the base's,
                  or perplexity at least doubled (drop ≥ ln 2)

Drops in different units are never averaged. The one cross-probe figure is ``forgot_share``: the
share of a run's probes with a significant drop (0 = no probe dropped beyond its own noise).
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from advisor.facts import HIGHER_IS_BETTER as UP
from harness.label_fit import build as build_labels
from harness.forgetting import SIGNIFICANCE_Z

REGRESS_FILE = "regress.json"


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    higher_is_better: bool
    fmt: str = ".3g"
    scale: float = 1.0  # shown value = stored value × scale (MFU is stored as a fraction, shown in %)

    def show(self, value) -> str:
        if value is None or pd.isna(value):
            return "–"
        return format(float(value) * self.scale, self.fmt)


# Every metric the report and `harness regress` compare; its direction is shared with the advisor (advisor/facts.py).
METRICS = {
    "peak_memory_gb": Metric("peak memory", "GB", UP["peak_memory_gb"], ".2f"),
    "tokens_per_s": Metric("throughput", "tokens/s", UP["tokens_per_s"], ".1f"),
    "mfu": Metric("MFU", "%", UP["mfu"], ".2f", 100.0),
    "task_score": Metric("task score", "", UP["task_score"], ".3f"),
    # regress: one probe's drop in the record's own metric (positive = forgot)
    "forgetting": Metric("forgetting", "drop in the probe's metric", UP["forgetting"], ".3f"),
    "forgot_share": Metric("probes with a significant drop", "share", UP["forgot_share"], ".0%"),
    "train_loss_last": Metric("final train loss", "", UP["train_loss_last"], ".3f"),
    "wall_s": Metric("wall time", "s", UP["wall_s"], ".0f"),
}
# Config fields that never distinguish one configuration from another.
NOT_IDENTITY = ("config.repeat", "config.results_dir", "config.train.save", "config.train.log_every", "config.model.arch.")
FOLDED = ("config.train.lr", "config.method.default_lr")  # named once, as the ``lr`` that applied
REPEAT_AXES = ("config.seed",)  # runs that differ only in their seed are repeats of one configuration
# Canonical short names, in label order; any other identity field is named by its path (``eval.batch_size``).
KEYS = (("model", "config.model.name"), ("model_path", "config.model.name_or_path"), ("task", "config.task.name"),
        ("inner", "config.method.inner"), ("r", "config.method.r"), ("alpha", "config.method.alpha"),
        ("targets", "config.method.targets"), ("quant", "config.method.quantize"), ("lr", "lr"),
        ("n_train", "config.task.n_train"), ("steps", "config.train.max_steps"), ("epochs", "config.train.epochs"),
        ("bs", "config.train.batch_size"), ("accum", "config.train.grad_accum"), ("gpus", "config.method.world_size"),
        ("seq", "config.train.max_seq_len"), ("opt", "config.train.optimizer"), ("dtype", "config.train.dtype"),
        ("budget", "config.budget_gb"), ("eval_n", "config.eval.limit"), ("probes", "config.eval.probes"),
        ("probe_n", "config.eval.probe_limit"))


# ---------------------------------------------------------------- columns


def load_frame(results_dir: Path) -> pd.DataFrame:
    """Every record below ``results_dir``, one flattened row each (``metrics.tokens_per_s``, …), via
    ``harness.results.load``; ``harness regress``'s own ``regress.json`` is not a record to warn about."""
    from harness.results import load

    def warn(msg: str) -> None:
        if REGRESS_FILE not in msg:
            print(f"harness: warning: {msg}", file=sys.stderr)

    return load(results_dir, warn=warn)


def col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series([None] * len(frame), index=frame.index, dtype=object)


def num(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(col(frame, name), errors="coerce")


def is_null(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def text(v) -> str:
    """A config value as a person writes it: ``16``, ``1e-3``, ``general_mc+general_ppl``, ``null``."""
    if is_null(v):
        return "null"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        if 0 < abs(v) < 1e-2:  # 0.0002 → 2e-4, 5e-05 → 5e-5
            mantissa, exp = f"{v:.3e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "+".join(text(x) for x in v) if v else "none"
    return str(v)


def natural(values: pd.Series) -> pd.Series:
    """A sort key that orders ``2 epochs × 64 examples`` before ``2 epochs × 256 examples``."""
    return values.map(lambda v: tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(v))))


def identity_cols(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("config.") and not c.startswith(NOT_IDENTITY)]


def config_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run, every identity setting under its canonical short name (None where unset), ``KEYS``
    first; ``lr`` is the learning rate that applied (``train.lr``, else the method's default)."""
    named = dict((c, k) for k, c in KEYS)
    out = {}
    lr = col(frame, "config.train.lr")
    out["lr"] = lr.where(lr.notna(), col(frame, "config.method.default_lr"))
    for c in identity_cols(frame):
        if c == "config.method.name" or c in FOLDED or c in REPEAT_AXES:
            continue
        out[named.get(c) or c.removeprefix("config.")] = col(frame, c)
    order = [k for k, _ in KEYS if k in out] + sorted(k for k in out if k not in dict(KEYS))
    return pd.DataFrame({k: out[k].map(lambda v: None if is_null(v) else text(v)) for k in order}, index=frame.index)


def labels(keys: pd.DataFrame, method: pd.Series) -> pd.Series:
    """The method plus only the keys that split configurations on display (see the module docstring)."""
    cells = method.map(text).astype(str)
    chosen = [k for k in keys.columns if (keys[k].map(lambda v: "\0" if is_null(v) else str(v)).groupby(cells).nunique() > 1).any()]
    columns = {k: [None if is_null(v) else str(v) for v in keys[k]] for k in chosen}
    out = build_labels([text(method[i]) for i in keys.index], columns, {"budget": "{}GB"})  # ≤ 40 characters (label_fit)
    return pd.Series(out, index=keys.index, dtype=object)


def full_config(keys: pd.DataFrame, method: pd.Series) -> pd.Series:
    """Every identity setting of each run, ``key=value`` joined by ``, `` (the hover / table text)."""
    return pd.Series([", ".join([f"method={text(method[i])}"] + [f"{k}={v}" for k, v in keys.loc[i].items() if not is_null(v)])
                      for i in keys.index], index=keys.index, dtype=object)


def budget(frame: pd.DataFrame) -> pd.Series:
    """Training budget per run: ``12 steps × 8 examples`` or ``2 epochs × 64 examples``."""
    steps, epochs, n_train = num(frame, "config.train.max_steps"), num(frame, "config.train.epochs"), num(frame, "config.task.n_train")
    per_step = (num(frame, "config.train.batch_size").fillna(1) * num(frame, "config.train.grad_accum").fillna(1)
                * num(frame, "config.method.world_size").fillna(1))
    out = []
    for i in frame.index:
        if pd.notna(steps[i]) and steps[i] > 0:
            out.append(f"{int(steps[i])} steps × {int(per_step[i])} examples")
        elif pd.notna(epochs[i]):
            data = f"{int(n_train[i])} examples" if pd.notna(n_train[i]) else "the train file"
            out.append(f"{epochs[i]:g} epoch{'s' if epochs[i] != 1 else ''} × {data}")
        else:
            out.append("budget not recorded")
    return pd.Series(out, index=frame.index, dtype=object)


def sweep_of(frame: pd.DataFrame) -> pd.Series:
    """The sweep's name, else the record's folder below the results directory, else ``(top level)``."""
    folder = col(frame, "path").map(lambda p: str(p).rsplit("/", 1)[0] if isinstance(p, str) and "/" in p else None)
    name = col(frame, "sweep")
    # isinstance, not truthiness: map() turns a None among strings into NaN, which is truthy
    return pd.Series([name[i] if isinstance(name[i], str) else (f"folder {folder[i]}" if isinstance(folder[i], str) else "(top level)")
                      for i in frame.index], index=frame.index, dtype=object)


# ---------------------------------------------------------------- forgetting


def judge(kind: str, base: float, drop: float, se: float) -> tuple[bool, bool]:
    """(significant, collapsed) for one probe's drop in its own unit (module docstring)."""
    significant = bool(np.isfinite(drop) and np.isfinite(se) and drop > SIGNIFICANCE_Z * se)
    if kind == "acc":
        collapsed = significant and drop >= 50 * base  # points: tuned ≤ base / 2
    elif kind == "ppl":
        collapsed = significant and drop >= math.log(2)
    else:
        collapsed = False
    return significant, collapsed


def probe_drops(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, probe): run (the frame's index), probe, kind (acc | ppl | other), unit,
    base, tuned, drop, se, significant, collapsed."""
    probes = sorted({c.split(".")[2] for c in frame.columns if c.startswith("metrics.forgetting.") and c.endswith(".delta")})
    rows = []
    for p in probes:
        f = lambda k: num(frame, f"metrics.forgetting.{p}.{k}")  # noqa: E731
        base, tuned, delta, se = f("base"), f("tuned"), f("delta"), f("stderr")
        se_b, se_t = f("base_stderr"), f("tuned_stderr")
        hib = col(frame, f"metrics.forgetting.{p}.higher_is_better").map(lambda v: True if is_null(v) else bool(v))
        metric = col(frame, f"metrics.forgetting.{p}.metric").map(lambda v: "" if is_null(v) else str(v))
        for i in frame.index[delta.notna()]:
            b, t = base[i], tuned[i]
            if pd.isna(t) and pd.notna(b):
                t = b - delta[i]
            if hib[i] and 0 <= b <= 1 and 0 <= t <= 1:
                kind, unit, drop, s = "acc", "accuracy points", 100 * (b - t), 100 * se[i]
            elif not hib[i] and ("perplexity" in metric[i] or metric[i].endswith("ppl")):
                kind, unit = "ppl", "Δ log-perplexity"
                drop = math.log(t / b) if b > 0 and t > 0 else float("nan")
                s = (math.hypot(se_b[i] / b, se_t[i] / t) if pd.notna(se_b[i]) and pd.notna(se_t[i])
                     else se[i] / min(b, t))  # older records: the combined stderr over the smaller side
            else:
                kind, unit = "other", metric[i] or "score"
                drop, s = (delta[i] if hib[i] else -delta[i]), se[i]
            sig, coll = judge(kind, b, drop, s)
            rows.append({"run": i, "probe": p, "kind": kind, "unit": unit, "base": b, "tuned": t, "drop": drop, "se": s,
                         "significant": sig, "collapsed": coll})
    cols = ["run", "probe", "kind", "unit", "base", "tuned", "drop", "se", "significant", "collapsed"]
    return pd.DataFrame(rows, columns=cols)


def show_drop(row) -> str:
    """``70.5% → 26.8%: −43.8 pts ± 6.0`` / ``ppl 44.1 → 4.51e+07 (×1.02e+06, Δlog +13.82 ± 0.15)``."""
    if row["kind"] == "acc":
        return f"{100 * row['base']:.1f}% → {100 * row['tuned']:.1f}%: {0.0 - row['drop']:+.1f} pts ± {row['se']:.1f}"
    if row["kind"] == "ppl":
        return (f"ppl {row['base']:.3g} → {row['tuned']:.3g} (×{math.exp(row['drop']):.3g}, "
                f"Δlog {row['drop']:+.3f} ± {row['se']:.3f})")
    return f"{row['base']:.3g} → {row['tuned']:.3g} ({row['unit']}; worse by {row['drop']:+.3g} ± {row['se']:.3g})"


# ---------------------------------------------------------------- runs and configurations


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run with the short columns the report, regress and plots use. ``group`` is the
    comparable group (model when several, task, training budget), ``label`` the configuration's name
    within it, ``point`` a name unique over the whole frame (the label, plus the group when there
    are several)."""
    runs = pd.DataFrame({
        "run_id": col(frame, "run_id"), "sweep": sweep_of(frame), "status": col(frame, "status"),
        "method": col(frame, "method").map(text), "model": col(frame, "model"), "task": col(frame, "task"),
        "r": num(frame, "config.method.r"), "batch_size": num(frame, "config.train.batch_size"),
        "max_seq_len": num(frame, "config.train.max_seq_len"), "budget_gb": num(frame, "config.budget_gb"),
        "n_train": num(frame, "config.task.n_train"), "memory_kind": col(frame, "metrics.memory_kind"),
        "task_score_stderr": num(frame, "metrics.task_score_stderr"), "task_eval_n": num(frame, "metrics.task_eval_n"),
        "task_score_base": num(frame, "metrics.task_score_base"),
        "concurrency": num(frame, "execution.concurrency"),  # > 1: other points shared the machine
        "error_type": col(frame, "error.type"), "error_message": col(frame, "error.message"),
    }, index=frame.index)
    for key in METRICS:
        if key not in ("forgetting", "forgot_share"):
            runs[key] = num(frame, f"metrics.{key}")
    runs["budget"] = budget(frame)
    several_models = runs["model"].nunique() > 1
    runs["group"] = [(f"{runs.at[i, 'model']} · " if several_models else "") + f"{text(runs.at[i, 'task'])} · {runs.at[i, 'budget']}"
                     for i in runs.index]
    keys = config_keys(frame)
    runs["label"] = ""
    for _, idx in runs.groupby("group", sort=False).groups.items():
        runs.loc[idx, "label"] = labels(keys.loc[idx], runs.loc[idx, "method"])
    runs["point"] = runs["label"] + (" · " + runs["group"] if runs["group"].nunique() > 1 else "")
    runs["config"] = full_config(keys, runs["method"])
    drops = probe_drops(frame)
    per_run = drops.groupby("run")
    runs["n_probes"] = per_run.size().reindex(runs.index).fillna(0).astype(int)
    runs["n_sig"] = per_run["significant"].sum().reindex(runs.index).fillna(0).astype(int)
    runs["forgot_share"] = (runs["n_sig"] / runs["n_probes"]).where(runs["n_probes"] > 0)
    runs["forgetting"] = runs["forgot_share"]
    return runs


def pareto_mask(points: pd.DataFrame, metrics: list[str]) -> pd.Series:
    """True where no other row is at least as good on every metric and better on one (METRICS directions)."""
    signed = pd.DataFrame({m: points[m] if METRICS[m].higher_is_better else -points[m] for m in metrics})
    values = signed.to_numpy(dtype=float)
    mask = []
    for i, row in enumerate(values):
        dominated = any((other >= row).all() and (other > row).any() for j, other in enumerate(values) if j != i)
        mask.append(not dominated)
    return pd.Series(mask, index=points.index, dtype=bool)


def aggregate_probes(runs: pd.DataFrame, drops: pd.DataFrame) -> pd.DataFrame:
    """Per (point, probe): medians over the successful repeats, then judged again (``judge``)."""
    ok = runs.index[runs["status"] == "ok"]
    d = drops[drops["run"].isin(ok)].assign(point=lambda x: runs.loc[x["run"], "point"].to_numpy())
    if d.empty:
        return d.assign(n=0)
    agg = d.groupby(["point", "probe"], sort=False).agg(kind=("kind", "first"), unit=("unit", "first"), base=("base", "median"),
                                                       tuned=("tuned", "median"), drop=("drop", "median"), se=("se", "median"),
                                                       n=("run", "size")).reset_index()
    flags = [judge(r.kind, r.base, r.drop, r.se) for r in agg.itertuples()]
    agg["significant"], agg["collapsed"] = [f[0] for f in flags], [f[1] for f in flags]
    return agg


def aggregate(runs: pd.DataFrame, probes: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration (``point``): medians over its successful repeats, status counts over
    all, and its forgetting summary from ``aggregate_probes`` (share of probes with a significant
    drop, collapsed probes)."""
    rows = []
    for point, grp in runs.groupby("point", sort=False):
        ok = grp[grp["status"] == "ok"]
        counts = grp["status"].value_counts()
        first = grp.iloc[0]
        row = {"point": point, "label": first["label"], "group": first["group"], "sweep": first["sweep"],
               "method": first["method"], "task": first["task"], "r": first["r"], "batch_size": first["batch_size"],
               "n_train": first["n_train"], "config": first["config"], "n": len(grp), "n_ok": len(ok),
               "status": ", ".join(f"{n} {s}" for s, n in counts.items()), "run_ids": ", ".join(map(str, grp["run_id"])),
               "task_score_stderr": ok["task_score_stderr"].median(), "task_eval_n": ok["task_eval_n"].median(),
               "task_score_base": ok["task_score_base"].median(),
               "concurrency": grp["concurrency"].max(), "memory_kind": "/".join(sorted(set(grp["memory_kind"].dropna().map(str))))}
        for key in METRICS:
            if key not in ("forgetting", "forgot_share"):
                row[key] = (ok if len(ok) else grp)[key].median()
        rows.append(row)
    points = pd.DataFrame(rows)
    if points.empty:
        return points
    probes = probes if probes is not None else pd.DataFrame(columns=["point", "significant", "collapsed", "probe"])
    mine = probes[probes["point"].isin(points["point"])] if len(probes) else probes
    by = mine.groupby("point")
    points["n_probes"] = points["point"].map(by.size()).fillna(0).astype(int)
    points["n_sig"] = points["point"].map(by["significant"].sum()).fillna(0).astype(int)
    points["forgot_share"] = (points["n_sig"] / points["n_probes"]).where(points["n_probes"] > 0)
    points["forgetting"] = points["forgot_share"]
    collapsed = mine[mine["collapsed"].astype(bool)].groupby("point")["probe"].agg(", ".join) if len(mine) else pd.Series(dtype=object)
    points["collapsed"] = points["point"].map(collapsed).fillna("")
    points = points.assign(_g=natural(points["group"]), _l=natural(points["label"]))
    return points.sort_values(["_g", "method", "_l"]).drop(columns=["_g", "_l"]).reset_index(drop=True)
