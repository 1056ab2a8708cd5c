"""The simulated step's operators priced on a GPU from its datasheet: a roofline per operator.

Each operator (``ops.Op``) takes the larger of its FLOPs at the sustained compute rate and its
bytes at the sustained memory bandwidth, plus the gap the device leaves between two kernels; the
host issues each operator in eager PyTorch, and a step cannot run faster than the host issues it.
Peak FLOP/s and bandwidth are the card's datasheet figures (``advisor.facts.GPUS``). The
sustained fractions are published measurements, not fitted to any throughput row:

- matmuls: the card's Maximum Achievable Matmul FLOPS (best shape, bf16, no sparsity) over its
  peak, from S. Bekman's *ml-engineering* MAMF table: A100 SXM 85.9%, A100 PCIe 82.2%, GH200
  83.0%, H100 SXM 80.1% (H100/H200 SXM 80.3% in its later table). The slow end is the lowest
  efficiency in that table (MI300X, 60.1%): a training step's shapes are not the best shape. A
  card the table does not list spans the whole table (60.1%–85.9%);
- attention kernels: FlashAttention-2 (Dao 2023) reaches 50–73% of A100's peak forward and
  ~35% on H100 (FlashAttention-3 paper): 35%–73%. A causal kernel (``attention='flash'``: packed
  sequences, no padding mask) skips the blocks above the diagonal: half the FLOPs; with the
  harness's padding mask transformers runs SDPA's masked kernel, which computes every block;
- memory-bound kernels (elementwise, reductions, casts, the optimizer): 70%–90.6% of the
  datasheet bandwidth (90.6%: a measured 4 GiB device copy on an H100-class card; eager
  elementwise kernels on mid-sized tensors reach less);
- fp32 matmuls (``--precision fp32``) at half the bf16 tensor rate (TF32 on Ampere, Ada, Hopper);
- host: 4.2 µs to issue one operator from Python (measured, same source as the copy), up to 10 µs
  with transformers' module hooks and autograd's bookkeeping; device: 1.28 µs between two kernels
  (measured inside a replayed CUDA graph).

``torch.compile`` (``compile``: the torchtune rows; the model and loss, forward and backward, not
the optimizer): Inductor fuses each run of memory-bound operators between two matmul/attention
kernels into one kernel, which reads each tensor from outside the run once and writes only what
is read after the run (saved for backward, the next matmul's input) or updated in place;
intermediates stay on chip. A custom operator (bitsandbytes' dequantize) is opaque to Inductor: it
runs as its own kernel and ends the run. Matmuls and attention are unchanged (``fused``).

Range: ``low`` = fast rates, host issue overlapped with the device (max of the two sums);
``high`` = slow rates, and every operator waits for whichever of host and device is slower
(a host-bound operator is not hidden). The point estimate is their geometric mean, as the
analytic model's (``advisor.speed.step``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from advisor.speed.step import StepTime

MAMF = {"A100-80GB": 0.859, "A100-40GB": 0.859, "H100": 0.801, "H200": 0.803}
MAMF_TABLE = (0.601, 0.859)  # lowest and highest efficiency in the published table
ATTENTION = (0.35, 0.73)
BANDWIDTH = (0.70, 0.906)
FP32_MATMUL = 0.5  # TF32 tensor rate / bf16 tensor rate
HOST_OP_S = (4.2e-6, 10e-6)
KERNEL_GAP_S = 1.28e-6


@dataclass(frozen=True)
class Rates:
    gemm: float  # fraction of the bf16 peak
    attention: float
    bandwidth: float  # fraction of the datasheet bandwidth
    host_s: float


def rates(gpu_name: str | None, fast: bool) -> Rates:
    lo, hi = MAMF_TABLE
    gemm = MAMF.get(gpu_name or "", hi) if fast else lo
    i = 1 if fast else 0
    return Rates(gemm, ATTENTION[i], BANDWIDTH[i], HOST_OP_S[0 if fast else 1])


def op_device_s(op, dev, r: Rates, *, causal: bool) -> float:
    """One kernel on the device: the larger of its compute and memory time, plus the inter-kernel gap."""
    bw = dev.bandwidth * r.bandwidth
    if op.kind == "matmul":
        rate = dev.peak_flops * r.gemm * (1.0 if op.low_precision else FP32_MATMUL)
    elif op.kind == "attention":
        rate = dev.peak_flops * r.attention
    else:
        return op.bytes / bw + KERNEL_GAP_S
    flops = op.flops * (0.5 if causal and op.kind == "attention" else 1.0)
    return max(flops / rate, op.bytes / bw) + KERNEL_GAP_S


def phase_s(ops, dev, r: Rates, *, causal: bool, overlap: bool) -> float:
    dev_s = [op_device_s(op, dev, r, causal=causal) for op in ops]
    if overlap:
        return max(sum(dev_s), r.host_s * len(ops))
    return sum(max(d, r.host_s) for d in dev_s)


def fused(ops: list) -> list:
    """The operators as Inductor runs them: each run of memory-bound ones becomes one kernel (see above)."""
    from advisor.simulate.ops import Op

    last_read: dict = {}
    for i, op in enumerate(ops):
        for k, _ in op.reads:
            last_read[k] = i
    out: list = []
    run: list = []

    def flush(end: int) -> None:
        if not run:
            return
        external: dict = {}
        made: set = set()
        for op in run:
            for k, b in op.reads:
                if k not in made:
                    external[k] = max(external.get(k, 0), b)
            made.update(k for k, _ in op.writes)
        kept: dict = {}
        for op in run:
            for k, b in op.writes:
                if last_read.get(k, -1) > end or k in external:
                    kept[k] = max(kept.get(k, 0), b)
        out.append(Op("fused", "memory", 0.0, float(sum(external.values()) + sum(kept.values())), run[0].phase))
        run.clear()

    for i, op in enumerate(ops):
        if op.kind == "memory" and op.name.startswith("aten."):  # a custom op (bitsandbytes') is opaque to Inductor
            run.append(op)
        else:
            flush(i - 1)
            out.append(op)
    flush(len(ops) - 1)
    return out


@dataclass(frozen=True)
class Priced(StepTime):
    """The analytic step time's fields (seconds, range, tokens), and where the time went."""

    compute_s: float  # matmul + attention time at the fast rates (what MFU measures)
    memory_s: float  # memory-bound kernels at the fast rates
    host_s: float  # issuing every operator at the fast host rate
    kernels: int  # per optimizer step


def price(ops, dev, *, gpu_name: str | None, grad_accum: int, tokens: float, causal: bool, optimizer_shards: int = 1,
          compile: bool = False) -> Priced:  # fmt: skip
    """Step time of ``grad_accum`` micro-batches and one optimizer step on ``dev`` (``speed.step.Rates``);
    ``optimizer_shards``: FSDP ranks, each stepping 1/N of the parameters."""
    micro = [op for op in ops if op.phase == "micro"]
    micro = fused(micro) if compile else micro
    optim = [op for op in ops if op.phase == "optimizer"]

    def step(fast: bool) -> float:
        r = rates(gpu_name, fast)
        kw = dict(causal=causal, overlap=fast)
        return grad_accum * phase_s(micro, dev, r, **kw) + phase_s(optim, dev, r, **kw) / optimizer_shards

    lo, hi = step(True), step(False)
    r = rates(gpu_name, True)
    split = {k: sum(op_device_s(op, dev, r, causal=causal) for op in micro if (op.kind == "memory") == (k == "memory"))
             for k in ("compute", "memory")}  # fmt: skip
    n = grad_accum * len(micro) + len(optim)
    return Priced(math.sqrt(lo * hi), lo, hi, tokens, grad_accum * split["compute"], grad_accum * split["memory"],
                  n * r.host_s, n)  # fmt: skip
