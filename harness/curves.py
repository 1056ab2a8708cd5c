"""Learning curves: task score against the number of training examples (``sweep=data_scaling``).

Runs that differ only in ``task.n_train`` (and the steps it implies) form a curve; the report shows
each with error bars and the size at which it first reaches 90% of its best score.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.analysis import config_keys, is_null, labels


def learning_curves(runs: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Task score vs training examples, for families of runs that differ only in ``task.n_train``
    (and the steps it implies): one row per (family, n_train) with the mean score over successful
    repeats and its stderr. A family needs 3 sizes, or 2 in a ``data_scaling`` sweep, so that a
    curve is drawn only where the records hold one. Columns: model, task, family, method, n_train,
    score, se, n_runs."""
    keys = config_keys(frame).drop(columns=["n_train", "steps"], errors="ignore")
    ok = runs[(runs["status"] == "ok") & runs["task_score"].notna() & runs["n_train"].notna()]
    if ok.empty:
        return pd.DataFrame(columns=["model", "task", "family", "method", "n_train", "score", "se", "n_runs"])
    fam_key = keys.loc[ok.index].map(lambda v: "\0" if is_null(v) else str(v)).agg("|".join, axis=1) + "|" + ok["method"]
    rows, first = [], {}
    for fam, idx in ok.groupby(fam_key).groups.items():
        f = ok.loc[idx]
        sizes = f["n_train"].nunique()
        if sizes < 3 and not (sizes >= 2 and (f["sweep"] == "data_scaling").any()):
            continue
        first[fam] = idx[0]
        for n, at in f.groupby("n_train"):
            se_eval = at["task_score_stderr"].pow(2).mean() ** 0.5 / math.sqrt(len(at))  # eval noise of the mean
            se_rep = at["task_score"].std(ddof=1) / math.sqrt(len(at)) if len(at) > 1 else 0.0
            rows.append({"model": f["model"].iloc[0], "task": f["task"].iloc[0], "family": fam, "method": f["method"].iloc[0],
                         "n_train": n, "score": at["task_score"].mean(), "se": max(np.nan_to_num(se_eval), np.nan_to_num(se_rep)),
                         "n_runs": len(at)})
    curves = pd.DataFrame(rows, columns=["model", "task", "family", "method", "n_train", "score", "se", "n_runs"])
    curves["label"] = ""
    for _, idx in curves.groupby(["model", "task"]).groups.items():
        fams = list(dict.fromkeys(curves.loc[idx, "family"]))
        heads = [first[f] for f in fams]
        named = dict(zip(fams, labels(keys.loc[heads], ok.loc[heads, "method"])))
        curves.loc[idx, "label"] = curves.loc[idx, "family"].map(named)
    return curves.sort_values(["model", "task", "label", "n_train"]).reset_index(drop=True)


def reach(curve: pd.DataFrame, fraction: float = 0.9) -> float:
    """The smallest training size whose mean score is at least ``fraction`` of the curve's best."""
    best = curve["score"].max()
    hit = curve[curve["score"] >= fraction * best]
    return float(hit["n_train"].min()) if len(hit) and best > 0 else float("nan")
