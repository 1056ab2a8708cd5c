"""``harness regress``: on this machine, driver or library version — is it faster, does it still fit,
did quality change?

    harness regress --baseline results/baselines/cpu-2core            # run the suite here, compare
    harness regress --baseline DIR --candidate DIR2 [--json]           # compare two result dirs
    harness regress --results results/baselines/my-gpu                 # run the suite, no comparison: a new baseline

The suite is ``sweeps/sweep/regression.yaml`` (each method on the default model, fixed steps, k = 3
repeats), run by the sweep runner into a fresh ``results/regress/<UTC time>`` (or ``--results``).
Extra ``key=value`` arguments go to the sweep (e.g. ``method.r=8``); a baseline and a candidate
must use the same settings, which the provenance diff checks.

Per configuration and metric: baseline and candidate medians with [min–max] over repeats, a ratio
or difference, and a verdict (regression | improvement | unchanged), by the rule in ``RULES``:

- ``ratio_ci`` (throughput, MFU): 95% Welch t-interval of the difference of mean log values,
  exponentiated: a CI of the (geometric-mean) ratio candidate/baseline. Logs because speed noise is
  relative and ratios multiply; t, not normal, because k = 3 (t(0.975, df=4) = 2.78, not 1.96).
  Regression only when the whole CI lies below 1 − tolerance (0.90), improvement when wholly above
  1 / 0.90: a new GPU or a busy shared CPU moves throughput by a few percent without anything
  being wrong.
- ``ratio_band`` (peak memory ±5%, final loss ±10%): the ratio of medians outside the band, with
  the CI excluding 1 so that noise alone cannot trigger it. Memory is near-deterministic on the
  same software, so 5% is a real change ("does it still fit").
- ``equivalence`` (task score, forgetting per probe): unchanged when |Δ| ≤ 2 × √(se_b² + se_c²),
  the stderrs the evaluation itself reports (binomial over the eval examples): repeats of one seed
  score the same, so the eval's own sampling error is the noise that matters. The task score's
  combined stderr is at least 1/n (n eval examples): a score of 0 or 1 reports stderr 0.
  Forgetting is compared as each probe's *drop* (``harness/forgetting.py``: base − tuned, negated for
  perplexity; > 0 = forgot): a candidate whose drop grew beyond the bound is a regression.
- ``status``: a configuration that ran in every baseline repeat but failed (oom/error/timeout) in a
  candidate repeat is a regression ("it no longer fits").

Exit code 1 if any verdict is a regression, else 0 (2 for bad input). The result is written as
JSON to ``--out`` (default ``results/regress/<UTC time>.json`` below the working directory, beside the
suite's own records: never into the candidate's or the baseline's folder, which may be committed;
``harness report <candidate> --regress <file>`` shows it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.atomic import write_json
from harness.errors import UserError, run_cli
from harness.forgetting import oriented_drop
from harness.analysis import METRICS, col as _col, identity_cols as _identity_cols, load_frame, num as _num, text as _text, tidy

SUITE = "regression"  # sweeps/sweep/regression.yaml
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Rule:
    metric: str  # column of the tidy run table (harness.report.METRICS gives label, unit, direction)
    test: str  # ratio_ci | ratio_band | equivalence
    tolerance: float  # ratio tests: fraction (0.10 = 10%); equivalence: multiple of the combined stderr
    why: str


RULES = (
    Rule("tokens_per_s", "ratio_ci", 0.10, "hardware and shared machines move speed by a few %: regression only if the whole 95% CI of the ratio is below 0.90"),
    Rule("mfu", "ratio_ci", 0.10, "as throughput; MFU also divides by the peak FLOP/s measured or looked up for the device"),
    Rule("peak_memory_gb", "ratio_band", 0.05, "near-deterministic on the same software: median ratio outside ±5% with a CI excluding 1"),
    Rule("train_loss_last", "ratio_band", 0.10, "same seed and data: a >10% change in the loss after N steps means the training math changed"),
    Rule("task_score", "equivalence", 2.0, "unchanged while |Δ| ≤ 2 × combined stderr of the two evaluations"),
)
FORGETTING_RULE = Rule("forgetting", "equivalence", 2.0, "per probe: unchanged while |Δ drop| ≤ 2 × combined probe stderr")
# Provenance fields that are expected to differ between a baseline and a candidate: shown, not warned.
INFO_ONLY = ("provenance.git_commit", "provenance.git_dirty", "provenance.tunebench_version")


# ---------------------------------------------------------------- statistics


def log_ratio_ci(base: np.ndarray, cand: np.ndarray, level: float = CONFIDENCE) -> tuple[float, tuple[float, float] | None]:
    """Geometric-mean ratio cand/base and its Welch t-interval (None with fewer than 2 values a side)."""
    from scipy import stats

    lb, lc = np.log(base), np.log(cand)
    diff = float(lc.mean() - lb.mean())
    if len(lb) < 2 or len(lc) < 2:
        return math.exp(diff), None
    vb, vc = lb.var(ddof=1) / len(lb), lc.var(ddof=1) / len(lc)
    se = math.sqrt(vb + vc)
    if se == 0:
        return math.exp(diff), (math.exp(diff), math.exp(diff))
    df = (vb + vc) ** 2 / (vb**2 / (len(lb) - 1) + vc**2 / (len(lc) - 1))  # Welch–Satterthwaite
    t = float(stats.t.ppf(0.5 + level / 2, df))
    return math.exp(diff), (math.exp(diff - t * se), math.exp(diff + t * se))


def _summary(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": float(np.median(values)), "min": float(values.min()), "max": float(values.max()), "n": int(len(values))}


def _show(s: dict, fmt) -> str:
    if not s["n"]:
        return "–"
    spread = f" [{fmt(s['min'])}–{fmt(s['max'])}]" if s["n"] > 1 else ""
    return f"{fmt(s['median'])}{spread}"


def judge_ratio(rule: Rule, higher_is_better: bool, base: np.ndarray, cand: np.ndarray) -> dict:
    ratio, ci = log_ratio_ci(base, cand)
    if rule.test == "ratio_band":
        ratio = float(np.median(cand) / np.median(base))  # the band is on the ratio of medians
    tol = rule.tolerance
    # Orient so that "good" > 1: a throughput ratio as is, a memory ratio inverted.
    good, good_ci = (ratio, ci) if higher_is_better else (1 / ratio, ci and (1 / ci[1], 1 / ci[0]))
    note = "" if ci else "fewer than 2 repeats a side: no CI, point estimate only"
    if rule.test == "ratio_ci":
        lo, hi = good_ci or (good, good)
        verdict = "regression" if hi < 1 - tol else "improvement" if lo > 1 / (1 - tol) else "unchanged"
    else:
        lo, hi = good_ci or (good, good)  # without a CI the band alone decides
        if good < 1 / (1 + tol) and hi < 1:
            verdict = "regression"
        elif good > 1 / (1 - tol) and lo > 1:
            verdict = "improvement"
        else:
            verdict = "unchanged"
    ci_text = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    return {"ratio": ratio, "ci": list(ci) if ci else None, "verdict": verdict, "note": note,
            "change_text": f"×{ratio:.3f}{ci_text}"}


def judge_equivalence(rule: Rule, higher_is_better: bool, base: np.ndarray, cand: np.ndarray,
                      se_base: float, se_cand: float, floor: float = 0.0) -> dict:
    delta = float(np.median(cand) - np.median(base))
    # A score of 0 or 1 reports stderr 0; the floor (one eval example's worth) keeps a single
    # flipped example from counting as a change.
    se = max(math.sqrt(np.nan_to_num(se_base) ** 2 + np.nan_to_num(se_cand) ** 2), floor)
    bound = rule.tolerance * se
    better = delta if higher_is_better else -delta
    verdict = "unchanged" if abs(delta) <= bound + 1e-12 else ("improvement" if better > 0 else "regression")
    return {"delta": delta, "bound": bound, "verdict": verdict, "note": "" if se > 0 else "stderr 0: any change counts",
            "change_text": f"Δ {delta:+.3f} (bound ±{bound:.3f})"}


# ---------------------------------------------------------------- comparison


def _probe_table(frame: pd.DataFrame) -> dict[str, tuple[pd.Series, pd.Series]]:
    """probe → (drop, stderr) per run; drop > 0 = forgot (``harness.forgetting.oriented_drop``), lower is better."""
    probes = sorted({c.split(".")[2] for c in frame.columns if c.startswith("metrics.forgetting.") and c.endswith(".delta")})
    out = {}
    for p in probes:
        delta = _num(frame, f"metrics.forgetting.{p}.delta")  # base − tuned (harness/forgetting.py)
        hib = frame.get(f"metrics.forgetting.{p}.higher_is_better", pd.Series(True, index=frame.index))
        out[p] = (oriented_drop(delta, hib), _num(frame, f"metrics.forgetting.{p}.stderr"))
    return out


def _status_row(point: str, b: pd.DataFrame, c: pd.DataFrame) -> dict:
    def text(g):
        return ", ".join(f"{n} {s}" for s, n in g["status"].value_counts().items()) or "not run"

    b_ok, c_ok = (b["status"] == "ok").all(), (c["status"] == "ok").all()
    if b.empty or c.empty:
        verdict, note = "not compared", f"only in the {'candidate' if b.empty else 'baseline'}"
    elif b_ok and not c_ok:
        verdict, note = "regression", "ran in the baseline, fails now"
    elif c_ok and not b_ok:
        verdict, note = "improvement", "failed in the baseline, runs now"
    else:
        verdict, note = "unchanged", ""
    return {"point": point, "metric": "status", "unit": "", "test": "status", "verdict": verdict, "note": note,
            "baseline_text": text(b), "candidate_text": text(c), "change_text": ""}


def _data_changed(b: pd.DataFrame, c: pd.DataFrame) -> str:
    """Which examples differ between the two sides ('' when the same or unknown: records before the
    fingerprints carry none). Same settings can give other data: a new generator version, an edited file."""
    changed = []
    for kind in ("test", "train"):
        col = f"metrics.{kind}_fingerprint"
        bv = set(b[col].dropna()) if col in b else set()
        cv = set(c[col].dropna()) if col in c else set()
        if bv and cv and bv != cv:
            changed.append(f"the {kind} examples")
    return " and ".join(changed)


def compare(base_frame: pd.DataFrame, cand_frame: pd.DataFrame) -> list[dict]:
    both = pd.concat([base_frame.assign(_side="baseline"), cand_frame.assign(_side="candidate")], ignore_index=True)
    # A config field only one side's schema has (records only ever gain fields) must not split every
    # configuration in two; the provenance diff still lists it.
    one_sided = [c for c in both.columns if c.startswith("config.")
                 and (c not in base_frame or base_frame[c].isna().all()) != (c not in cand_frame or cand_frame[c].isna().all())]
    both = both.drop(columns=one_sided)
    runs = tidy(both)  # labels from both sides at once, so one configuration has one name
    runs["_side"] = both["_side"]
    probes = _probe_table(both)
    n_eval = _num(both, "metrics.task_eval_n").groupby(runs["point"]).median().dropna().to_dict()
    rows = []
    for point in sorted(runs["point"].unique()):
        sel = runs["point"] == point
        b_all, c_all = runs[sel & (runs["_side"] == "baseline")], runs[sel & (runs["_side"] == "candidate")]
        rows.append(_status_row(point, b_all, c_all))
        b, c = b_all[b_all["status"] == "ok"], c_all[c_all["status"] == "ok"]
        metrics = [(rule, rule.metric, b[rule.metric], c[rule.metric], b["task_score_stderr"], c["task_score_stderr"])
                   for rule in RULES]
        for probe, (drop, stderr) in probes.items():
            metrics.append((FORGETTING_RULE, f"forgetting:{probe}", drop[b.index], drop[c.index], stderr[b.index], stderr[c.index]))
        data_changed = _data_changed(both.loc[b.index], both.loc[c.index])
        if data_changed:  # scores and forgetting over other examples are not judged; one row says why
            rows.append({"point": point, "metric": "task_score", "unit": "", "test": "data", "verdict": "not compared",
                         "note": f"{data_changed} differ between baseline and candidate (the task's data changed)",
                         "baseline_text": "", "candidate_text": "", "change_text": ""})
            metrics = [x for x in metrics if x[0].metric not in ("task_score", FORGETTING_RULE.metric)]
        for rule, name, bv, cv, bse, cse in metrics:
            m = METRICS[rule.metric]
            bvals, cvals = bv.dropna().to_numpy(float), cv.dropna().to_numpy(float)
            if rule.test != "equivalence":
                bvals, cvals = bvals[bvals > 0], cvals[cvals > 0]  # ratios of logs need positive values
            if len(bvals) == 0 or len(cvals) == 0:
                continue  # not measured on one side (a failed point is judged by its status row)
            bs, cs = _summary(bvals), _summary(cvals)
            row = {"point": point, "metric": name, "unit": m.unit, "higher_is_better": m.higher_is_better,
                   "test": rule.test, "tolerance": rule.tolerance, "baseline": bs, "candidate": cs,
                   "baseline_text": _show(bs, m.show), "candidate_text": _show(cs, m.show)}
            if rule.test == "equivalence":
                floor = 1 / n_eval[point] if rule.metric == "task_score" and n_eval.get(point, 0) > 0 else 0.0
                row.update(judge_equivalence(rule, m.higher_is_better, bvals, cvals, bse.median(), cse.median(), floor))
            else:
                row.update(judge_ratio(rule, m.higher_is_better, bvals, cvals))
            rows.append(row)
    return rows


def provenance_diff(base_frame: pd.DataFrame, cand_frame: pd.DataFrame) -> list[dict]:
    """Hardware, driver, package and suite-setting values that differ between the two directories."""
    def fields(frame):
        return {c for c in frame.columns if c.startswith(("hardware.", "provenance.packages.")) or c in
                ("provenance.python", *INFO_ONLY)} | set(_identity_cols(frame))

    out = []
    for col in sorted(fields(base_frame) | fields(cand_frame)):
        values = [sorted({_text(v) for v in (f[col] if col in f else [None])}) for f in (base_frame, cand_frame)]
        if values[0] == values[1]:
            continue
        kind = "suite setting" if col.startswith("config.") else "provenance"
        out.append({"field": col.removeprefix("provenance.").removeprefix("config."), "kind": kind,
                    "baseline": values[0], "candidate": values[1],
                    "severity": "info" if col in INFO_ONLY else "warning"})
    return out


def summarize(rows: list[dict]) -> dict:
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("regression", "improvement", "unchanged", "not compared")}
    return {**counts, "verdict": "regression" if counts["regression"] else "ok"}


def cpu_concurrency(frame: pd.DataFrame) -> set[int]:
    """How many points shared the CPU when this directory's CPU records were measured (1 = alone;
    records before ``execution`` existed ran one at a time). GPU points own their GPUs: not counted."""
    cpu = frame[_col(frame, "hardware.device").fillna("cpu") == "cpu"]
    return {int(c) for c in _num(cpu, "execution.concurrency").fillna(1)}


def refuse_concurrent_mix(base_frame: pd.DataFrame, cand_frame: pd.DataFrame) -> None:
    """One-line UserError when CPU throughput measured with points at once meets throughput measured
    otherwise: concurrent points share the cores' memory bandwidth and caches, so their tokens/s is
    lower for reasons that are not a regression (``--allow-concurrent`` compares anyway)."""
    base, cand = cpu_concurrency(base_frame), cpu_concurrency(cand_frame)
    if base and cand and base != cand:
        def say(levels: set[int]) -> str:
            return "one point at a time" if levels == {1} else f"{'/'.join(map(str, sorted(levels)))} points at once"
        raise UserError(f"the baseline's CPU points ran {say(base)} and the candidate's {say(cand)} (launcher.parallel): "
                        f"their throughput is not comparable; re-run one side to match, or pass --allow-concurrent")


def regress(baseline: Path, candidate: Path, allow_concurrent: bool = False) -> dict:
    base_frame, cand_frame = _load(baseline, "--baseline"), _load(candidate, "--candidate")
    if not allow_concurrent:
        refuse_concurrent_mix(base_frame, cand_frame)
    rows = compare(base_frame, cand_frame)
    return {
        "baseline": str(baseline), "candidate": str(candidate),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "confidence": CONFIDENCE,
        "rules": [asdict(r) for r in (*RULES, FORGETTING_RULE)],
        "rows": rows,
        "provenance": provenance_diff(base_frame, cand_frame),
        "summary": summarize(rows),
    }


def _load(path: Path, option: str) -> pd.DataFrame:
    if not path.is_dir():
        raise UserError(f"{option} {path}: no such directory")
    frame = load_frame(path)
    if frame.empty:
        raise UserError(f"{option} {path}: no run records in it")
    return frame


# ---------------------------------------------------------------- running the suite and printing


def run_suite(results_dir: Path, overrides: list[str]) -> None:
    """The regression sweep in its own process (the sweep runner isolates every point itself)."""
    cmd = [sys.executable, "-m", "harness", f"sweep={SUITE}", f"results_dir={results_dir}", *overrides]
    print(f"running the regression suite: {' '.join(cmd[1:])}", file=sys.stderr)
    # stdout → stderr: with --json, stdout carries only the result.
    code = subprocess.run(cmd, stdout=sys.stderr).returncode
    if code == 130:
        raise KeyboardInterrupt
    if code == 2:
        raise UserError(f"the regression sweep refused its settings (see above): {' '.join(overrides) or 'no overrides'}")


def print_result(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    style = {"regression": "bold red", "improvement": "green", "unchanged": "", "not compared": "yellow"}
    table = Table(title=f"regress: {result['candidate']} vs baseline {result['baseline']}")
    for col in ("config", "metric", "baseline median [min–max]", "candidate", "change [95% CI]", "verdict"):
        table.add_column(col)
    rows = result["rows"]
    for i, r in enumerate(rows):
        verdict = r["verdict"] + (f" ({r['note']})" if r.get("note") else "")
        last_of_point = i + 1 == len(rows) or rows[i + 1]["point"] != r["point"]
        table.add_row(r["point"], r["metric"], r["baseline_text"], r["candidate_text"], r["change_text"],
                      f"[{style[r['verdict']]}]{verdict}[/]" if style[r["verdict"]] else verdict, end_section=last_of_point)
    console.print(table)
    for d in result["provenance"]:
        mark = "[yellow]warning[/]" if d["severity"] == "warning" else "[dim]info[/]"
        console.print(f"{mark} {d['kind']} {d['field']} differs: {' / '.join(d['baseline'])} → {' / '.join(d['candidate'])}",
                      highlight=False)
    s = result["summary"]
    color = "red" if s["verdict"] == "regression" else "green"
    console.print(f"[bold {color}]{s['verdict'].upper()}[/]: {s['regression']} regression(s), {s['improvement']} improvement(s), "
                  f"{s['unchanged']} unchanged, {s['not compared']} not compared")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harness regress", description=__doc__.split("\n\n")[0],
                                     epilog="Verdict rules: see the module docstring of harness/regress.py.")
    parser.add_argument("--baseline", help="results directory to compare against (e.g. results/baselines/cpu-2core)")
    parser.add_argument("--candidate", help="existing results directory to judge, instead of running the suite here")
    parser.add_argument("--results", help="where the suite run writes its records (default: results/regress/<UTC time>)")
    parser.add_argument("--out", help="where the JSON result goes (default: results/regress/<UTC time>.json)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout instead of a table")
    parser.add_argument("--allow-concurrent", action="store_true",
                        help="compare even when one side's CPU points ran several at once (launcher.parallel) and the other's did not")
    parser.add_argument("overrides", nargs="*", help="key=value overrides passed to the regression sweep")
    args = parser.parse_args(argv)

    def work() -> int:
        if args.candidate and (args.results or args.overrides):
            raise UserError("--candidate judges an existing directory: --results and overrides only apply when the suite runs here")
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if args.candidate:
            candidate = Path(args.candidate)
        else:
            candidate = Path(args.results) if args.results else Path("results/regress") / stamp
            run_suite(candidate, args.overrides)
        if not args.baseline:
            _load(candidate, "results")
            print(f"no --baseline: {candidate} holds the suite's records and can serve as one "
                  f"(harness regress --baseline {candidate})", file=sys.stderr)
            return 0
        result = regress(Path(args.baseline), candidate, allow_concurrent=args.allow_concurrent)
        out = Path(args.out) if args.out else Path("results/regress") / f"{stamp}.json"  # beside the command, not in a judged folder
        try:
            write_json(out, result)
        except OSError as e:
            raise UserError(f"--out {out}: cannot write the result ({e.strerror or e})") from None
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print_result(result)
            print(f"result written to {out}", file=sys.stderr)
        return 1 if result["summary"]["verdict"] == "regression" else 0

    return run_cli("harness regress", work)
