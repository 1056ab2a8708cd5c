"""Claims over comparable groups: best task score and its statistical ties, fastest, lowest memory,
least forgetting, and the Pareto set — what ``harness report`` states in its headline, one
``GroupClaims`` per group (split from ``harness.analysis``, which builds the tables they read).

A tie: a configuration whose task score is within ``Z`` (``forgetting.SIGNIFICANCE_Z``, 2) combined
stderrs of the best one's, with a floor of one eval example's worth (1/n) where an exact 0 or 1
reports stderr 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis import METRICS, natural, pareto_mask
from harness.forgetting import SIGNIFICANCE_Z


def ties(points: pd.DataFrame, best: int) -> list[int]:
    """Rows whose task score is within Z combined stderrs of row ``best``'s (a floor of one eval
    example's worth, 1/n, where an exact 0 or 1 reports stderr 0)."""
    b = points.loc[best]
    out = []
    for i, p in points.iterrows():
        if i == best or pd.isna(p["task_score"]):
            continue
        floor = 1 / max(b["task_eval_n"], p["task_eval_n"]) if pd.notna(b["task_eval_n"]) and pd.notna(p["task_eval_n"]) else 0.0
        se = max(math.hypot(np.nan_to_num(b["task_score_stderr"]), np.nan_to_num(p["task_score_stderr"])), floor)
        if b["task_score"] - p["task_score"] <= SIGNIFICANCE_Z * se:
            out.append(i)
    return sorted(out, key=lambda i: -points.at[i, "task_score"])


@dataclass
class GroupClaims:
    """What one comparable group's points say: each winner is a row index of ``points``."""
    group: str
    points: pd.DataFrame  # the group's configurations with at least one ok run
    best_score: int | None
    score_ties: list[int]
    fastest: int | None
    lowest_memory: int | None
    no_drop: list[int]  # probes measured, none dropped significantly: the "least forgetting" set
    flagged: list[int]  # a significant drop on some probe
    front: list[int]
    front_metrics: list[str]


def claims(points: pd.DataFrame) -> list[GroupClaims]:
    """Per comparable group, largest first: best score (and its statistical ties), fastest, lowest
    memory, least forgetting (only configurations with no significant probe drop), the Pareto set."""
    out = []
    sizes = points[points["n_ok"] > 0].groupby("group").size()
    for group in sorted(sizes.index, key=lambda g: (-sizes[g], natural(pd.Series([g]))[0])):
        g = points[(points["group"] == group) & (points["n_ok"] > 0)]

        def arg(key):
            vals = g[key].dropna()
            return None if vals.empty else (vals.idxmax() if METRICS[key].higher_is_better else vals.idxmin())

        best = arg("task_score")
        measured = g[g["n_probes"] > 0]
        used = [k for k in ("task_score", "peak_memory_gb", "tokens_per_s", "forgot_share") if g[k].notna().all()]
        front = g[pareto_mask(g, used)].index.tolist() if used and len(g) > 1 else []
        out.append(GroupClaims(group, g, best, ties(g, best) if best is not None else [], arg("tokens_per_s"),
                               arg("peak_memory_gb"), measured.index[measured["n_sig"] == 0].tolist(),
                               measured.index[measured["n_sig"] > 0].tolist(), front, used))
    return out
