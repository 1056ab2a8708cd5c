"""``harness report [RESULTS_DIR] --out DIR``: which method wins where, as one HTML page and Markdown.

The page opens with the answer (best configuration per criterion, the Pareto set, and the
regression verdict when there is one), then what was run, a table per sweep, the plots and the
failed runs. ``report.html`` is self-contained: plots are base64 PNGs and the CSS is inline, so it
opens offline and can be mailed; every string that came from a record is ``html.escape``d.
``report.md`` has the same content, with the plots as ``plots/<name>.png`` beside it.

A regression result (``harness regress``) is shown when ``--regress FILE`` is given, or when the
results directory holds a ``regress.json`` (where ``harness regress`` writes it by default).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness import plots
from harness.errors import UserError, run_cli

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


# Every metric the report and `harness regress` compare, with its direction.
METRICS = {
    "peak_memory_gb": Metric("peak memory", "GB", False, ".2f"),
    "tokens_per_s": Metric("throughput", "tokens/s", True, ".1f"),
    "mfu": Metric("MFU", "%", True, ".2f", 100.0),
    "task_score": Metric("task score", "", True, ".3f"),
    "forgetting": Metric("forgetting", "score drop", False, ".3f"),
    "train_loss_last": Metric("final train loss", "", False, ".3f"),
    "wall_s": Metric("wall time", "s", False, ".0f"),
}
# The headline: (criterion, metric).
CRITERIA = (("lowest memory", "peak_memory_gb"), ("fastest", "tokens_per_s"),
            ("best task score", "task_score"), ("least forgetting", "forgetting"))
# Config fields that never distinguish one configuration from another.
NOT_IDENTITY = ("config.repeat", "config.results_dir", "config.train.save", "config.train.log_every", "config.model.arch.")
SHORT = {"config.model.name": "model", "config.task.name": "task", "config.method.r": "r", "config.budget_gb": "budget_gb"}


# ---------------------------------------------------------------- data


def load_frame(results_dir: Path) -> pd.DataFrame:
    """All records of ``results_dir``, one flattened row each (``metrics.tokens_per_s``, …), via
    ``harness.results.load``; our own ``regress.json`` beside them is not a record to warn about."""
    from harness.results import load

    def warn(msg: str) -> None:
        if REGRESS_FILE not in msg:
            print(f"harness: warning: {msg}", file=sys.stderr)

    return load(results_dir, warn=warn)


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _num(frame: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(_col(frame, name), errors="coerce")


def forgetting(frame: pd.DataFrame) -> pd.Series:
    """Mean drop over forgetting probes, oriented so that positive = forgot (lower is better)."""
    probes = sorted({c.split(".")[2] for c in frame.columns if c.startswith("metrics.forgetting.") and c.endswith(".delta")})
    drops = []
    for p in probes:
        delta = _num(frame, f"metrics.forgetting.{p}.delta")
        hib = _col(frame, f"metrics.forgetting.{p}.higher_is_better").fillna(True).astype(bool)
        drops.append(delta.where(~hib, -delta))
    return pd.concat(drops, axis=1).mean(axis=1) if drops else pd.Series(float("nan"), index=frame.index)


def _identity_cols(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("config.") and not c.startswith(NOT_IDENTITY)]


def _text(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return "null" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)


def point_labels(frame: pd.DataFrame) -> pd.Series:
    """A readable name per configuration: the method, plus every setting that varies within a method
    ("lora r=8", "full batch_size=12 budget_gb=1.5"). Repeats of one configuration share a label."""
    cols = _identity_cols(frame)
    keys = frame[cols].map(_text) if cols else pd.DataFrame(index=frame.index)
    method = _col(frame, "method").map(_text)
    varying = [c for c in cols if keys.groupby(method)[c].nunique().max() > 1]
    # A setting is named only where it differs from the method's usual value, so one odd run
    # (another task, a budget) does not lengthen every label; the rank is always named.
    usual = {c: keys.groupby(method)[c].agg(lambda s: s.mode().iloc[0]) for c in varying}
    labels = []
    for i in frame.index:
        parts = [method[i]] + [f"{SHORT.get(c, c.rsplit('.', 1)[-1])}={keys.at[i, c]}" for c in varying
                               if (c == "config.method.r" and keys.at[i, c] != "null") or keys.at[i, c] != usual[c][method[i]]]
        labels.append(" ".join(parts))
    return pd.Series(labels, index=frame.index)


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run with the short columns the report and plots use."""
    runs = pd.DataFrame({
        "run_id": _col(frame, "run_id"),
        "sweep": _col(frame, "sweep"),
        "status": _col(frame, "status"),
        "method": _col(frame, "method").map(_text),
        "model": _col(frame, "model"),
        "task": _col(frame, "task"),
        "r": _num(frame, "config.method.r"),
        "batch_size": _num(frame, "config.train.batch_size"),
        "max_seq_len": _num(frame, "config.train.max_seq_len"),
        "budget_gb": _num(frame, "config.budget_gb"),
        "memory_kind": _col(frame, "metrics.memory_kind"),
        "task_score_stderr": _num(frame, "metrics.task_score_stderr"),
        "error_type": _col(frame, "error.type"),
        "error_message": _col(frame, "error.message"),
    }, index=frame.index)
    for key in METRICS:
        runs[key] = _num(frame, f"metrics.{key}")
    runs["forgetting"] = forgetting(frame)
    runs["point"] = point_labels(frame)
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


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: medians over its successful repeats, status counts over all."""
    rows = []
    for label, grp in runs.groupby("point", sort=False):
        ok = grp[grp["status"] == "ok"]
        counts = grp["status"].value_counts()
        row = {"point": label, "method": grp["method"].iloc[0], "r": grp["r"].iloc[0],
               "batch_size": grp["batch_size"].iloc[0], "n": len(grp), "n_ok": len(ok),
               "status": ", ".join(f"{n} {s}" for s, n in counts.items()),
               "task_score_stderr": ok["task_score_stderr"].median()}
        for key in METRICS:
            row[key] = (ok if len(ok) else grp)[key].median()
        rows.append(row)
    points = pd.DataFrame(rows)
    return points.sort_values(["method", "r", "batch_size", "point"], na_position="first").reset_index(drop=True)


def headline(points: pd.DataFrame) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """(criterion, winner, value) rows; the Pareto set; the metrics it was built on."""
    ok = points[points["n_ok"] > 0]
    rows = []
    for criterion, key in CRITERIA:
        m = METRICS[key]
        vals = ok[key].dropna()
        if vals.empty:
            rows.append((criterion, "–", "not measured"))
            continue
        best = vals.idxmax() if m.higher_is_better else vals.idxmin()
        rows.append((criterion, ok.at[best, "point"], f"{m.show(vals[best])} {m.unit}".strip()))
    used = [key for _, key in CRITERIA if ok[key].notna().any()]
    used = [k for k in used if ok[k].notna().all()] or used[:1]
    complete = ok.dropna(subset=used)
    front = complete[pareto_mask(complete, used)]["point"].tolist() if used else []
    return rows, front, used


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


def advisor_setup(config: dict, device: str, metrics: dict, arch: dict | None = None):
    """The advisor's ``Setup`` for a run's resolved config (``advisor/`` imports no torch).

    The padded length of the longest batch sets the activation peak; records do not carry it yet,
    so ``train.max_seq_len`` (an upper bound) stands in unless ``metrics.max_batch_seq_len`` exists.
    """
    from advisor.catalog import Arch
    from advisor.memory import METHODS, Setup

    from harness.methods import METHODS as METHOD_TABLE

    m, t = config["method"], config["train"]
    name = "dora" if m.get("use_dora") else "qlora" if m.get("quantize") == "4bit" else m["name"]
    if name not in METHODS:  # rslora: sized as lora (harness.methods table); fsdp(full), grpo(lora): what is trained
        name = getattr(METHOD_TABLE.get(m["name"]), "sized_as", None) or m.get("inner") or name
    dtype = t.get("dtype") or "auto"
    precision = {"fp32": "fp32", "bf16": "bf16", "fp16": "bf16"}.get(dtype, "fp32" if device == "cpu" else "bf16")
    seq = metrics.get("max_batch_seq_len") or t["max_seq_len"]
    arch = arch or config["model"]["arch"]  # the record's model_arch (measured); a bare config: the spec's
    return Setup(arch=Arch.from_hf(arch, where="model_arch"), method=name,
                 rank=int(m.get("r") or 16), targets=m.get("targets") or "all-linear", batch_size=int(t["batch_size"]),
                 seq_len=int(seq), grad_checkpointing=bool(t.get("grad_checkpointing")), precision=precision,
                 optimizer=t.get("optimizer") or "adamw", gpus=int(m.get("world_size") or 1),
                 grad_accum=int(t.get("grad_accum") or 1), device="cpu" if device == "cpu" else "cuda",
                 lora_dropout=float(m.get("dropout") or 0.0))


def advisor_estimates(frame: pd.DataFrame, runs: pd.DataFrame) -> tuple[pd.Series, str | None]:
    """The advisor's peak-memory estimate (GB) per successful run, of the same kind as the measured
    one (CPU: resident set above the pre-load baseline; CUDA: allocated), and why none if missing."""
    try:
        from advisor.memory import estimate
    except ImportError as e:
        return pd.Series(float("nan"), index=runs.index), f"the advisor's memory model is not available ({e})"
    out, last_error = {}, None
    for i in runs.index[runs["status"] == "ok"]:
        row = frame.loc[i]
        device = str(row.get("hardware.device") or "cuda")
        try:
            b = estimate(advisor_setup(_unflatten(row, "config."), device, _unflatten(row, "metrics."),
                                       _unflatten(row, "model_arch.")))
        except Exception as e:  # noqa: BLE001 — one config the advisor cannot size must not sink the report
            last_error = f"{type(e).__name__}: {e}"
            continue
        out[i] = b.cpu_resident_gb if device == "cpu" and b.cpu_resident_gb is not None else b.peak_allocated_gb
    series = pd.Series(out, index=runs.index, dtype=float)
    return series, None if out else f"the advisor could not size these runs ({last_error})"


def _unflatten(row: pd.Series, prefix: str) -> dict:
    nested: dict = {}
    for col, value in row.items():
        if not col.startswith(prefix):
            continue
        if isinstance(value, float) and pd.isna(value):
            value = None
        node = nested
        *parents, leaf = col[len(prefix):].split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return nested


# ---------------------------------------------------------------- content


@dataclass
class Report:
    title: str
    subtitle: str
    blocks: list  # ("h2", text) | ("p", text) | ("list", [text]) | ("table", headers, rows, row_classes) | ("plot", Plot)


def _point_table(points: pd.DataFrame) -> tuple[list[str], list[list[str]], list[str]]:
    headers = ["configuration", "runs", "peak memory (GB)", "tokens/s", "MFU (%)", "task score ± stderr", "forgetting", "wall (s)"]
    rows, classes = [], []
    for _, p in points.iterrows():
        peak = METRICS["peak_memory_gb"].show(p["peak_memory_gb"])
        if p["n_ok"] == 0 and "oom" in p["status"] and peak != "–":
            peak = "≥ " + peak  # the peak reached when the budget stopped it
        score = METRICS["task_score"].show(p["task_score"])
        if score != "–" and not pd.isna(p["task_score_stderr"]):
            score += f" ± {p['task_score_stderr']:.3f}"
        rows.append([p["point"], p["status"], peak,
                     METRICS["tokens_per_s"].show(p["tokens_per_s"]), METRICS["mfu"].show(p["mfu"]), score,
                     METRICS["forgetting"].show(p["forgetting"]), METRICS["wall_s"].show(p["wall_s"])])
        classes.append("ok" if p["n_ok"] == p["n"] else ("oom" if "oom" in p["status"] else "fail"))
    return headers, rows, classes


def _distinct(frame: pd.DataFrame, col: str) -> str:
    vals = sorted({_text(v) for v in _col(frame, col) if _text(v) != "null"})
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


def build(results_dir: Path, regress: dict | None = None) -> tuple[Report, list[plots.Plot]]:
    frame = load_frame(results_dir)
    if frame.empty:
        raise UserError(f"no run records in {results_dir} (expected <run_id>.json files written by `harness` or a sweep)")
    runs = tidy(frame)
    runs["estimate_gb"], why_no_estimate = advisor_estimates(frame, runs)
    points = aggregate(runs)
    ok_points = points[points["n_ok"] > 0].reset_index(drop=True)
    best, front, used = headline(points)
    for col, (x, y) in {"front_score_forgetting": ("forgetting", "task_score"),
                        "front_memory_score": ("peak_memory_gb", "task_score")}.items():
        sub = ok_points.dropna(subset=[x, y])
        ok_points[col] = pareto_mask(sub, [x, y]).reindex(ok_points.index, fill_value=False) if len(sub) else False

    counts = runs["status"].value_counts()
    report = Report(
        title="tunebench report",
        subtitle=f"{len(runs)} run{'s' if len(runs) != 1 else ''} ({', '.join(f'{n} {s}' for s, n in counts.items())}) from {results_dir} · "
                 f"generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        blocks=[],
    )
    b = report.blocks
    b.append(("h2", "Which configuration wins where"))
    b.append(("table", ["criterion", "best configuration", "value (median over repeats)"], [list(r) for r in best], []))
    arrows = ", ".join(f"{METRICS[k].label} {'↑' if METRICS[k].higher_is_better else '↓'}" for k in used)
    b.append(("p", f"Pareto set ({arrows}): " + (", ".join(front) if front else "–") +
              ". No configuration outside it is at least as good on all of these at once."))
    if regress:
        b.extend(_regress_blocks(regress))

    b.append(("h2", "What was run"))
    hw = sorted({" · ".join(_text(v) for v in row if _text(v) != "null")
                 for row in frame.reindex(columns=["hardware.device", "hardware.device_name", "hardware.cpu_count",
                                                   "hardware.memory_gb", "hardware.driver"]).itertuples(index=False)})
    pkgs = [f"{c.split('.')[-1]} {_distinct(frame, c)}" for c in sorted(frame.columns) if c.startswith("provenance.packages.")]
    b.append(("list", [
        f"sweeps: {_distinct(frame, 'sweep')}", f"models: {_distinct(frame, 'model')}", f"tasks: {_distinct(frame, 'task')}",
        f"methods: {_distinct(frame, 'method')}",
        "hardware (device · name · CPUs · RAM GB · driver): " + ("; ".join(hw) or "–"),
        f"python {_distinct(frame, 'provenance.python')}; " + "; ".join(pkgs),
        f"tunebench {_distinct(frame, 'provenance.tunebench_version')} at commit(s) {_distinct(frame, 'provenance.git_commit')}",
        f"memory is measured as: {_distinct(frame, 'metrics.memory_kind')} (cpu_rss_delta = process RSS growth; "
        "cuda_allocated = torch allocator peak)",
    ]))

    for sweep in sorted(runs["sweep"].dropna().unique()) + ([None] if runs["sweep"].isna().any() else []):
        sub = runs[runs["sweep"] == sweep] if sweep is not None else runs[runs["sweep"].isna()]
        b.append(("h2", f"Sweep: {sweep}" if sweep is not None else "Runs outside any sweep"))
        about = sweep_about(sweep) if sweep is not None else ""
        if about:
            b.append(("p", f"About: {about} (sweeps/sweep/{sweep}.yaml)"))
        headers, rows, classes = _point_table(aggregate(sub))
        b.append(("table", headers, rows, classes))

    figures = [plots.memory_vs_rank(runs), plots.throughput(runs), plots.score_vs_forgetting(ok_points),
               plots.memory_vs_score(ok_points), plots.oom_boundary(runs), plots.advisor_vs_measured(runs, why_no_estimate)]
    b.append(("h2", "Plots"))
    b.extend(("plot", p) for p in figures)

    failed = runs[runs["status"] != "ok"]
    b.append(("h2", "Failed runs"))
    if failed.empty:
        b.append(("p", "None: every run finished."))
    else:
        rows = [[r.run_id, r.status, r.point, _text(r.error_type), _text(r.error_message)[:300]] for r in failed.itertuples()]
        b.append(("table", ["run", "status", "configuration", "error", "message"], rows,
                  ["oom" if r[1] == "oom" else "fail" for r in rows]))
    return report, figures


# ---------------------------------------------------------------- rendering

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1020px;margin:1.2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.4em}
.sub{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}
tr.oom td{background:#fff4e0}tr.fail td{background:#fde8e8}tr.ok td:first-child{border-left:3px solid #2a9d55}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:12.5px}
"""


def to_html(report: Report) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(report.title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{e(report.title)}</h1>", f'<p class="sub">{e(report.subtitle)}</p>']
    for block in report.blocks:
        kind = block[0]
        if kind == "h2":
            out.append(f"<h2>{e(block[1])}</h2>")
        elif kind == "p":
            out.append(f"<p>{e(block[1])}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            _, headers, rows, classes = block
            out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead><tbody>")
            for i, row in enumerate(rows):
                cls = f' class="{e(classes[i])}"' if i < len(classes) and classes[i] else ""
                out.append(f"<tr{cls}>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
            out.append("</tbody></table>")
        elif kind == "plot":
            p = block[1]
            data = base64.b64encode(p.png).decode("ascii")
            out.append(f'<figure id="plot-{e(p.name)}"><img alt="{e(p.title)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{e(p.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    out = [f"# {report.title}", "", f"_{report.subtitle}_", ""]
    for block in report.blocks:
        kind = block[0]
        if kind == "h2":
            out += [f"## {block[1]}", ""]
        elif kind == "p":
            out += [block[1], ""]
        elif kind == "list":
            out += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            _, headers, rows, _ = block
            out.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("")
        elif kind == "plot":
            p = block[1]
            out += [f"### {p.title}", "", f"![{p.title}](plots/{p.name}.png)", "", f"_{p.caption}_", ""]
    return "\n".join(out)


def write(report: Report, figures: list[plots.Plot], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plots").mkdir(exist_ok=True)
    for p in figures:
        (out_dir / "plots" / f"{p.name}.png").write_bytes(p.png)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    html_path.write_text(to_html(report), encoding="utf-8")
    md_path.write_text(to_markdown(report), encoding="utf-8")
    return html_path, md_path


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
    parser.add_argument("results_dir", nargs="?", default="results/runs", help="directory of run records (default: results/runs)")
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
        report, figures = build(results_dir, regress)
        html_path, md_path = write(report, figures, out_dir)
        print(f"wrote {html_path} and {md_path} ({len(figures)} plots in {out_dir / 'plots'})")
        return 0

    return run_cli("harness report", work)
