"""The analytic memory model (advisor.memory.estimate) against the simulated step (advisor.simulate), config by config.

    python benchmarks/estimator_vs_simulation.py              # run what is not cached yet, print the table
    python benchmarks/estimator_vs_simulation.py --table-only # the table from the cache
    python benchmarks/estimator_vs_simulation.py --markdown docs/estimator_vs_simulation.md

What is compared: the peak *allocated* bytes of one supervised step, analytic vs simulated, for the
same setup. The simulator runs the harness's step on fake CPU tensors, so the analytic side is asked
for that step too (``device="cpu"`` in bf16: CPU AdamW loops per tensor instead of CUDA's foreach copy;
the CPU runtime constant, which is resident-set bookkeeping and not a tensor, is left out).

Layers: each model is simulated with ``LAYERS`` decoder layers and its real widths, vocabulary,
attention and MLP/MoE structure; the analytic model is given the same ``Arch`` with ``layers=LAYERS``.
This is exact for what is compared (both sides count the same model), and fast: a simulation's cost
grows with the number of operators, i.e. with the layers. The full-depth figures differ from these by
(layers − LAYERS) × the per-layer terms both sides count the same way.

The grid: ≥ 10 architectures × every SFT method × checkpointing none/full/selective, with batch
1-16 and sequence 512-32k sampled (seeded) so that each (architecture, method, checkpointing) gets
two points; several GPUs (FSDP) when the simulator has a sharded path. Results are cached in
``benchmarks/estimator_vs_simulation.json`` (one entry per configuration, written as each finishes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "benchmarks" / "estimator_vs_simulation.json"  # not under results/: validate reads run records there
LAYERS = 2
TOLERANCE = 0.10
# (model, what it exercises). Catalog names, or advisor/data/configs/<name>.json.
ARCHS = [
    ("Llama-3.1-8B", "GQA 4:1, 128k vocabulary"),
    ("Llama-2-7B", "MHA, 32k vocabulary"),
    ("Qwen2.5-7B", "GQA 7:1, q/k/v biases, 152k vocabulary"),
    ("Mistral-7B", "GQA, 32k vocabulary"),
    ("configs/gemma-2b.json", "Gemma: MQA, head_dim 256, tied, 256k vocabulary"),
    ("Gemma-3-1B", "Gemma 3: MQA, tied, 262k vocabulary"),
    ("Phi-4", "Phi-3 family: fused qkv_proj and gate_up_proj, 100k vocabulary"),
    ("configs/phi-1.5.json", "Phi: parallel attention, LayerNorm, GELU MLP, biases"),
    ("configs/SantaCoder-1.1B.json", "GPT-BigCode: MQA, learned positions"),
    ("SmolLM2-135M", "small, tied embeddings"),
    ("Qwen3-1.7B", "Qwen3: q/k norms, tied, 152k vocabulary"),
    ("Mixtral-8x7B", "MoE: 8 experts, 2 active"),
    ("gpt-oss-20b", "MoE: fused experts (gpt-oss), 201k vocabulary"),
    ("Qwen3-30B-A3B", "MoE: 128 experts, 8 active"),
]
METHODS = ("full", "lora", "qlora", "dora")
CHECKPOINTING = ("none", "full", "selective")
BATCHES = (1, 2, 4, 8, 16)
SEQS = (512, 1024, 2048, 4096, 8192, 16384, 32768)
POINTS = 2  # (batch, seq) pairs per (architecture, method, checkpointing)
GPUS = (2, 4, 8)
# the 2026 stack options: fused kernels (harness.kernels) and fused linear cross-entropy, each with the methods it
# changes, with and without checkpointing, on architectures whose layers differ where the kernels act (GQA/biases,
# Gemma's (1 + w) norms and GELU MLP, q/k norms, Phi-3's fused gate_up and partial RoPE, MoE shared/routed MLPs)
STACK_ARCHS = ("Llama-3.1-8B", "Qwen2.5-7B", "Gemma-3-1B", "Qwen3-1.7B", "Phi-4", "Mixtral-8x7B")
STACK_RUNS = (({"kernels": "liger"}, ("full", "lora")), ({"kernels": "unsloth", "loss": "fused"}, ("lora", "qlora")),
              ({"loss": "fused"}, ("lora",)))  # fmt: skip


def grid(seed: int = 22) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for model, _ in ARCHS:
        for method in METHODS:
            for ckpt in CHECKPOINTING:
                pairs = [(b, s) for b in BATCHES for s in SEQS if b * s <= 65536]
                for batch, seq in rng.sample(pairs, POINTS):
                    out.append({"model": model, "method": method, "checkpointing": ckpt, "batch": batch, "seq": seq, "gpus": 1})
    for model in ("Llama-3.1-8B", "Mistral-7B", "configs/gemma-2b.json", "Mixtral-8x7B"):  # sharded: FSDP full shard
        for method in ("full", "lora", "qlora"):
            for gpus in GPUS:
                batch, seq = rng.choice([(1, 2048), (2, 4096), (4, 1024), (8, 512)])
                out.append({"model": model, "method": method, "checkpointing": "full", "batch": batch, "seq": seq, "gpus": gpus})
    for model in STACK_ARCHS:
        for opts, methods in STACK_RUNS:
            for method in methods:
                for ckpt in ("none", "full"):
                    batch, seq = rng.choice([(1, 4096), (2, 2048), (4, 1024), (8, 512), (2, 8192)])
                    out.append({"model": model, "method": method, "checkpointing": ckpt, "batch": batch, "seq": seq, "gpus": 1, **opts})
    return out


def key(c: dict) -> str:
    stack = "".join(f"|{k}={c[k]}" for k in ("loss", "kernels") if k in c)  # the stack rows only: earlier keys unchanged
    return f"{c['model']}|{c['method']}|{c['checkpointing']}|b{c['batch']}|s{c['seq']}|g{c['gpus']}{stack}"


def model_and_config(name: str):
    from advisor.inputs import DATA
    from advisor.inputs.catalog import resolve_model
    from advisor.simulate import config_for, model_config

    if name.startswith("configs/"):
        path = DATA / name
        return resolve_model(str(path)), model_config.from_path(path)
    m = resolve_model(name)
    return m, config_for(m)


def shallow(arch, cfg: dict):
    """The same model with LAYERS decoder layers, on both sides."""
    moe = arch.moe_layers and LAYERS
    from advisor.simulate.model_config import with_layers

    return replace(arch, layers=LAYERS, moe_layers=moe), with_layers(cfg, LAYERS)


def setup_for(c: dict, arch):
    from advisor.memory.setup import Setup

    sharded = c["gpus"] > 1
    # MoE: the harness's LoRA reaches transformers 5's fused experts through PEFT's target_parameters, which
    # refuses dropout: no dropout, experts adapted, on both sides.
    moe = dict(lora_dropout=0.0, lora_experts=True) if arch.is_moe else {}
    return Setup(arch=arch, method=c["method"], rank=16, targets="all-linear", batch_size=c["batch"], seq_len=c["seq"],
                 checkpointing=c["checkpointing"], grad_checkpointing=c["checkpointing"] == "full", precision="bf16",
                 gpus=c["gpus"], device="cuda" if sharded else "cpu", loss=c.get("loss", "auto"), kernels=c.get("kernels", "none"),
                 **moe)  # fmt: skip


def analytic(c: dict) -> dict:
    from advisor.memory.estimate import estimate

    m, cfg = model_and_config(c["model"])
    arch, _ = shallow(m.arch, cfg)
    b = estimate(setup_for(c, arch))
    return {"allocated_gb": b.peak_allocated_gb - b.runtime_overhead, "phase": b.peak_phase,
            "items": {k: round(v, 4) for k, v in b.items().items()}}  # fmt: skip


def simulate(c: dict) -> dict:
    from advisor.simulate import run

    m, cfg = model_and_config(c["model"])
    arch, cfg = shallow(m.arch, cfg)
    t0 = time.time()
    try:
        b, extras = run(setup_for(c, arch), m, config=cfg)
    except Exception as e:  # noqa: BLE001  (recorded, shown in the table, never silently dropped)
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}", "seconds": round(time.time() - t0, 1)}
    return {"allocated_gb": b.peak_allocated_gb, "phase": b.peak_phase, "kinds": extras.get("kinds", {}),
            "phases": {k: v["allocated_gb"] for k, v in extras.get("phases", {}).items()}, "seconds": round(time.time() - t0, 1)}  # fmt: skip


def load_cache() -> dict:
    return json.loads(CACHE.read_text()) if CACHE.exists() else {}


def save_cache(cache: dict) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = CACHE.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
    os.replace(tmp, CACHE)


def explain(c: dict, sim: dict, ana: dict, err: float) -> str:
    """Why a configuration is outside the tolerance: the mechanism each side holds that the other does not
    (each checked by a probe recorded in docs/estimator_vs_simulation.md). Never a fudge: the figures stand."""
    if "error" in sim:
        why = ""
        if "Expected inputs of BF16" in sim["error"]:
            why = (" (bitsandbytes quantizes nn.Linear only: transformers 5's 3-D experts stay unquantized, "
                   "prepare_model_for_kbit_training upcasts them to fp32, and the experts' grouped matmul takes bf16 only; "
                   "the harness's own QLoRA of these models would meet it too; not checked on a GPU)")
        return "not simulated: " + sim["error"] + why
    if abs(err) <= TOLERANCE:
        return ""
    why = []
    gib = 2**30
    # the simulator's batch is padded (its first row one token short), so transformers passes SDPA a 4-D mask,
    # which SDPA keeps per layer as a B × 1 × S × S compute-dtype copy for backward (listed with
    # saved_tensors_hooks on CPU's flash kernel); + the shared mask itself
    mask = (LAYERS + 1) * c["batch"] * c["seq"] ** 2 * 2 / gib
    gap = abs(sim["allocated_gb"] - ana["allocated_gb"])
    if mask > 0.5 * gap and mask > 0.02 * sim["allocated_gb"]:
        if c["batch"] == 1:
            why.append(f"the simulator's own padding (~{mask:.1f} GiB): it pads even a one-row batch, so transformers builds a 4-D "
                       "mask that SDPA keeps per layer (B × S × S); the harness's one-row batch has no padding, and a GPU run "
                       "passes no mask")
        else:
            why.append(f"a padded batch's attention mask (~{mask:.1f} GiB): with padding, transformers passes SDPA a 4-D mask that "
                       "SDPA keeps per layer for backward (B × S × S, compute dtype; a GPU's memory-efficient kernel keeps its "
                       "attn_bias likewise, not measured); the analytic model counts an unpadded batch (packed, or flash-attention "
                       "with unpadding, as the published rows)")
    if c["method"] == "dora" and c["checkpointing"] == "full" and not why:
        tokens = c["batch"] * c["seq"]
        why.append(f"DoRA under full checkpointing: beyond the weight-norm working set the analytic model counts, the "
                   f"simulation holds ~{1024 * gap / tokens * 1024:.0f} KiB per token more while the recomputed layer's "
                   "backward runs (not probed further)")
    if c["method"] == "lora" and c["gpus"] > 1 and not why:
        why.append("FSDP2 per rank with LoRA: the simulation holds ~0.7 GiB more in temporaries at the backward peak than "
                   "the same model's full fine-tuning does (about the fp32 + bf16 logits of the batch: the loss's tensors "
                   "outliving the loss under FSDP2's root hooks, a guess; not probed)")
    return "; ".join(why) or "unexplained"


def compare(cache: dict, configs: list[dict]) -> list[dict]:
    rows = []
    for c in configs:
        k = key(c)
        if k not in cache:
            continue
        sim = cache[k]["sim"]
        ana = analytic(c)
        err = (ana["allocated_gb"] / sim["allocated_gb"] - 1) if "allocated_gb" in sim else None
        rows.append({**c, "key": k, "sim_gb": sim.get("allocated_gb"), "ana_gb": ana["allocated_gb"], "err": err,
                     "sim_phase": sim.get("phase"), "ana_phase": ana["phase"], "why": explain(c, sim, ana, err or 0.0)})  # fmt: skip
    return rows


ARTIFACTS = ("the simulator's own padding",)  # the simulation's own, not what a run holds


def summary(rows: list[dict]) -> dict:
    done = [r for r in rows if r["err"] is not None]
    within = [r for r in done if abs(r["err"]) <= TOLERANCE]
    archs = {r["model"] for r in done}
    like = [r for r in done if not any(a in r["why"] for a in ARTIFACTS)]
    return {"simulated": len(done), "failed": len(rows) - len(done), "within_10pct": len(within),
            "share_within": len(within) / len(done) if done else 0.0, "architectures": len(archs),
            "like_for_like": len(like), "like_within": sum(abs(r["err"]) <= TOLERANCE for r in like),
            "mean_abs_err_pct": 100 * sum(abs(r["err"]) for r in done) / len(done) if done else None,
            "bias_pct": 100 * sum(r["err"] for r in done) / len(done) if done else None}  # fmt: skip


NOTES = """
How a disagreement is explained: each `why` names the mechanism one side holds and the other does not, found by
listing the tensors autograd saves (`torch.autograd.graph.saved_tensors_hooks` on a real 1-2 layer model of the
harness's step), by reading the modules that run (transformers 5, peft 0.21) and by differencing simulated peaks.
Rows left outside 10% are explained by mechanism or marked `unexplained` / `not probed`.

## This round (2026-12-07): the 2026 stack rows, and two mechanisms they exposed
60 configurations with `--kernels` (fused RMSNorm, SwiGLU, in-place RoPE, the fused LoRA op: harness/kernels.py, run by
the simulated step) and `--loss fused`, on six architectures. The kernel rows agreed at once (−1.5%…+0.5% for liger);
the `--loss fused` LoRA rows did not (−8…−16%), because without logits a LoRA step's peak moves to a moment the
analytic model did not have:
- **peft's forward transient** (`lora_forward_transient_bytes`): peft casts each adapted input to the fp32 adapters'
  dtype and dropout writes a new fp32 tensor from it; both live until lora_A has consumed them, 8 B an element of the
  widest adapted input (down_proj's, ff wide), at the last layer's forward (no checkpointing) or in the recomputed
  layer's forward (full). It also explains the old "LoRA with full checkpointing holds ~61-68 KiB per token more"
  rows (Llama-2/Mistral: 8 × ff = 86-115 KiB), now within 10%. Measured with the tracker on peft's layer
  (tests/advisor/test_advisor_activations.py).
- **q/k norms** (Qwen3, Gemma 3, OLMo 2: `Arch.qk_norm`): each RMSNorm saves its fp32 input, 4 B × (q + kv) a token
  per layer (saved-tensor hooks on Qwen3's norm, same test file).
Before them: 370 of 386 within 10%, mean |error| 2.7%. No constant was added.

## What changed to reach it (mechanisms, no fitted constant)
In the analytic model (advisor/memory/, advisor/inputs/arch.py):
- **stacked experts, CPU AdamW**: transformers 5 keeps each MoE layer's experts as one 3-D parameter per projection;
  CPU AdamW's two per-tensor temporaries are that tensor's size (`Arch.largest_tensor`), not one expert's matrix.
- **gpt-oss attends eagerly**: its transformers class has no SDPA path (attention sinks): S × S bf16 softmax saved per
  layer, and the two S × S gradients of its backward (`NO_SDPA`, `eager_attention`).
- **LoRA on stacked experts**: peft's all-linear reaches Mixtral/Qwen-MoE experts through ParamWrapper, which adds B·A
  to the whole 3-D weight each forward; the merged E × 3·ff × d weight is saved for backward (`expert_merge_bytes`).
  gpt-oss's experts are outside peft's mapping: not adapted (`Setup.adapts_experts`; listed on a built model).
- **DoRA's weight-norm working set** under full checkpointing: eye(d_in) in the adapter dtype, B·A and its cast, for
  the largest module, while backward recomputes a layer (`dora_norm_bytes`).
- **the first layer's backward**: every later layer's gradients exist by then (full fine-tuning, unsharded): a third
  backward moment beside the loss and the deepest layer's working set.
- **FSDP's reduce-scatter input**: a layer's gradient is unsharded, full size, until its reduce-scatter.
- **HF's composite gelu_new** (Phi, GPT-2 defaults) saves 4 ff-wide tensors (torch's fused GELU: 1), on the hf stack only
  (litgpt's Phi calls the fused GELU: its published rows kept their 1.7% error).
In the simulator (advisor/simulate/): a full garbage collection after each decoder layer's forward (DoRA's eye graphs,
held by the tracker's hook cycles, had inflated DoRA peaks by up to 1.7 GiB: a tracker artifact, not PyTorch's); SDPA's
attention dropout simulated at p = 0 (a GPU's fused kernels keep only an RNG seed; CPU SDPA falls back to its math path
and kept S × S fp32 scores: GPTBigCode defaults attn_pdrop to 0.1). `advisor validate`'s leave-one-source-out figure on
the published rows is unchanged by these (MAE 6.2%, bias -3.0%, 98% at or under the high end): none of its rows uses
the mechanisms added.

## Fitted constants
Before: 10 numbers. The analytic path's 8 (advisor/memory/overhead.py and estimate.py: `FRAG`, `UNTRACKED_GB`,
`RANGES` (4 numbers), `CPU_SLACK_FRAC`, `CPU_RUNTIME_GB`) and the simulated path's own allocator model
(advisor/simulate/overhead.py: fragmentation 0.10 expected / 0.35 high of the activations, assumed).
After: 8, one model for both paths (the simulated path now applies advisor/memory/overhead.py's terms). Each, with its
mechanism and source:
- `FRAG` 0.04: the caching allocator's fragmentation per churned byte (activations, temporaries, gradients are freed and
  re-allocated in other sizes each step); fitted leave-one-source-out on the published reserved rows (peft, torchtune).
- `UNTRACKED_GB` 0.7: what nvidia-smi shows beyond reserved + context (loader's cached blocks, extra kernel modules);
  the least that covers 90% of the single-GPU nvidia-smi readings (fms-acceleration); budgets only.
- `RANGES` (backward start -15%…+30%, optimizer step -6%…+9%): the model's own error on the published rows by peak
  phase, leave-one-source-out; the simulated path takes the same range around its reserved figure.
- `CPU_SLACK_FRAC` 0.35: glibc heap fragmentation of activation-sized allocations (harness CPU records, RSS).
- `CPU_RUNTIME_GB` 0.14: oneDNN/MKL scratch, thread stacks, tokenizer and data after the RSS baseline (same records).
The mechanisms added this round brought no constant: each is a count of tensors (sizes from the config, dtypes from
the code that runs; `NO_SDPA`, `COMPOSITE_ACT` and the families' defaults are facts read from transformers' classes).
"""


def markdown(rows: list[dict]) -> str:
    s = summary(rows)
    what = dict(ARCHS)
    lines = [
        "# The analytic memory model against the simulated step",
        "",
        "Generated by `python benchmarks/estimator_vs_simulation.py --markdown docs/estimator_vs_simulation.md`",
        f"(cache: `benchmarks/estimator_vs_simulation.json`). Peak allocated bytes of one supervised step, {LAYERS} decoder",
        "layers at each model's real widths, bf16 weights and compute, AdamW, LoRA/DoRA/QLoRA r=16 on all linear layers;",
        "the rows with `--kernels` / `--loss fused` run the 2026 stack options (fused kernels: harness/kernels.py).",
        "",
        f"**{s['within_10pct']} of {s['simulated']} simulated configurations ({100 * s['share_within']:.0f}%) within "
        f"{100 * TOLERANCE:.0f}%**; mean |error| {s['mean_abs_err_pct']:.1f}%, bias {s['bias_pct']:+.1f}% "
        f"(analytic − simulated); {s['architectures']} architectures; {s['failed']} configurations not simulated (listed).",
        f"Leaving out the configurations where the simulation holds what the harness's run does not (the simulator pads a "
        f"one-row batch): **{s['like_within']} of {s['like_for_like']} within {100 * TOLERANCE:.0f}%**. Two rounds ago: 257 of 330 "
        "(78%), mean |error| 9.0%, bias -8.0%.",
        "",
        *NOTES.strip("\n").splitlines(),
        "",
        "Architectures: " + "; ".join(f"`{m}` ({w})" for m, w in ARCHS) + ".",
        "",
        "| model | method | ckpt | batch × seq | GPUs | simulated GiB | analytic GiB | error | phase (sim / ana) | why |",
        "|---|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        err = "–" if r["err"] is None else f"{100 * r['err']:+.1f}%"
        sim = "–" if r["sim_gb"] is None else f"{r['sim_gb']:.2f}"
        stack = "".join(f" --{k} {r[k]}" for k in ("loss", "kernels") if k in r)
        lines.append(f"| {r['model']} | {r['method']}{stack} | {r['checkpointing']} | {r['batch']} × {r['seq']} | {r['gpus']} | {sim} | "
                     f"{r['ana_gb']:.2f} | {err} | {r['sim_phase'] or '–'} / {r['ana_phase']} | {r['why']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table-only", action="store_true", help="do not simulate; the table from the cache")
    p.add_argument("--limit", type=int, default=0, help="simulate at most this many new configurations")
    p.add_argument("--markdown", help="also write the table as markdown to this path")
    p.add_argument("--only", help="simulate only configurations whose key contains this text")
    p.add_argument("--redo", action="store_true", help="simulate again the --only configurations even if cached "
                   "(after a change to the simulator that touches them)")
    p.add_argument("--retry-errors", action="store_true", help="simulate again the configurations whose simulation failed")
    args = p.parse_args(argv)
    configs = grid()
    cache = load_cache()
    if not args.table_only:
        redo = lambda k: (k not in cache or (args.retry_errors and "error" in cache[k]["sim"])  # noqa: E731
                          or (args.redo and args.only is not None))
        todo = [c for c in configs if redo(key(c)) and (not args.only or args.only in key(c))]
        if args.limit:
            todo = todo[: args.limit]
        for i, c in enumerate(todo, 1):
            sim = simulate(c)
            cache[key(c)] = {"config": c, "sim": sim}
            save_cache(cache)
            print(f"[{i}/{len(todo)}] {key(c)}: {sim.get('allocated_gb', sim.get('error'))} ({sim['seconds']} s)", flush=True)
    rows = compare(cache, configs)
    s = summary(rows)
    for r in rows:
        err = "     –" if r["err"] is None else f"{100 * r['err']:+6.1f}%"
        print(f"{r['key']:58s} sim {r['sim_gb'] or 0:8.2f} ana {r['ana_gb']:8.2f} {err}  {r['why']}")
    print(f"\n{s['within_10pct']}/{s['simulated']} within {100 * TOLERANCE:.0f}% ({100 * s['share_within']:.0f}%), "
          f"mean |error| {s['mean_abs_err_pct'] or 0:.1f}%, bias {s['bias_pct'] or 0:+.1f}%, {s['architectures']} architectures, "
          f"{s['failed']} not simulated; {len(configs)} configurations in the grid")  # fmt: skip
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
