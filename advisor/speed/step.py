"""Time of a training step from what the hardware has to do, as a range.

A step is priced by mechanism, each at the rate the device sustains for that kind of work:
- every matmul (base linears, LoRA's skinny A/B, the LM head) by a roofline: the larger of its
  FLOPs at the achievable tensor-core rate and its bytes at the memory bandwidth. Small batches
  re-read every weight for few tokens and fall to the bandwidth line, which is why MFU falls at
  short sequences and small batches; a frozen base skips the weight-gradient matmul (4N, not 6N);
  gradient checkpointing re-runs each layer's forward once (+2N);
- attention's QKᵀ and AV (causal, so flash/SDPA kernels skip half) at a lower achievable rate;
- elementwise work (norms, RoPE, SiLU, residuals, dropout, casts) as memory traffic: each byte
  autograd saves (``memory.layer_activation_bytes``) is written in forward and read in backward,
  and its gradient written and read: 4 passes; the logits and their log-softmax the same way;
- QLoRA: every pass over a 4-bit weight first dequantizes it (read 0.5 B, write the compute dtype);
- DoRA (peft ≥ 0.14): every forward recomputes ‖W + BA‖ over the full weight, and with dropout > 0
  runs the base matmul a second time on the dropped-out input (and its input gradient in backward);
- the optimizer step as memory traffic over the trainable parameters (AdamW: read p, g, m, v; write
  p, m, v), once per optimizer step;
- per-op host overhead: eager PyTorch launches every op from Python (~40 per decoder layer in
  forward, twice that in backward, ~6 more per LoRA-adapted module), which bounds small models.

The range comes from the device's uncertain sustained rates (``Rates``: a GPU's from its datasheet, or this CPU's measured), not from a fitted MFU:
``low`` uses the fast end of every rate, ``high`` the slow end; the point is their geometric mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from advisor.facts import Gpu
from advisor.memory.activations import layer_activation_bytes, logits_bytes_per_element
from advisor.memory.setup import Setup
from advisor.memory.state import optimizer_bytes

# Sustained fractions of the datasheet (low, high): cuBLAS bf16 GEMMs reach 60-85% of the dense
# peak on large shapes (A100: ~250 of 312 TFLOP/s); flash attention 35-60% (FlashAttention-2
# paper: 50-73% forward, lower backward); streaming kernels 60-90% of the bandwidth.
GPU_GEMM = (0.60, 0.85)
GPU_ATTN = (0.35, 0.60)
GPU_STREAM = (0.60, 0.90)
GPU_OP_S = (5e-6, 15e-6)  # host time per eager op: dispatch + launch (≈5 µs launch, Python on top)
# CPU: the peak is the harness's own measured 1024³ matmul (record metric peak_tflops), so GEMMs
# of that size run at ~1.0 of it; smaller or skinnier ones less. DRAM bandwidth for the few cores
# a run uses is not measured: 5-20 GB/s per run of 1-4 threads on a server CPU (assumed).
CPU_GEMM = (0.70, 1.00)
CPU_ATTN = (0.30, 0.60)
CPU_STREAM_PER_THREAD = (2.5e9, 10e9)
CPU_OP_S = (10e-6, 40e-6)  # aten dispatch + oneDNN primitive lookup per op

OPS_PER_LAYER = 40  # eager HF Llama decoder layer forward: 2 RMSNorm (~6 each), 7 linears, RoPE (~10), SDPA, reshapes, SiLU·up, 2 adds
OPS_PER_ADAPTER = 6  # peft LoRA: dropout, (cast), A, B, × scaling, add
OPS_PER_DORA = 12  # + eye matmuls for BA, W + BA, norm, divide, the extra base matmul, scale
COMPILE_OPS = 0.25  # torch.compile fuses elementwise chains: ~4× fewer launches


@dataclass(frozen=True)
class Rates:
    """What the processor a step runs on sustains: not a GPU type (that is ``facts.Gpu``) but the rates
    the time model prices work at, from a card's datasheet (``gpu_rates``) or a CPU measurement."""

    name: str
    peak_flops: float  # dense bf16 tensor peak (GPU datasheet) or the measured matmul peak (CPU)
    bandwidth: float  # bytes/s
    gemm: tuple[float, float]
    attn: tuple[float, float]
    stream: tuple[float, float]
    op_s: tuple[float, float]
    basis: str


def gpu_rates(card: Gpu, tflops_basis: str = "") -> Rates:
    """The sustained rates of one GPU, from its datasheet (``facts.Gpu``: bf16 peak and bandwidth)."""
    basis = f"{card.bf16_tflops:g} TFLOP/s bf16 ({tflops_basis or 'datasheet'}), {card.bandwidth / 1e9:.0f} GB/s"
    return Rates(card.name, card.bf16_tflops * 1e12, card.bandwidth, GPU_GEMM, GPU_ATTN, GPU_STREAM, GPU_OP_S, basis)


def cpu_rates(peak_tflops: float, threads: int = 2) -> Rates:
    bw = CPU_STREAM_PER_THREAD[1] * max(1, threads)
    lo, hi = CPU_STREAM_PER_THREAD
    return Rates("CPU", peak_tflops * 1e12, bw, CPU_GEMM, CPU_ATTN, (lo / hi, 1.0), CPU_OP_S,
                  f"measured matmul peak {peak_tflops * 1e3:.0f} GFLOP/s, {threads} threads, assumed {lo / 1e9:g}-{hi / 1e9:g} GB/s per thread")  # fmt: skip


@dataclass
class Work:
    """One (micro-)step's work, split by the rate it runs at; seconds are computed per assumption."""

    gemm: list  # (flops, bytes) per matmul call, summed over calls of the same shape
    attn_flops: float = 0.0
    stream_bytes: float = 0.0
    ops: float = 0.0

    def seconds(self, dev: Rates, fast: bool) -> float:
        i = 1 if fast else 0  # ranges are (slow, fast) for rates, (fast, slow) for overheads
        rate, attn, bw = dev.peak_flops * dev.gemm[i], dev.peak_flops * dev.attn[i], dev.bandwidth * dev.stream[i]
        t = sum(max(f / rate, b / bw) for f, b in self.gemm)
        return t + self.attn_flops / attn + self.stream_bytes / bw + self.ops * dev.op_s[0 if fast else 1]

    def add(self, other: "Work", times: float = 1.0) -> "Work":
        self.gemm += [(f * times, b * times) for f, b in other.gemm]
        self.attn_flops += other.attn_flops * times
        self.stream_bytes += other.stream_bytes * times
        self.ops += other.ops * times
        return self


def _matmul(m: float, k: int, n: int, a: int, weight_bytes: float | None = None) -> tuple[float, float]:
    """FLOPs and bytes of (m×k)·(k×n): inputs, weight and output each moved once."""
    wb = a if weight_bytes is None else weight_bytes
    return 2 * m * k * n, a * m * k + wb * k * n + a * m * n


def forward_work(s: Setup, tokens: float, ctx: float, *, scored: float | None = None, grad: bool = True,
                 adapters: bool = True, kv_read: float = 0.0) -> Work:  # fmt: skip
    """One forward over ``tokens`` tokens at context ``ctx``; with ``grad`` also its backward.

    ``scored``: positions that get logits (default all); ``adapters``: False for PEFT's reference
    forward (adapters off); ``kv_read``: KV-cache tokens each decode token attends to (generation)."""
    arch, a = s.arch, s.act_bytes
    scored = tokens if scored is None else scored
    full, qlora, dora = not s.adapted, s.method == "qlora", s.method == "dora"
    mods = set(s.target_modules) if adapters else set()
    ad = s.adapter_bytes
    w = Work([])
    # passes over the frozen/trained base weights: forward, backward input-grad, (+ weight-grad), (+ recompute)
    fwd_passes = 1 + (1 if grad and s.grad_checkpointing else 0)
    bwd_passes = (2 if full else 1) if grad else 0
    passes = fwd_passes + bwd_passes
    wbytes = 0.5 if qlora else a
    for name, (d_in, d_out) in arch.linears().items():
        f, b = _matmul(tokens, d_in, d_out, a, wbytes)
        w.gemm.append((f * passes * arch.layers, b * passes * arch.layers))
        if qlora:  # dequantize before each matmul: read NF4, write the compute dtype
            w.stream_bytes += (0.5 + a) * d_in * d_out * (fwd_passes + (1 if grad else 0)) * arch.layers
        if name not in mods:
            continue
        r = s.rank
        fa, ba = _matmul(tokens, d_in, r, ad)
        fb, bb = _matmul(tokens, r, d_out, ad)
        lp = fwd_passes + (2 if grad else 0)  # adapters train: input and weight grads
        w.gemm.append(((fa + fb) * lp * arch.layers, (ba + bb) * lp * arch.layers))
        w.stream_bytes += (3 * ad * d_in + 3 * a * d_out) * tokens * (fwd_passes + (1 if grad else 0)) * arch.layers  # dropout/cast in, scale+add out
        if dora:
            # ‖W + s·BA‖ per forward: BA via eye (2·d_in·r·(d_in + d_out)), then W + BA and its norm over d_in·d_out
            w.gemm.append((2 * d_in * r * (d_in + d_out) * fwd_passes * arch.layers, 3 * a * d_in * d_out * fwd_passes * arch.layers))
            if s.lora_dropout > 0 and grad:  # peft recomputes the base matmul on the dropped-out input
                w.gemm.append((f * (fwd_passes + 1) * arch.layers, b * (fwd_passes + 1) * arch.layers))
    # attention: QKᵀ and AV, 4·T·ctx·q_dim per layer forward, causal halves it (tokens attend to half the context)
    causal = 0.5 if kv_read == 0 else 1.0
    attn = 4 * tokens * max(ctx, kv_read) * arch.q_dim * causal * arch.layers
    w.attn_flops += attn * (fwd_passes + (2.5 if grad else 0))  # flash backward ≈ 2.5× its forward
    if kv_read:
        w.stream_bytes += tokens * kv_read * 2 * arch.kv_dim * a * arch.layers  # read the cache
    # elementwise traffic: saved activations written + read, their grads written + read
    act = layer_activation_bytes(s if adapters else replace(s, lora_dropout=0.0)) * tokens * arch.layers
    w.stream_bytes += act * ((4 + (2 if s.grad_checkpointing else 0)) if grad else 1)
    # LM head over the scored positions, and the loss over its logits
    trains_head = full or "lm_head" in mods
    fh, bh = _matmul(scored, arch.hidden, arch.vocab, a)
    hp = 1 + ((2 if trains_head else 1) if grad else 0)
    w.gemm.append((fh * hp, bh * hp))
    w.stream_bytes += scored * arch.vocab * (logits_bytes_per_element(s) + a) * (2 if grad else 1)
    # host overhead
    n_ad = len(mods - {"lm_head"})
    per_layer = OPS_PER_LAYER + n_ad * (OPS_PER_DORA if dora else OPS_PER_ADAPTER) + (7 if qlora else 0)
    w.ops += arch.layers * per_layer * (fwd_passes + (2 if grad else 0)) * (COMPILE_OPS if s.compile else 1)
    return w


def optimizer_work(s: Setup) -> Work:
    """AdamW over the trainable parameters: read p, g, m, v; write p, m, v (+ the grad-norm read)."""
    from advisor.memory.state import adapter_params

    arch = s.arch
    if s.adapted:
        n, pb, tensors = adapter_params(s), s.adapter_bytes, 2 * len(s.target_modules) * arch.layers
    else:
        n, pb, tensors = arch.total_params, s.weight_bytes, 9 * arch.layers + 2
    states = optimizer_bytes(s.optimizer, pb)
    w = Work([], stream_bytes=n * (4 * pb + 2 * states) / s.gpus)
    foreach = s.device != "cpu" or s.fused_optimizer
    w.ops = tensors * (1 if foreach else 12) / (16 if foreach else 1) + 20  # foreach: ~16 tensors per launch
    return w


@dataclass(frozen=True)
class StepTime:
    seconds: float  # point estimate (geometric mean of the two ends)
    low: float
    high: float
    tokens: float  # tokens counted per optimizer step (as the harness counts them)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def tokens_per_s_range(self) -> tuple[float, float]:
        return self.tokens / self.high, self.tokens / self.low


def _finish(w: Work, dev: Rates, tokens: float) -> StepTime:
    lo, hi = w.seconds(dev, True), w.seconds(dev, False)
    return StepTime(math.sqrt(lo * hi), lo, hi, tokens)


def sft_step(s: Setup, dev: Rates, *, mean_len: float | None = None) -> StepTime:
    """One optimizer step of supervised training: grad_accum micro-batches of batch × seq_len
    (padded) tokens; ``mean_len`` = the non-padding tokens per example that the harness counts."""
    tokens = s.batch_size * s.seq_len
    w = Work([]).add(forward_work(s, tokens, s.seq_len), s.grad_accum).add(optimizer_work(s))
    return _finish(w, dev, s.batch_size * (mean_len or s.seq_len) * s.grad_accum)


def dpo_step(s: Setup, dev: Rates, *, mean_len: float | None = None) -> StepTime:
    """``s.batch_size`` pairs per micro-batch: a no-grad reference forward of the 2B sequences
    (PEFT: adapters off), then the policy's forward and backward on them."""
    seqs = 2 * s.batch_size
    t = seqs * s.seq_len
    micro = forward_work(s, t, s.seq_len).add(forward_work(s, t, s.seq_len, grad=False, adapters=False))
    w = Work([]).add(micro, s.grad_accum).add(optimizer_work(s))
    return _finish(w, dev, seqs * (mean_len or s.seq_len) * s.grad_accum)


def grpo_step(s: Setup, dev: Rates, *, completion: int, beta: float = 0.04, prompt_mean: float | None = None,
              completion_mean: float | None = None) -> StepTime:  # fmt: skip
    """``s.batch_size`` completions per micro-batch of ``s.seq_len`` prompt tokens: generate the
    generation batch (prefill, then one decode step per completion token, each re-reading the
    weights and the KV cache), the reference forward (β > 0), then train on the scored completions."""
    gen = s.batch_size * s.grad_accum
    p = s.seq_len
    total = p + completion
    w = forward_work(s, gen * p, p, scored=gen, grad=False)  # prefill: logits of the last position only
    for step in range(completion):  # decode: every weight read once per generated token
        w.add(forward_work(s, gen, 1, scored=gen, grad=False, kv_read=p + step))
    w.ops += completion * 20  # sampling: softmax, multinomial, stopping checks per decode step
    micro = forward_work(s, s.batch_size * total, total, scored=s.batch_size * (completion + 1))
    if beta > 0:
        micro.add(forward_work(s, s.batch_size * total, total, scored=s.batch_size * (completion + 1), grad=False, adapters=False))
    w.add(micro, s.grad_accum).add(optimizer_work(s))
    counted = gen * ((prompt_mean or p) + (completion_mean or completion))
    return _finish(w, dev, counted)


def step_time(s: Setup, objective, dev: Rates, **measured) -> StepTime:
    """The one dispatch from an objective (``memory.rl.Objective``: sft, grpo, dpo) to its step time.

    ``measured`` carries what a harness record knows (mean lengths) to the step functions."""
    if objective.name == "grpo":
        return grpo_step(s, dev, completion=objective.max_completion_len, beta=objective.beta, **measured)
    if objective.name == "dpo":
        return dpo_step(s, dev, **measured)
    return sft_step(s, dev, **measured)


def on_gpu(s: Setup, objective, gpu) -> tuple[StepTime, Rates] | None:
    """One optimizer step of ``s`` on one GPU of the budget ``gpu`` (``inputs.catalog.GpuBudget``),
    with the rates it was priced at; None without a GPU."""
    if gpu is None:
        return None
    dev = gpu_rates(gpu.card, gpu.tflops_basis)
    return step_time(s, objective, dev), dev
