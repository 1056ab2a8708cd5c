"""The memory model against measurements: the published rows and the harness's own runs.

Like is compared with like: a row measured as CUDA *allocated* is compared with the model's
peak allocated, *reserved* with peak reserved (allocated + the caching allocator's overhead),
and a harness CPU run's resident-set delta with the model's CPU resident estimate. Rows the
model cannot speak to are listed as excluded, with the reason, never silently dropped.

Units: the published table is in GB of 10^9 bytes (its T rows convert torchtune's GiB); the
advisor works in GiB, so published figures are divided by 1.0737 before comparing.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

from advisor.catalog import GIB, resolve_model
from advisor.evidence import Run, setup_for_run
from advisor.memory import Setup, estimate

DECIMAL_GB = 1e9 / GIB
# Rows whose measurement includes a phase the model does not cover (read from the source's notes).
EXCLUDE = {
    "D5": "the peak reserved is set by model initialisation (the source notes model-init 9.13 GB, above any "
    "training step: early torchtune QLoRA loaded bf16 weights on the GPU before quantizing, and reserved "
    "memory is never returned); the model covers training steps, not loading",
}
# Settings that are facts about each source's software, not per-row adjustments.
FRAMEWORKS = {
    "peft": {"keep_logits": True},  # peft's own loop: fp32 adapters, foreach AdamW, holds `outputs` through backward
    "torchtune": {"fused_optimizer": True},  # its configs use AdamW(fused=True)
    "qwen": {},  # Qwen's finetune.py: HF Trainer + peft (+ DeepSpeed's fp32 master adapters)
}


@dataclass(frozen=True)
class Row:
    id: str
    model: str
    method: str
    metric: str  # allocated | reserved | ? | cpu_rss_delta | cuda_allocated | cuda_reserved
    measured_gb: float | None
    predicted_gb: float | None
    error_pct: float | None
    seq_len: int | None
    note: str = ""
    excluded: str = ""  # why the row is not in the MAPE

    def to_dict(self) -> dict:
        return asdict(self)


def published_rows() -> list[dict]:
    # A path beside this file, not importlib.resources: editable installs' finders break files().
    text = (Path(__file__).resolve().parent / "data" / "published_memory.csv").read_text()
    return list(csv.DictReader(text.splitlines()))


def published_setup(r: dict) -> Setup:
    model = resolve_model(r["model"])
    return Setup(
        arch=model.arch, method=r["method"], rank=int(r["rank"] or 16), targets=r["targets"] or "all-linear",
        batch_size=int(r["batch"]), seq_len=int(r["effective_seq_len"]), grad_checkpointing=r["grad_ckpt"] == "yes",
        precision="bf16", optimizer=r["optimizer"], adapter_dtype=r["adapter_dtype"] or "auto",
        lora_dropout=float(r["lora_dropout"] or 0), loss=r["loss"], optimizer_in_backward=r["optimizer_in_bwd"] == "yes",
        compile="torch.compile" in r["notes"], **FRAMEWORKS[r["framework"]],
    )  # fmt: skip


def validate_published(**constants) -> list[Row]:
    rows = []
    for r in published_rows():
        b = estimate(published_setup(r), **constants)
        measured = float(r["peak_gb"]) * DECIMAL_GB
        metric = r["metric"]
        predicted = b.peak_allocated_gb if metric == "allocated" else b.peak_reserved_gb  # '?' → reserved
        note = r["seq_len_note"]
        if metric == "?":
            note = "metric unknown: compared as reserved (an nvidia-smi reading is reserved + CUDA context); " + note
        rows.append(Row(r["id"], r["model"], r["method"] + (f" r{r['rank']}" if r["rank"] else ""), metric, measured,
                        predicted, 100 * (predicted - measured) / measured, int(r["effective_seq_len"]), note,
                        EXCLUDE.get(r["id"], "")))  # fmt: skip
    return rows


def validate_runs(runs: list[Run]) -> list[Row]:
    """Every ok run: CPU resident vs cpu_rss_delta, allocated vs cuda_allocated (and reserved if recorded)."""
    rows = []
    for run in runs:
        if run.status != "ok":
            continue
        if run.method in ("grpo", "dpo"):  # the whole setup: generation / reference phases (advisor/setups.py)
            from advisor.validate_time import rl_memory_rows

            rows.extend(rl_memory_rows(run))
            continue
        measured = run.peak_memory_gb
        kind = run.memory_kind
        name = f"{run.method}" + (f" r{run.rank}" if run.rank and run.method != "full" else "")
        setup, why = setup_for_run(run)
        seq, how = run.peak_seq_len
        if setup is None or measured is None or kind not in ("cpu_rss_delta", "cuda_allocated"):
            if not why and kind == "cpu_rss_delta_max_over_ranks":
                why = "per-rank RSS of a multi-process (FSDP) run: the single-process CPU constants do not apply"
            why = why or ("no peak_memory_gb" if measured is None else f"memory_kind '{kind}' unknown")
            rows.append(Row(run.run_id, run.model_name, name, str(kind), measured, None, None, seq, "", why))
            continue
        b = estimate(setup)
        if kind == "cpu_rss_delta":
            pairs = [("cpu_rss_delta", measured, b.cpu_resident_gb)]
        else:
            pairs = [("cuda_allocated", measured, b.peak_allocated_gb)]
            reserved = run.metrics.get("peak_reserved_gb")
            if isinstance(reserved, (int, float)) and reserved > 0:
                pairs.append(("cuda_reserved", float(reserved), b.peak_reserved_gb))
        for metric, m, p in pairs:
            excluded = "measured peak is ~0 (nothing to compare)" if m < 0.01 else ""
            err = 100 * (p - m) / m if not excluded else None
            rows.append(Row(run.run_id, run.model_name, name, metric, m, p, err, seq, f"peak batch length {seq} ({how})", excluded))
    return rows


def mape(rows: list[Row], *, metrics: tuple[str, ...] | None = None) -> float | None:
    errs = [abs(r.error_pct) for r in rows if r.error_pct is not None and not r.excluded and (metrics is None or r.metric in metrics)]
    return sum(errs) / len(errs) if errs else None


KNOWN = ("allocated", "reserved")


def fit() -> dict:
    """Grid-search the two CUDA allocator constants on the published rows with a known metric (D5 excluded).

    RESERVED_FRAC is searched over 3–15% (reserved memory is never below allocated; the caching
    allocator rounds blocks up and keeps them); ACT_FACTOR stays 1.0 (the activation count is exact).
    """
    grid = itertools.product([x / 100 for x in range(3, 16)], [x / 20 for x in range(0, 16)])
    best = None
    for frac, runtime in grid:
        m = mape(validate_published(reserved_frac=frac, runtime_gb=runtime), metrics=KNOWN)
        if best is None or m < best[0] - 1e-9:
            best = (m, frac, runtime)
    m, frac, runtime = best
    return {"mape_pct": m, "RESERVED_FRAC": frac, "CUDA_RUNTIME_GB": runtime}


def fit_cpu(runs: list[Run]) -> dict | None:
    """Fit the two CPU constants on ok cpu_rss_delta runs (None when there are none)."""
    cpu = [r for r in runs if r.status == "ok" and r.memory_kind == "cpu_rss_delta"]
    if not cpu:
        return None
    best = None
    for slack, base in itertools.product([x / 100 for x in range(0, 101, 5)], [x / 100 for x in range(0, 51, 2)]):
        errs = []
        for r in cpu:
            setup, _ = setup_for_run(r)
            if setup is None or not r.peak_memory_gb:
                continue
            p = estimate(setup, cpu_slack=slack, cpu_runtime_gb=base).cpu_resident_gb
            errs.append(abs(p - r.peak_memory_gb) / r.peak_memory_gb * 100)
        if errs and (best is None or sum(errs) / len(errs) < best[0]):
            best = (sum(errs) / len(errs), slack, base, len(errs))
    return None if best is None else {"mape_pct": best[0], "CPU_SLACK_FRAC": best[1], "CPU_RUNTIME_GB": best[2], "runs": best[3]}
