"""Rich output shared by commands: the training progress bar and the run summary table."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from advisor.facts import BUSY_ELSEWHERE  # shared with advisor validate's time score
from harness.model_names import model_label


PIPE_WIDTH = 1000  # off a terminal rich assumes 80 columns and wraps; a log line must stay one line


def make_console(stderr: bool = False) -> Console:
    """A rich console that wraps nothing when its output is not a terminal (a pipe, a log file, CI)."""
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, soft_wrap=True, width=PIPE_WIDTH)


@contextmanager
def progress_bar(console: Console):
    progress = Progress(
        TextColumn("[cyan]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        yield progress


def fmt(value, spec: str = ".3g") -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return str(value)


def busy_note(metrics: dict) -> str:
    """' — measured while other processes used N% of the CPUs' when they did (CPU runs), else ''."""
    busy = metrics.get("cpu_busy_elsewhere")
    if not isinstance(busy, (int, float)) or busy <= BUSY_ELSEWHERE:
        return ""
    return f" — measured while other processes used {100 * busy:.0f}% of the CPUs: not this setup's speed alone"


def print_run(record: dict, console: Console | None = None) -> None:
    console = console or make_console()
    m = record["metrics"]
    cfg = record["config"]
    table = Table(title=f"{record['run_id']}  [{record['status']}]", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("method · model · task", f"{cfg['method']['name']} · {model_label(cfg['model'])} · {cfg['task']['name']}"),
        ("task score base → tuned", f"{fmt(m.get('task_score_base'))} → {fmt(m.get('task_score'))} (± {fmt(m.get('task_score_stderr'), '.2f')})"),
        # A chained run (method.init_from) starts from the SFT model, not the base: its gain is from there.
        *([(f"start: {m['init_from']} → tuned", f"{fmt(m.get('init_task_score'))} → {fmt(m.get('task_score'))}")]
          if m.get("init_from") else []),
        *([("note", m["base_score_floor"])] if m.get("base_score_floor") else []),
        (f"peak memory ({m.get('memory_kind', '?')})", f"{fmt(m.get('peak_memory_gb'), '.2f')} GB"),
        ("tokens/s (steady state)", fmt(m.get("tokens_per_s"), ".1f") + busy_note(m)),
        *([("padding (" + m.get("batching", "?") + " batches)", f"{100 * m['padding_fraction']:.1f}% of positions")]
          if m.get("padding_fraction") is not None else []),
        *([("fused kernels (modules)", ", ".join(f"{k} {n}" for k, n in m["kernels_patched"].items()))] if m.get("kernels_patched") else []),
        ("samples/s", fmt(m.get("samples_per_s"), ".2f")),
        ("MFU", f"{100 * m['mfu']:.1f}%" if m.get("mfu") else "–"),
        ("train loss first → last", f"{fmt(m.get('train_loss_first'))} → {fmt(m.get('train_loss_last'))}"),
        ("trainable / total params", f"{fmt(m.get('trainable_params'), ',')} / {fmt(m.get('total_params'), ',')}"),
        ("steps · wall time", f"{fmt(m.get('steps'))} · {fmt(m.get('wall_s'), '.1f')} s"),
    ]
    for probe, f in (m.get("forgetting") or {}).items():
        rows.append((f"{probe} base → tuned", f"{fmt(f.get('base'))} → {fmt(f.get('tuned'))} (Δ {fmt(f.get('delta'))})"))
    if record.get("tracker"):
        t = record["tracker"]
        rows.append((f"{t['name']} run", t["run_id"] + (f" ({t['uri']})" if t.get("uri") else "")))
    for key, value in rows:
        table.add_row(key, value)
    if record.get("error"):
        table.add_row("error", f"{record['error']['type']}: {record['error']['message'][:200]}")
    console.print(table)


def quiet_libraries() -> None:
    """Called by each command before it loads a model."""
    # Library chatter (progress bars, advisory warnings) would drown the harness's own output.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval draws a tqdm bar per request type and task
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # "kernels not installed" notices

    warnings.filterwarnings("ignore")
