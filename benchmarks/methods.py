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

The bare loop trains exactly what the harness trains, so that the ratio measures the loop alone:
the same model object (``harness.models.load`` and the method's own ``prepare``), the same rows,
the same batches (``harness.train.training_batches``: order, length grouping, micro-batches), the
same padding (``collate``), the seeds set at the same points, and the same clock (``StepClock``).
Its step is Trainer's step written out (``_bare_loop``). The proof that it trains on the same
batches is in the table: ``max |Δloss|``, the largest difference between the harness's and the
bare loop's loss at any step, is 0 (tiny model, full/lora/qlora/dora, dropout included); train on
the batches in reverse order and it is 1e-2.

What the ratio can still show, then, is only what the harness does per step beyond the bare
loop. Per step the bare loop does no more than the harness does, so a ratio above 1 is the
machine's noise (which process runs second, host pauses), not a faster harness:

- Trainer's bookkeeping (transformers 5.23 ``_inner_training_loop``): a NaN/inf check on each
  micro-batch's loss, a FLOPs estimate and a token count per micro-batch, the grad norm kept for
  the logs, a log every step at ``train.log_every=1`` (a loss ``.item()``), and its callbacks;
- the harness's ``MeasureCallback`` (device sync, clock, progress update) and the budget
  watchdog's thread, which reads the process's memory a few times a second.

On a CPU a device sync costs nothing, so the expected ratio is 1 within the pairs' noise; on a
GPU each ``.item()`` drains the queue, so the ratio falls with shorter steps (small models, small
batches). The earlier figures (LoRA 1.08, full 0.99 on 2 CPU cores) came from a bare loop that
built its own model and adapters, drew other dropout masks and averaged the loss differently;
they have not been re-measured since (a measurement needs a quiet machine).
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
    out = {k: m.get(k) for k in ("tokens_per_s", "peak_memory_gb", "mfu", "memory_kind", "train_loss_first", "train_loss_last")}
    return {**out, "losses": m.get("train_losses")}


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
    """Train ``args.bare`` with a plain loop on exactly what the harness trains; return tokens/s and losses.

    What is shared with the harness, so that only the training loop differs: the model object
    (``harness.models.load`` then the method's own ``prepare``: same files, dtype, device, 4-bit
    setup and adapters), the rows (``tokenize_sft``), the batches (``training_batches``: same
    order, same length grouping, ``grad_accum`` micro-batches per step), the padding
    (``collate``), the seeds at the same points (load, adapters, loop), and the clock
    (``StepClock``: same device sync, same warm-up steps left out). What the loop itself does is
    what Trainer does, written out: a sequential DataLoader, the loss summed over a step's
    micro-batches and divided by the step's answer tokens (Trainer's ``num_items_in_batch``),
    grad-norm clip 1.0, AdamW with weight decay off biases and norms, the same scheduler.
    """
    import warnings

    warnings.filterwarnings("ignore")
    import transformers

    from harness import models
    from harness.config import load_spec
    from harness.measure import StepClock, device_of
    from harness.methods import get_method

    spec = load_spec(overrides(args, args.bare))
    device = device_of()
    method = get_method(spec.method.name, spec.method.inner)
    transformers.set_seed(spec.seed)  # as harness.run: before loading …
    loaded = models.load(spec.model, seed=spec.seed, dtype=models.resolve_dtype(spec.train.dtype, device), device=device,
                         **method.load_kwargs(spec.method))
    transformers.set_seed(spec.seed)  # … and before the adapters
    model = method.prepare(loaded.model, spec.method, spec.train)
    clock = StepClock(device, skip=spec.train.measure_skip_steps)
    losses = _bare_loop(model, loaded.tokenizer, spec, device, clock)
    return {"tokens_per_s": clock.summary()["tokens_per_s"], "losses": losses}


def _bare_loop(model, tok, spec, device: str, clock) -> list[float]:
    """Trainer's step, written out: per step, forward/backward each micro-batch, clip, step, schedule, zero."""
    import math

    import torch
    import transformers
    from torch.utils.data import DataLoader, SequentialSampler

    from harness.tasks import get_task
    from harness.train import collate, tokenize_sft, training_batches

    t = spec.train
    if t.optimizer not in ("adamw", "sgd") or t.checkpoint_mode != "none" or t.loss != "standard" or t.dtype == "fp16":
        raise SystemExit("the bare loop reproduces adamw/sgd, no checkpointing, the standard loss, fp32/bf16 weights")
    rows = tokenize_sft(tok, get_task(spec.task).splits()["train"], t.max_seq_len)
    steps, order = training_batches(spec, len(rows), lengths=[len(r["input_ids"]) for r in rows])
    ordered = [rows[i] for batch in order for i in batch]  # what harness.train.sft hands to Trainer
    decay = set(transformers.Trainer.get_decay_parameter_names(None, model))  # Trainer's rule: no decay on biases, norms
    groups = [{"params": [p for n, p in model.named_parameters() if p.requires_grad and (n in decay) == d],
               "weight_decay": t.weight_decay if d else 0.0} for d in (True, False)]
    opt = torch.optim.SGD(groups, lr=spec.lr) if t.optimizer == "sgd" else torch.optim.AdamW(groups, lr=spec.lr)
    sched = transformers.get_scheduler(t.scheduler, opt, num_warmup_steps=math.ceil(t.warmup_ratio * steps), num_training_steps=steps)
    params = [p for g in groups for p in g["params"]]
    pad_id = tok.pad_token_id
    transformers.set_seed(spec.seed)  # as Trainer does when it is built: the same dropout masks
    batches = iter(DataLoader(ordered, batch_size=t.batch_size, sampler=SequentialSampler(ordered),
                              collate_fn=lambda b: collate(b, pad_id)))
    model.train()
    losses, seen = [], 0
    clock.begin()
    for _ in range(steps):
        micro = [{k: v.to(device) for k, v in next(batches).items()} for _ in range(t.grad_accum)]
        n_items = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro)  # answer tokens the loss averages over
        step_loss = 0.0
        for batch in micro:
            loss = model(**batch, num_items_in_batch=torch.tensor(n_items, device=device)).loss
            loss.backward()
            step_loss += loss.item()
            seen += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        model.zero_grad(set_to_none=True)
        clock.step_end(seen, 0)
        losses.append(step_loss)
    return losses


# ---------------------------------------------------------------- the table


def loss_gap(harness: list[dict], bare: list[dict]) -> float | None:
    """The largest step-loss difference between a harness run and a bare run: both train the same
    model on the same batches with the same seeds, so it is float round-off (≲1e-5), not 1e-2."""
    gaps = [abs(a - b) for h, r in zip(harness, bare) if h.get("losses") and r.get("losses") and len(h["losses"]) == len(r["losses"])
            for a, b in zip(h["losses"], r["losses"])]
    return max(gaps) if gaps else None


def table(rows: list[dict]) -> str:
    head = f"{'method':8} {'peak GB':>8} {'tokens/s':>9} {'MFU':>7} {'bare tok/s':>10} {'ratio':>6} {'max |Δloss|':>11}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        def f(v, fmt):
            return format(v, fmt) if isinstance(v, (int, float)) else "–"

        lines.append(f"{r['method']:8} {f(r.get('peak_memory_gb'), '8.2f')} {f(r.get('tokens_per_s'), '9.1f')} "
                     f"{f(r.get('mfu') and 100 * r['mfu'], '6.2f')}% {f(r.get('bare_tokens_per_s'), '10.1f')} "
                     f"{f(r.get('ratio'), '6.3f')} {f(r.get('loss_gap'), '11.1e')}  {r.get('note', '')}")
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
                    print(f"rep {rep} {method:6} {kind:7} { {k: v for k, v in out.items() if k != 'losses'} }", file=sys.stderr, flush=True)

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
            row["loss_gap"] = loss_gap(runs[method]["harness"], runs[method]["bare"])
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
