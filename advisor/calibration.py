"""Leave-one-source-out calibration: how wrong the memory model is on a stack it was not tuned on.

Each published row belongs to one source (a stack, a script, a measuring habit). For every source S:
- the one fitted constant (RESERVED_FRAC, reserved rows only) is re-fitted on the other sources;
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
# reserved/allocated overhead, 1-15%: reserved is never below allocated, and the caching allocator's
# rounding (blocks to 2 MiB multiples, small tensors carved from 2 MiB / 20 MiB segments) costs ~1% at least.
FRAC_GRID = [x / 100 for x in range(1, 16)]


@dataclass(frozen=True)
class SourceScore:
    source: str
    n: int
    mae_pct: float
    bias_pct: float
    covered: int  # rows whose measurement is inside the LOSO range
    low: float  # the widest range applied to this source's rows (relative)
    high: float
    reserved_frac: float  # RESERVED_FRAC re-fitted without this source

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def residual(measured: float, predicted: float) -> float:
    return measured / predicted - 1


def scored(rows) -> list:
    return [r for r in rows if r.error_pct is not None and not r.excluded]


def best_frac(rows_by_frac: dict[float, list]) -> float:
    """The RESERVED_FRAC minimising the MAE of the reserved-metric rows (ties: the smaller)."""
    def mae(rs):
        rs = [r for r in rs if r.metric == "reserved"]
        return sum(abs(r.error_pct) for r in rs) / len(rs) if rs else 0.0

    return min(rows_by_frac, key=lambda f: (round(mae(rows_by_frac[f]), 9), f))


PHASES = ("backward start", "optimizer step")
MIN_ROWS = 4  # fewer rows of a phase than this: its range falls back to every phase's residuals


def extremes(rows, phase: str | None = None) -> tuple[float, float]:
    same = [r for r in rows if r.phase == phase] if phase else rows
    res = [residual(r.measured_gb, r.predicted_gb) for r in (same if len(same) >= MIN_ROWS else rows)]
    return min(res) - MARGIN, max(res) + MARGIN


def loso(rows_by_frac: dict[float, list]) -> tuple[list, list[SourceScore]]:
    """Rows annotated with their LOSO prediction and range, and one score per source."""
    any_rows = next(iter(rows_by_frac.values()))
    sources = list(dict.fromkeys(r.source for r in scored(any_rows)))
    out_rows, scores = [], []
    for src in sources:
        others = {f: [r for r in scored(rs) if r.source != src] for f, rs in rows_by_frac.items()}
        frac = best_frac(others)
        mine = [r for r in scored(rows_by_frac[frac]) if r.source == src]
        covered = 0
        low = high = 0.0
        for r in mine:
            lo, hi = extremes(others[frac], r.phase)
            low, high = min(low, lo), max(high, hi)
            lo_gb, hi_gb = r.predicted_gb * (1 + lo), r.predicted_gb * (1 + hi)
            inside = lo_gb <= r.measured_gb <= hi_gb
            covered += inside
            out_rows.append(replace(r, range_gb=(lo_gb, hi_gb), in_range=inside))
        errs = [r.error_pct for r in mine]
        scores.append(SourceScore(src, len(mine), sum(map(abs, errs)) / len(errs), sum(errs) / len(errs),
                                  covered, low, high, frac))  # fmt: skip
    return out_rows, scores


def fit_range(rows) -> dict[str, tuple[float, float]]:
    """The shipped ranges by peak phase: the extreme residuals over every scored row, widened by MARGIN."""
    out = {}
    for phase in PHASES:
        low, high = extremes(scored(rows), phase)
        out[phase] = (math.floor(low * 100) / 100, math.ceil(high * 100) / 100)  # rounded outwards
    return out
