"""The time model against measured tokens/s, and the GRPO/DPO memory model against harness runs.

Time rows: every published row with a tokens/s figure (advisor/data/published_throughput.csv)
and every ok harness run with ``tokens_per_s``, each priced on its own device (a GPU from the
catalog: datasheet peak and bandwidth; a CPU: the run's own measured matmul peak). Tokens are
counted as the source counts them: non-padding tokens (SFT), chosen + rejected (DPO), prompt +
completion (GRPO, the harness's ``tokens_counted``). The error is the point estimate's; a row
whose measurement falls inside the predicted range says so.

Sequence lengths: a record keeps the mean non-padding length; batches are padded to their longest
example, which for the harness's tasks is ≈ mean × (1 + 0.072·ln n) for the longest of n
examples (advisor/inputs/harness_runs.py's PEAK_LEN_SPREAD): n = the batch for the typical step's time, n =
every example seen for the peak's memory.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, replace

from advisor.facts import gpu_for_device_name
from advisor.facts import BUSY_ELSEWHERE, GPUS
from advisor.inputs import DATA
from advisor.inputs.catalog import resolve_model
from advisor.inputs.harness_runs import PEAK_LEN_SPREAD, Run
from advisor.memory.rl import Objective
from advisor.memory.setup import setup_for_run
from advisor.memory.setup import Setup
from advisor.speed.step import cpu_rates, gpu_rates, sft_step, step_time


@dataclass(frozen=True)
class TimeRow:
    id: str
    model: str
    method: str
    device: str
    seq_len: float | None  # padded tokens per sequence the step was priced at
    measured_tps: float | None
    predicted_tps: float | None
    low_tps: float | None
    high_tps: float | None
    error_pct: float | None
    note: str = ""
    excluded: str = ""

    @property
    def in_range(self) -> bool:
        return None not in (self.low_tps, self.measured_tps) and self.low_tps <= self.measured_tps <= self.high_tps

    def to_dict(self) -> dict:
        return asdict(self) | {"in_range": self.in_range}


def _padded(mean: float, n: float, cap: int) -> int:
    return min(cap, math.ceil(mean * (1 + PEAK_LEN_SPREAD * math.log(max(1.0, n)))))


def _row(rid, model, method, device, seq, measured, st, note="") -> TimeRow:
    lo, hi = st.tokens_per_s_range
    err = 100 * (st.tokens_per_s - measured) / measured
    return TimeRow(rid, model, method, device, seq, measured, st.tokens_per_s, lo, hi, err, note)


# ---------------------------------------------------------------- published


def published_rows() -> list[dict]:
    text = (DATA / "published_throughput.csv").read_text()
    return list(csv.DictReader(text.splitlines()))


def published_setup(r: dict) -> tuple:
    """(model, GPU, Setup, tokens counted per sequence) of one published throughput row."""
    model = resolve_model(r["model"])
    g = GPUS[r["gpu_catalog"]]
    fw = {"fused_optimizer": True} if r["framework"] == "torchtune" else {}
    s = Setup(
        arch=model.arch, method=r["method"], rank=int(r["rank"] or 16), targets=r["targets"] or "all-linear",
        batch_size=int(r["batch"]), seq_len=int(r["effective_seq_len"]), grad_checkpointing=r["grad_ckpt"] == "yes",
        optimizer=r["optimizer"], adapter_dtype=r["adapter_dtype"] or "auto", lora_dropout=float(r["lora_dropout"] or 0),
        loss=r["loss"], optimizer_in_backward=r["optimizer_in_bwd"] == "yes", compile=r["compile"] == "yes",
        attention=r.get("attention") or "sdpa", checkpointing=r.get("checkpointing") or "", **fw,
    )  # fmt: skip
    return model, g, s, float(r.get("mean_len") or s.seq_len)


def published_time_rows() -> list[TimeRow]:
    rows = []
    for r in published_rows():
        model, g, s, mean_len = published_setup(r)
        st = sft_step(s, gpu_rates(g), mean_len=mean_len)
        label = r["method"] + (f" r{r['rank']}" if r["rank"] else "")
        row = _row(r["id"], model.name, label, g.name, s.seq_len, float(r["tokens_per_s"]), st, r["seq_len_note"])
        rows.append(replace(row, excluded=r.get("time_excluded") or ""))
    return rows


# ---------------------------------------------------------------- harness runs


def run_device(run: Run):
    """The run's device for the time model, or None when it cannot be priced."""
    if run.device == "cpu":
        peak = run.metrics.get("peak_tflops")
        if not isinstance(peak, (int, float)) or peak <= 0:
            return None
        return cpu_rates(float(peak), int(run.hardware.get("torch_threads") or 1))
    g = gpu_for_device_name(run.device_name)  # the card the harness's MFU also divided by
    return None if g is None else gpu_rates(g)


def _inner(run: Run) -> Run:
    """A grpo/dpo run as the supervised run of its inner method (what trains)."""
    return replace(run, method=run.inner or "lora")


def run_workload(run: Run, *, for_memory: bool) -> tuple[Setup | None, Objective | None, dict, str]:
    """(setup, objective, extras, why-not) for a run: the padded lengths for its peak (memory) or
    its typical step (time); extras carry the counted lengths."""
    m = run.metrics
    mean = m.get("mean_seq_len")
    seen = (m.get("steps") or 1) * run.batch_size * run.grad_accum
    if run.method == "grpo":
        opts = run.options
        comp_max = int(opts.get("max_completion_length") or 0)
        comp_mean = m.get("completion_length")
        if not (mean and comp_max and comp_mean):
            return None, None, {}, "grpo record without mean_seq_len, completion_length or max_completion_length"
        prompt_mean = mean - comp_mean
        prompt = _padded(prompt_mean, seen if for_memory else run.batch_size, run.max_seq_len)
        setup, why = setup_for_run(replace(_inner(run), metrics={"max_batch_seq_len": prompt}))
        obj = Objective("grpo", int(opts.get("num_generations") or 2), comp_max, float(opts.get("beta", 0.04)))
        return setup, obj, {"prompt_mean": prompt_mean, "completion_mean": comp_mean}, why
    if run.method == "dpo":
        if not mean:
            return None, None, {}, "dpo record without mean_seq_len"
        per_seq = mean / 2  # the harness counts chosen + rejected tokens per pair
        seq = _padded(per_seq, 2 * (seen if for_memory else run.batch_size), run.max_seq_len)
        setup, why = setup_for_run(replace(_inner(run), metrics={"max_batch_seq_len": seq}))
        return setup, Objective("dpo"), {"mean_len": per_seq}, why
    if for_memory:
        setup, why = setup_for_run(run)
        return setup, Objective("sft"), {}, why
    if not mean:
        return None, None, {}, "no mean_seq_len recorded"
    seq = _padded(mean, run.batch_size, run.max_seq_len)
    setup, why = setup_for_run(replace(run, metrics={"max_batch_seq_len": seq}))
    return setup, Objective("sft"), {"mean_len": mean}, why


def harness_time_rows(runs: list[Run]) -> list[TimeRow]:
    rows = []
    for run in runs:
        measured = run.tokens_per_s
        if run.status != "ok" or not measured:
            continue
        name = run.method + (f"({run.inner})" if run.method in ("grpo", "dpo", "fsdp") and run.inner else "")
        dev = run_device(run)
        setup, obj, extra, why = run_workload(run, for_memory=False)
        if run.method == "fsdp":
            why = "FSDP: the ranks' collectives (gloo on CPU) are outside the single-device time model"
        if dev is None and not why:
            why = f"device '{run.device_name}' unknown to the time model (no peak)"
        busy = run.metrics.get("cpu_busy_elsewhere")
        if not why and isinstance(busy, (int, float)) and busy > BUSY_ELSEWHERE:
            why = f"measured while other processes used {100 * busy:.0f}% of the CPUs"
        if setup is None or dev is None or why:
            rows.append(TimeRow(run.run_id, run.model_name, name, run.device_name or run.device, None, measured, None, None, None, None, "", why))
            continue
        st = step_time(setup, obj, dev, **extra)
        rows.append(_row(run.run_id, run.model_name, name, dev.name,
                         setup.seq_len, measured, st))  # fmt: skip
    return rows


