"""Forgetting: how much worse the tuned model scores than its base on each probe.

One entry per probe (record field ``metrics.forgetting.<probe>``, built by ``entry``; the whole
field by ``entries``)::

    delta  = base − tuned                 # in the metric's own units, whatever its direction
    drop   = delta if higher_is_better else −delta     # ``drop(entry)``: > 0 = the tuned model is worse
    stderr = sqrt(se_base² + se_tuned²)   # independent-samples error: conservative, since base
                                          # and tuned are scored on the same documents
    significant = drop > 2 · stderr       # worse by more than 2 standard errors

The one convention every reader uses: ``delta`` is stored as measured (base − tuned), and
``drop`` orients it so that **positive = forgot**:

    general_mc  (accuracy, higher is better):   base 0.70, tuned 0.27 → delta +0.43, drop +0.43 (forgot)
    general_ppl (perplexity, lower is better):  base 20,   tuned 25   → delta −5,    drop +5    (forgot)

``harness report`` averages ``drop`` over probes ("forgetting", lower is better; "least forgetting"
is the smallest) and ``harness regress`` compares ``drop`` between baseline and candidate (a larger
drop beyond 2 combined stderrs is a regression). Records written before ``drop`` existed are read
through ``drop(entry)``, which derives it from ``delta`` and ``higher_is_better`` (missing → True).
"""

from __future__ import annotations

import math

SIGNIFICANCE_Z = 2.0  # a drop beyond 2 standard errors is flagged (~95% one-sided: 97.7%)


def entries(base: dict, tuned: dict) -> dict[str, dict]:
    """``metrics.forgetting``: one ``entry`` per probe of ``tuned``, from two ``{probe: Score}``."""
    return {name: entry(base[name], tuned[name]) for name in tuned}


def entry(base, tuned) -> dict:
    """The record entry for one probe from two ``evaluate.Score``s (see the module docstring)."""
    delta = base.mean - tuned.mean
    se = math.sqrt(base.stderr**2 + tuned.stderr**2) if _finite(base.stderr) and _finite(tuned.stderr) else float("nan")
    worse_by = oriented_drop(delta, tuned.higher_is_better)  # > 0: the tuned model is worse
    return {
        "base": base.mean,
        "tuned": tuned.mean,
        "delta": delta,
        "drop": worse_by,
        "stderr": se,
        "significant": bool(_finite(se) and worse_by > SIGNIFICANCE_Z * se),
        "higher_is_better": tuned.higher_is_better,
        "metric": tuned.metric,
        "n": tuned.n,
        "base_stderr": base.stderr,
        "tuned_stderr": tuned.stderr,
        "seconds": tuned.seconds,
        "base_seconds": base.seconds,
    }


def oriented_drop(delta, higher_is_better):
    """``delta = base − tuned`` oriented so that > 0 = forgot. Floats or pandas Series (for a
    Series, ``higher_is_better`` is a Series too); a missing direction counts as higher-is-better."""
    if hasattr(higher_is_better, "where"):  # pandas: per-row direction, NaN/None → True
        hib = higher_is_better.astype(object).where(higher_is_better.notna(), True).astype(bool)
        return delta.where(hib, -delta)
    return delta if higher_is_better is None or bool(higher_is_better) else -delta


def drop(entry: dict) -> float:
    """One record entry's drop (> 0 = forgot), derived from ``delta`` when the entry predates ``drop``."""
    if entry.get("drop") is not None:
        return entry["drop"]
    return oriented_drop(entry["delta"], entry.get("higher_is_better"))


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
