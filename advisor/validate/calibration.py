"""Leave-one-source-out calibration: how wrong the memory model is on a stack it was not tuned on.

Each published row belongs to one source (a stack, a script, a measuring habit). For every source S:
- the allocator's one fitted constant (overhead.FRAG) is re-fitted on the other sources' rows that
  measured reserved memory;
- S's rows are estimated with it, and their errors make S's MAE;
- S's range is [estimate × (1 + low), estimate × (1 + high)] where low/high are the smallest and
  largest relative residuals (measured/estimate − 1) on the *other* sources' rows whose estimated
  peak falls in the same phase, widened by MARGIN; a row is covered when its measurement falls inside.
  The phases differ in kind: an optimizer-step peak is weights + gradients + states, arithmetic
  that is exact to a few %; a backward-start peak is activations and logits, where the stacks differ.
The shipped RANGES are the same extremes over every source (``fit_range``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


MARGIN = 0.01  # one point beyond the most extreme residual seen: the range is closed at its ends


@dataclass(frozen=True)
class SourceScore:
    source: str
    n: int
    mae_pct: float
    bias_pct: float
    covered: int  # rows whose measurement is inside the LOSO range
    low: float  # the widest range applied to this source's rows (relative)
    high: float
    reserved_frac: float  # overhead.FRAG re-fitted without this source
    under_high: int = 0  # rows whose measurement is at or under the LOSO range's high end

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def residual(measured: float, predicted: float) -> float:
    return measured / predicted - 1


def scored(rows) -> list:
    return [r for r in rows if r.error_pct is not None and not r.excluded]


def mape(rows, *, metrics: tuple[str, ...] | None = None) -> float | None:
    """Mean absolute % error of the scored rows (memory or time), optionally of some metrics only."""
    errs = [abs(r.error_pct) for r in scored(rows) if metrics is None or r.metric in metrics]
    return sum(errs) / len(errs) if errs else None


def best_frac(rows_by_frac: dict[float, list]) -> float:
    """The FRAG minimising the MAE of the rows that measured reserved memory (ties: the smaller). nvidia-smi
    readings are not used: beyond reserved they hold the context and whatever the stack loaded, which
    FRAG does not describe (they are checked against the verdict's high end instead)."""
    return min(rows_by_frac, key=lambda f: (round(mape(rows_by_frac[f], metrics=("reserved",)) or 0.0, 9), f))


PHASES = ("backward start", "optimizer step")
MIN_ROWS = 4  # fewer rows of a phase than this: its range falls back to every phase's residuals


def extremes(rows, phase: str | None = None) -> tuple[float, float]:
    same = [r for r in rows if r.phase == phase] if phase else rows
    res = [residual(r.measured_gb, r.predicted_gb) for r in (same if len(same) >= MIN_ROWS else rows)]
    return min(res) - MARGIN, max(res) + MARGIN


def loso(rows_by_frac: dict[float, list], device_by_frac: dict[float, list] | None = None) -> tuple[list, list[SourceScore]]:
    """Rows annotated with their LOSO prediction and range, and one score per source. ``device_by_frac``:
    nvidia-smi readings of the same runs, used to fit FRAG only (never scored)."""
    any_rows = next(iter(rows_by_frac.values()))
    sources = list(dict.fromkeys(r.source for r in scored(any_rows)))
    out_rows, scores = [], []
    for src in sources:
        others = {f: [r for r in scored(rs) if r.source != src] for f, rs in rows_by_frac.items()}
        fit_on = {f: others[f] + [r for r in (device_by_frac or {}).get(f, []) if r.source != src] for f in others}
        frac = best_frac(fit_on)
        mine = [r for r in scored(rows_by_frac[frac]) if r.source == src]
        covered = under = 0
        low = high = 0.0
        for r in mine:
            lo, hi = extremes(others[frac], r.phase)
            low, high = min(low, lo), max(high, hi)
            lo_gb, hi_gb = r.predicted_gb * (1 + lo), r.predicted_gb * (1 + hi)
            inside = lo_gb <= r.measured_gb <= hi_gb
            covered += inside
            under += r.measured_gb <= hi_gb
            out_rows.append(replace(r, range_gb=(lo_gb, hi_gb), in_range=inside))
        errs = [r.error_pct for r in mine]
        scores.append(SourceScore(src, len(mine), sum(map(abs, errs)) / len(errs), sum(errs) / len(errs),
                                  covered, low, high, frac, under))  # fmt: skip
    return out_rows, scores


def fit_range(rows) -> dict[str, tuple[float, float]]:
    """The shipped ranges by peak phase: the extreme residuals over every scored row, widened by MARGIN."""
    out = {}
    for phase in PHASES:
        low, high = extremes(scored(rows), phase)
        out[phase] = (math.floor(low * 100) / 100, math.ceil(high * 100) / 100)  # rounded outwards
    return out
