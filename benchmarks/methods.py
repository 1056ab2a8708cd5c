"""Methods side by side on one model, batch and sequence length: peak memory, tokens/s, MFU, and
the harness's overhead against a bare PEFT/PyTorch loop on the same configuration.

Every measurement is a fresh process (the harness via ``python -m harness``, the bare loop via
``python benchmarks/methods.py --bare …``), harness and bare runs interleaved and their order
alternated per repetition, so drift in machine load hits both alike. Both exclude the same
warm-up steps and count the same thing: non-padding tokens per second of optimizer steps.
The ratio is the median over repetitions of (harness tokens/s ÷ bare tokens/s) within a pair;
the table also shows the pairs' range. Target ≥ 0.95.

    python benchmarks/methods.py                 # SmolLM2-135M, full lora qlora dora, 3 repetitions
    python benchmarks/methods.py --quick         # tiny model, lora + full, 1 repetition: checks the script
    python benchmarks/methods.py --methods lora,fsdp,grpo,dpo --reps 1   # harness-only figures for the others

The bare loop: same model files, same adapters (peft LoraConfig), same tokenized examples
(loss on answer tokens), AdamW, linear warm-up + cosine, grad-norm clip 1.0, no KV cache in the
training forward (``use_cache=False``) — what Trainer does, without Trainer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BARE_METHODS = ("full", "lora", "qlora", "dora")  # methods a bare loop reproduces; others are harness-only
TASK_OF = {"grpo": "arithmetic", "dpo": "tickets_prefs"}


def overrides(args, method: str) -> list[str]:
    out = [
        f"model={args.model}",
        f"method={method}",
        f"task={TASK_OF.get(method, 'tickets')}",
        f"train.batch_size={args.batch}",
        f"train.max_seq_len={args.seq}",
        f"train.max_steps={args.steps}",
        f"train.measure_skip_steps={args.skip}",
        "train.save=none",
        "eval.enabled=false",
    ]
    if args.lr:
        out.append(f"train.lr={args.lr}")
    return out


def run_harness(args, method: str, results_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "harness", *overrides(args, method), f"results_dir={results_dir}", f"repeat={time.time_ns()}"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    records = sorted(results_dir.glob(f"{method}-*.json"), key=lambda p: p.stat().st_mtime)
    if res.returncode != 0 or not records:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    m = json.loads(records[-1].read_text())["metrics"]
    records[-1].unlink()  # one record per measurement; the benchmark keeps its own table
    return {k: m.get(k) for k in ("tokens_per_s", "peak_memory_gb", "mfu", "memory_kind", "train_loss_first", "train_loss_last")}


def run_bare(args, method: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--bare", method, *[f"--{k}={v}" for k, v in
           (("model", args.model), ("batch", args.batch), ("seq", args.seq), ("steps", args.steps), ("skip", args.skip), ("lr", args.lr))
           if v is not None]]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the bare loop (its own process)


def bare(args) -> dict:
    """Train ``args.bare`` with a plain loop on exactly the harness's configuration; print tokens/s."""
    import math
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from harness.config import load_spec
    from harness.methods.lora import target_modules  # the preset names only: q_proj+v_proj | attn | all-linear
    from harness.models import materialise
    from harness.tasks import get_task
    from harness.train import collate, tokenize_sft, training_batches

    spec = load_spec(overrides(args, args.bare))
    m, t = spec.method, spec.train
    path, _ = materialise(spec.model, spec.seed)
    transformers.set_seed(spec.seed)
    kwargs = {"dtype": torch.float32}
    if m.quantize:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    # What transformers' Trainer does (TrainingArguments.use_cache=False): with the config default
    # (True) every training forward also fills a KV cache the harness never builds. That, and
    # batches in a different order from the harness's, made the first measurements read "harness
    # faster than bare" (ratios 1.04-1.24). Both loops now use training_batches and no cache.
    model.config.use_cache = False
    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token = tok.pad_token or tok.eos_token
    if m.r:
        if m.quantize:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = get_peft_model(model, LoraConfig(r=m.r, lora_alpha=m.lora_alpha, lora_dropout=m.dropout, use_dora=m.use_dora,
                                                 target_modules=target_modules(m.targets), task_type="CAUSAL_LM"))
    rows = tokenize_sft(tok, get_task(spec.task).splits()["train"], t.max_seq_len)
    _, order = training_batches(spec, len(rows), lengths=[len(r["input_ids"]) for r in rows])  # the harness's batches (the benchmark leaves grad_accum at 1)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=t.weight_decay)
    sched = transformers.get_scheduler(t.scheduler, opt, num_warmup_steps=math.ceil(t.warmup_ratio * t.max_steps),
                                       num_training_steps=t.max_steps)
    model.train()
    ends, tokens, seen = [], [], 0
    for step, idx in enumerate(order):
        batch = collate([rows[i] for i in idx], tok.pad_token_id)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        seen += int(batch["attention_mask"].sum())
        ends.append(time.perf_counter())
        tokens.append(seen)
    s = min(args.skip, len(ends) - 1)
    return {"tokens_per_s": (tokens[-1] - tokens[s - 1]) / (ends[-1] - ends[s - 1])}


# ---------------------------------------------------------------- the table


def table(rows: list[dict]) -> str:
    head = f"{'method':8} {'peak GB':>8} {'tokens/s':>9} {'MFU':>7} {'bare tok/s':>10} {'ratio':>6}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        def f(v, fmt):
            return format(v, fmt) if isinstance(v, (int, float)) else "–"

        lines.append(f"{r['method']:8} {f(r.get('peak_memory_gb'), '8.2f')} {f(r.get('tokens_per_s'), '9.1f')} "
                     f"{f(r.get('mfu') and 100 * r['mfu'], '6.2f')}% {f(r.get('bare_tokens_per_s'), '10.1f')} "
                     f"{f(r.get('ratio'), '6.3f')}  {r.get('note', '')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--methods", default=",".join(BARE_METHODS))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--skip", type=int, default=4, help="warm-up steps excluded from tokens/s (harness and bare alike)")
    p.add_argument("--reps", type=int, default=3, help="harness/bare pairs per method, interleaved")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--quick", action="store_true", help="tiny model, lora+full, 6 steps, 1 repetition: checks the script")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    p.add_argument("--bare", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare:
        print(json.dumps(bare(args)))
        return 0
    if args.quick:
        args.model, args.steps, args.skip, args.reps = "tiny", 6, 2, 1
        args.methods = "lora,full" if args.methods == ",".join(BARE_METHODS) else args.methods
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    runs: dict[str, dict[str, list]] = {m: {"harness": [], "bare": []} for m in methods}
    with tempfile.TemporaryDirectory(prefix="tunebench-bench-") as tmp:
        for rep in range(args.reps):
            for method in methods:
                order = ["harness", "bare"] if rep % 2 == 0 else ["bare", "harness"]
                for kind in order:
                    if kind == "bare" and method not in BARE_METHODS:
                        continue
                    out = run_harness(args, method, Path(tmp)) if kind == "harness" else run_bare(args, method)
                    runs[method][kind].append(out)
                    print(f"rep {rep} {method:6} {kind:7} {out}", file=sys.stderr, flush=True)

    rows = []
    for method in methods:
        ok_h = [r for r in runs[method]["harness"] if r.get("tokens_per_s")]
        ok_b = [r for r in runs[method]["bare"] if r.get("tokens_per_s")]
        row = {"method": method, "reps": len(ok_h)}
        if ok_h:
            row.update(
                tokens_per_s=statistics.median(r["tokens_per_s"] for r in ok_h),
                peak_memory_gb=statistics.median(r["peak_memory_gb"] for r in ok_h),
                mfu=statistics.median(r["mfu"] for r in ok_h) if all(r.get("mfu") for r in ok_h) else None,
            )
        else:
            row["note"] = "harness failed: " + str(runs[method]["harness"][0].get("error") if runs[method]["harness"] else "")
        if ok_b:
            row["bare_tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in ok_b)
            # Each repetition ran its harness and bare measurement back to back: the ratio within a
            # pair cancels the machine's drift, so the figure is the median of the pairs' ratios.
            pairs = [h["tokens_per_s"] / b["tokens_per_s"] for h, b in zip(runs[method]["harness"], runs[method]["bare"])
                     if h.get("tokens_per_s") and b.get("tokens_per_s")]
            if pairs:
                row["ratio"] = statistics.median(pairs)
                row["pair_ratios"] = [round(r, 3) for r in pairs]
                row["note"] = ("ok" if row["ratio"] >= 0.95 else "harness overhead > 5%") + \
                    f"  pairs {min(pairs):.3f}–{max(pairs):.3f}"
        elif method in BARE_METHODS:
            row["note"] = "bare failed: " + str(runs[method]["bare"][0].get("error") if runs[method]["bare"] else "")
        else:
            row.setdefault("note", "harness only (no bare equivalent)")
        rows.append(row)
    print(f"model={args.model} batch={args.batch} seq≤{args.seq} steps={args.steps} (first {args.skip} excluded) reps={args.reps} "
          f"threads={os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(table(rows))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
