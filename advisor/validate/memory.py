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
import math
import re
from dataclasses import asdict, dataclass

from advisor.errors import AdvisorError
from advisor.inputs import DATA
from advisor.inputs.catalog import GIB, resolve_model
from advisor.inputs.harness_runs import Run, run_from_record
from advisor.memory import overhead
from advisor.memory.estimate import estimate
from advisor.memory.rl import estimate_setup
from advisor.memory.setup import Setup, setup_for_run
from advisor.validate import calibration
from advisor.validate.calibration import mape
from advisor.validate.speed import run_workload

DECIMAL_GB = 1e9 / GIB

# Rows whose measurement includes a phase the model does not cover (read from the source's notes).
EXCLUDE = {
    "D5": "the peak reserved is set by model initialisation (the source notes model-init 9.13 GB, above any "
    "training step: early torchtune QLoRA loaded bf16 weights on the GPU before quantizing, and reserved "
    "memory is never returned); the model covers training steps, not loading",
    "LC3": "a 4-GPU FSDP full fine-tune whose per-GPU figure (16.2 GiB) is 87% of the same run unsharded on one GPU "
    "(2.5B params × 8 B/param = 18.7 GiB before activations): no FULL_SHARD per-GPU peak is that high, and summed over "
    "4 GPUs it would be too low; the table's own note calls its full fine-tuning figures unreliable",
}
DUBIOUS = ("class 'dubious' in the source table: old litgpt Fabric FSDP per-GPU figures far above any sharded "
           "LoRA peak (per-GPU vs summed, and which rank, is not stated); estimated and shown, not scored")

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
    source: str = ""  # published rows: the source's short name (leave-one-source-out groups)
    range_gb: tuple[float, float] | None = None  # the LOSO range around predicted_gb
    in_range: bool | None = None
    phase: str = ""  # the estimate's peak phase

    def to_dict(self) -> dict:
        return asdict(self)

def published_rows() -> list[dict]:
    return list(csv.DictReader((DATA / "published_memory.csv").read_text().splitlines()))

def _model(name: str):
    if name.startswith("configs/"):  # a config.json shipped beside the table, as a user would pass it
        return resolve_model(str(DATA / name))
    return resolve_model(name)

def published_setup(r: dict) -> Setup:
    yes = lambda k: r[k] == "yes"  # noqa: E731
    gpus = int(r["gpus"])
    return Setup(
        arch=_model(r["model"]).arch, method=r["method"], rank=int(r["rank"] or 16), targets=r["targets"] or "all-linear",
        batch_size=int(r["batch"]), seq_len=int(r["effective_seq_len"]), grad_checkpointing=yes("grad_ckpt"),
        precision="bf16-true" if r["precision"] == "bf16-true" else "bf16", optimizer=r["optimizer"], gpus=gpus, stack=r["stack"], attention=r["attention"],
        adapter_dtype=r["adapter_dtype"] or "auto", lora_dropout=float(r["lora_dropout"] or 0), loss=r["loss"] or "auto",
        optimizer_in_backward=yes("optimizer_in_bwd"), keep_logits=yes("keep_logits"), compile=yes("compile"),
        fused_optimizer=r["stack"] == "torchtune",  # torchtune's configs use AdamW(fused=True)
        prepare_kbit=yes("kbit_prep") if r["kbit_prep"] else None, double_quant=r["double_quant"] != "no",
        lora_experts=False,  # the published MoE rows adapt attention only ("experts not adapted")
        kernels=tuple(k for k in r.get("kernels", "").split("+") if k),
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
        excluded = EXCLUDE.get(r["id"], "") or (DUBIOUS if r["class"] == "dubious" else "")
        rows.append(Row(r["id"], r["model"].removeprefix("configs/").removesuffix(".json"),
                        r["method"] + (f" r{r['rank']}" if r["rank"] else "") + (f" ×{r['gpus']}" if r["gpus"] != "1" else ""),
                        metric, measured, predicted, 100 * (predicted - measured) / measured, int(r["effective_seq_len"]), note,
                        excluded, r["src"], phase=b.peak_phase))  # fmt: skip
    return rows

SMI = re.compile(r"nvidia-smi (\d+) MiB")

def device_rows(**constants) -> list[Row]:
    """Rows whose source also printed nvidia-smi's reading: the device total (reserved + the CUDA context,
    + NCCL with several GPUs) against the expected figure; ``in_range``: at or under the high end that
    `recommend`'s verdict uses."""
    rows = []
    for r in published_rows():
        m = SMI.search(r["notes"])
        if not m:
            continue
        b = estimate(published_setup(r), **constants)
        smi = int(m.group(1)) / 1024  # MiB → GiB
        expected = b.peak_reserved_gb + b.cuda_context_gb
        rows.append(Row(r["id"], r["model"].removeprefix("configs/").removesuffix(".json"), r["method"], "nvidia-smi",
                        smi, expected, 100 * (expected - smi) / smi, int(r["effective_seq_len"]), "", "", r["src"],
                        range_gb=(0.0, b.peak_gb_high), in_range=b.peak_gb_high >= smi, phase=b.peak_phase))  # fmt: skip
    return rows

def fit_untracked(**constants) -> float:
    """overhead.UNTRACKED_GB: the least (to 0.1 GiB) that lifts the verdict's figure over at least
    ``UNTRACKED_COVERAGE`` of the single-GPU nvidia-smi readings (multi-GPU readings add NCCL, modelled apart)."""
    rows = [r for r in published_rows() if SMI.search(r["notes"]) and r["gpus"] == "1"]
    gaps = []
    for r in rows:
        b = estimate(published_setup(r), **constants)
        gaps.append(int(SMI.search(r["notes"]).group(1)) / 1024 - (b.peak_reserved_gb_range[1] + b.cuda_context_gb))
    gaps.sort()
    covered = math.ceil(overhead.UNTRACKED_COVERAGE * len(gaps))  # readings at or under the verdict's figure
    return max(0.0, math.ceil(gaps[covered - 1] * 10) / 10)

def validate_loso() -> tuple[list[Row], list]:
    """Every published row with its leave-one-source-out estimate and range, and the per-source scores."""
    by_frac = {f: validate_published(frag=f) for f in overhead.FRAG_GRID}
    loso_rows, scores = calibration.loso(by_frac)
    done = {r.id for r in loso_rows}
    rest = [r for r in validate_published() if r.id not in done]  # excluded rows, at the shipped constants
    order = {r["id"]: i for i, r in enumerate(published_rows())}
    return sorted(loso_rows + rest, key=lambda r: order[r.id]), scores

def validate_runs(runs: list[Run]) -> list[Row]:
    """Every ok run: CPU resident vs cpu_rss_delta, allocated vs cuda_allocated (and reserved if recorded)."""
    rows = []
    for run in runs:
        if run.status != "ok":
            continue
        if run.method in ("grpo", "dpo"):  # the whole setup: generation / reference phases (advisor/memory/rl.py)
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

def rl_memory_rows(run: Run):
    """advisor.validate.memory Rows for a grpo/dpo run: the whole setup's peak against the record's."""
    name = f"{run.method}({run.inner or 'lora'})"
    measured, kind = run.peak_memory_gb, run.memory_kind
    setup, obj, _, why = run_workload(run, for_memory=True)
    if setup is None or measured is None or kind not in ("cpu_rss_delta", "cuda_allocated"):
        why = why or ("no peak_memory_gb" if measured is None else f"memory_kind '{kind}' unknown")
        return [Row(run.run_id, run.model_name, name, str(kind), measured, None, None, None, "", why)]
    est = estimate_setup(setup, obj)
    note = f"{obj.name}: peak in the {est.peak_phase.name} phase; reference {est.reference}"
    if obj.name == "grpo":
        note += f"; {est.generation_batch} × ({setup.seq_len} prompt + {obj.max_completion_len}) generated"
    pairs = [("cpu_rss_delta", measured, est.cpu_resident_gb)] if kind == "cpu_rss_delta" else [("cuda_allocated", measured, est.peak_allocated_gb)]
    reserved = run.metrics.get("peak_reserved_gb")
    if kind == "cuda_allocated" and isinstance(reserved, (int, float)) and reserved > 0:
        pairs.append(("cuda_reserved", float(reserved), est.peak_reserved_gb))
    seq = setup.seq_len + (obj.max_completion_len if obj.name == "grpo" else 0)
    return [Row(run.run_id, run.model_name, name, metric, m, p, 100 * (p - m) / m, seq, note) for metric, m, p in pairs]

def estimate_record(record: dict) -> tuple[float | None, str]:
    """The advisor's estimate of the peak a harness record measured, of the same kind (CPU resident vs
    ``cpu_rss_delta``, allocated vs ``cuda_allocated``), or (None, why not).

    The one harness → advisor translation of a record: ``evidence.run_from_record`` reads it, and the
    estimate is the one ``advisor validate`` scores (GRPO/DPO: the whole setup's peak phase).
    """
    try:
        run = run_from_record(record)
    except (KeyError, TypeError, ValueError, AttributeError, AdvisorError) as e:
        return None, f"not a record the advisor can read ({type(e).__name__}: {e})"
    rows = validate_runs([run])
    if not rows:
        return None, f"status '{run.status}': no peak to estimate"
    return rows[0].predicted_gb, rows[0].excluded  # the measured kind first; cuda_reserved, if any, follows

KNOWN = ("allocated", "reserved")

def fit() -> dict:
    """The fitted CUDA constants from the published rows: FRAG (the grid, on the reserved rows and the
    nvidia-smi readings) and the range (the extreme residuals over every scored row at that FRAG)."""
    by_frac = {f: validate_published(frag=f) for f in overhead.FRAG_GRID}
    frac = calibration.best_frac({f: calibration.scored(rs) for f, rs in by_frac.items()})
    ranges = calibration.fit_range(by_frac[frac])
    untracked = fit_untracked(frag=frac, ranges=ranges)
    return {"mape_pct": mape(by_frac[frac], metrics=KNOWN), "FRAG": frac, "RANGES": ranges, "UNTRACKED_GB": untracked}

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
