"""All run records of a directory as one table: ``load(dir)`` → DataFrame, ``harness results`` → terminal/CSV/Parquet.

    harness results results/runs --where method=lora --where r>=8 --sort tokens_per_s --csv runs.csv

Every ``*.json`` file below the directory is read, so ``harness results results`` sees each sweep's
subfolder. Not records, so never read: what a run keeps beside its record (``artifacts/``, ``evals/``
re-scores, ``logs/``, ``slurm/`` job files, ``reports/``, trackers' stores), hidden or ``_``-prefixed folders (caches),
and ``.tmp`` files of interrupted writes. A corrupt or foreign file is named on stderr and skipped.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from pathlib import Path

from harness.atomic import write_bytes, write_text
from harness.errors import UserError, did_you_mean, run_cli
from harness.model_names import short_name
from harness.record import read_record

# Short columns first: what people filter and sort by. Long ones stay, flattened with dots.
SHORT = {
    "run_id": "run_id",
    "status": "status",
    "sweep": "sweep.name",
    "method": "config.method.name",
    "model": "config.model.name",
    "task": "config.task.name",
    "r": "config.method.r",
    "repeat": "config.repeat",
}
DEFAULT_COLUMNS = ("run_id", "status", "sweep", "method", "model", "task", "r", "peak_memory_gb", "tokens_per_s", "mfu",
                   "task_score_base", "task_score", "wall_s")
OPS = ("!=", ">=", "<=", "=", ">", "<")  # two-character operators first: "r>=8" is not "r>" "=8"


# Folders a run or a tool writes beside the records, holding JSON that is not a run record.
# Trackers' own stores (harness/trackers/) hold copies of records as artifacts: never read twice.
NOT_RECORDS = frozenset({"artifacts", "evals", "logs", "slurm", "reports", "mlartifacts", "mlruns", "tensorboard", "trackio", "wandb"})


def record_paths(directory: Path) -> list[Path]:
    """``*.json`` files at any depth below ``directory``, minus the folders in ``NOT_RECORDS`` and
    hidden or ``_``-prefixed ones (caches), in a stable order."""
    out = []
    for path in sorted(directory.rglob("*.json")):
        parts = path.relative_to(directory).parts
        if any(p in NOT_RECORDS or p.startswith((".", "_")) for p in parts[:-1]) or parts[-1].startswith("."):
            continue
        if path.is_file():
            out.append(path)
    return out


def records(directory: str | Path, *, warn=None) -> list[dict]:
    """Every readable record below ``directory``, each with ``_path`` (its path relative to
    ``directory``); ``warn(message)`` hears about each skipped file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"results directory not found: {directory}")
    warn = warn or (lambda msg: print(f"harness results: warning: {msg}", file=sys.stderr))
    out = []
    for path in record_paths(directory):
        try:
            rec = read_record(path)
        except ValueError as e:
            rel = path.relative_to(directory)
            warn(f"skipping {str(e).replace(path.name + ':', str(rel) + ':', 1)}")
            continue
        out.append({**rec, "_path": path.relative_to(directory).as_posix()})
    return out


def load(directory: str | Path, *, warn=None):
    """A pandas DataFrame, one row per run: short columns (``method``, ``model``, ``task``, ``r``,
    ``status``, ``sweep``) first, then every record field flattened (``metrics.tokens_per_s``), and
    ``path``, the record's file relative to ``directory`` (``rank_ablation/lora-….json``)."""
    import pandas as pd

    recs = records(directory, warn=warn)
    if not recs:
        return pd.DataFrame(columns=list(SHORT))
    flat = pd.json_normalize(recs, sep=".").rename(columns={"_path": "path"})
    for short, long in SHORT.items():
        if short != long:
            flat[short] = flat[long] if long in flat.columns else None
    if "config.model.name_or_path" in flat.columns:  # a hub model by its name (Llama-3.2-1B), not "hub"
        flat["model"] = [short_name(n, p if isinstance(p, str) else None) if isinstance(n, str) else n
                         for n, p in zip(flat["model"], flat["config.model.name_or_path"])]
    first = list(SHORT)
    return flat[first + [c for c in flat.columns if c not in first]]


# ---------------------------------------------------------------- the command


def column(df, name: str) -> str:
    """A column by its full name, its short name, or the unique field it ends with (``tokens_per_s``)."""
    if name in df.columns:
        return name
    for prefix in ("metrics.", "config."):
        if prefix + name in df.columns:
            return prefix + name
    ends = [c for c in df.columns if c.endswith("." + name)]
    if len(ends) == 1:
        return ends[0]
    if ends:
        raise UserError(f"column '{name}' is ambiguous: {', '.join(ends[:6])}")
    short = [c.rsplit(".", 1)[-1] for c in df.columns]
    raise UserError(f"unknown column '{name}'{did_you_mean(name, set(short) | set(df.columns))} (--list-columns shows them)")


def _parse_where(expr: str) -> tuple[str, str, str]:
    for op in OPS:
        if op in expr:
            key, value = expr.split(op, 1)
            if key.strip():
                return key.strip(), op, value.strip()
    raise UserError(f"--where '{expr}': use key=value, key!=value, key>value, key>=value, key<value or key<=value")


def where(df, expr: str):
    import pandas as pd

    key, op, raw = _parse_where(expr)
    col = df[column(df, key)]
    numeric = pd.to_numeric(col, errors="coerce")
    try:
        value = float(raw)
        is_num = numeric.notna().any() or col.isna().all()
    except ValueError:
        is_num = False
    if is_num:
        lhs, rhs = numeric, value
    elif op in ("=", "!="):
        lhs = col.map(lambda v: "null" if v is None or (isinstance(v, float) and v != v) else str(v).lower())
        rhs = raw.lower()
    else:
        raise UserError(f"--where '{expr}': '{raw}' is not a number, so only = and != apply")
    mask = {"=": lhs == rhs, "!=": lhs != rhs, ">": lhs > rhs, ">=": lhs >= rhs, "<": lhs < rhs, "<=": lhs <= rhs}[op]
    return df[mask.fillna(False).astype(bool)]


def _cell(value) -> str:
    from harness.console import fmt

    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return fmt(value, ".3g")
    return str(value)


def _exportable(df):
    """Lists and dicts (loss curves, probe dicts) become JSON text: CSV and Parquet both take it."""
    df = df.copy()
    for c in df.columns:
        if df[c].map(lambda v: isinstance(v, (list, dict))).any():
            df[c] = df[c].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return df


def export(df, csv: str | None = None, parquet: str | None = None) -> list[Path]:
    written = []
    if csv:
        write_text(csv, _exportable(df).to_csv(index=False))
        written.append(Path(csv))
    if parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UserError("--parquet needs pyarrow: pip install 'tunebench[parquet]'") from None
        out = _exportable(df)
        for c in out.columns:  # Parquet wants one type per column; mixed object columns go as text
            if out[c].dtype == object:
                out[c] = out[c].map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v))
        buf = io.BytesIO()
        out.to_parquet(buf, index=False)
        write_bytes(parquet, buf.getvalue())
        written.append(Path(parquet))
    return written


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness results", description="Table of run records; filter, sort, export.")
    p.add_argument("dir", nargs="?", default="results/runs", help="results directory (default results/runs)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="keep matching rows; repeatable (AND). Also !=, >, >=, <, <= for numbers: --where r>=8")
    p.add_argument("--sort", metavar="COLUMN", help="sort by a column, ascending (--sort=-tokens_per_s or --desc: descending)")
    p.add_argument("--desc", action="store_true", help="sort descending")
    p.add_argument("--columns", metavar="A,B,…", help=f"columns to show (default: {','.join(DEFAULT_COLUMNS)})")
    p.add_argument("--list-columns", action="store_true", help="print every column name and exit")
    p.add_argument("--csv", metavar="FILE", help="write the filtered rows (all columns) as CSV")
    p.add_argument("--parquet", metavar="FILE", help="write the filtered rows (all columns) as Parquet")
    p.add_argument("--to", metavar="TRACKER", help="log every record into a tracker instead: mlflow, tensorboard, trackio, "
                   "wandb (its default store under DIR; --uri for an MLflow server)")
    p.add_argument("--uri", help="with --to mlflow: the tracking server (default sqlite:///DIR/mlflow.db)")
    p.add_argument("--project", default="tunebench", help="with --to: the experiment / project name (default tunebench)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return run_cli("harness results", lambda: _main(args))


def _main(args) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.to:
        return _backfill(args)
    df = load(args.dir)
    if args.list_columns:
        print("\n".join(df.columns))
        return 0
    for expr in args.where:
        df = where(df, expr)
    if args.sort:
        desc = args.desc or args.sort.startswith("-")
        df = df.sort_values(column(df, args.sort.lstrip("-")), ascending=not desc, na_position="last", kind="stable")
    names = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else [
        c for c in DEFAULT_COLUMNS if c in SHORT or any(col.endswith("." + c) for col in df.columns)
    ]
    if "run_id" not in names:
        names.insert(0, "run_id")  # a row is always identifiable
    cols = [column(df, c) for c in names]
    table = Table(title=f"{len(df)} run(s) in {args.dir}")
    for name in names:
        table.add_column(re.sub(r"^(metrics|config)\.", "", name), justify="left" if name in SHORT else "right", no_wrap=True)
    for _, row in df.iterrows():
        table.add_row(*(_cell(row[c]) for c in cols))
    console = Console()
    if not console.is_terminal:  # piped or redirected: do not squeeze the table into 80 columns
        console = Console(width=240)
    console.print(table)
    for path in export(df, args.csv, args.parquet):
        print(f"wrote {len(df)} rows to {path}", file=sys.stderr)
    return 0


def _backfill(args) -> int:
    from harness.trackers import TRACKERS, logger_spec
    from harness.trackers.backfill import backfill

    if args.to not in TRACKERS:
        raise UserError(f"--to '{args.to}': choose one of {', '.join(TRACKERS)}{did_you_mean(args.to, TRACKERS)}")
    if not Path(args.dir).is_dir():
        raise UserError(f"results directory not found: {args.dir}")
    spec = logger_spec({"name": args.to, "uri": args.uri, "project": args.project})
    logged, skipped = backfill(spec, args.dir, records(args.dir))
    print(f"logged {logged} record(s) from {args.dir} to {args.to}"
          + (f"; {skipped} already there, skipped" if skipped else ""), file=sys.stderr)
    return 0
