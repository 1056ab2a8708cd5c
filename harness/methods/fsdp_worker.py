"""One rank of an FSDP job (started by ``harness.methods.fsdp`` through torchrun).

load → attach the inner method (full | lora) → ``fully_shard`` each decoder layer, then the root
→ a plain PyTorch loop (loss on answer tokens only, the tokenization of ``harness.train``) →
rank 0 writes ``report.json`` (global tokens, max-over-ranks peak memory, per-rank parameters)
and the trained weights, gathered unsharded, to ``trained.safetensors``. A rank that fails
writes ``error.rank<r>.json``; torchrun then stops the others.

A plain loop rather than SFTTrainer: FSDP2 under Trainer goes through accelerate's FSDP
plugin, whose config surface is larger than this whole file, and still needs the same gathering.

    usage: torchrun --nproc-per-node N -m harness.methods.fsdp_worker <job dir>
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Group:
    """This rank's place in the process group."""

    rank: int
    world: int
    device: str  # cuda | cpu
    tensor_device: Any  # torch.device of this rank

    def reduce(self, values: list[float], op) -> list[float]:
        """``values`` combined over all ranks by ``op`` (sum, max)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.tensor_device)
        dist.all_reduce(t, op=op)
        return t.tolist()


@dataclass
class Trace:
    """Per optimizer step, over all ranks: when it ended, tokens and samples so far, mean loss."""

    ends: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def _decoder_layers(model) -> list:
    """Modules to shard one by one: the classes the model names as not-to-split (its decoder layers)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    return layers


def _local_numel(p) -> int:
    return p.to_local().numel() if hasattr(p, "to_local") else p.numel()


def main(job_dir: Path) -> None:
    """load → attach the inner method → shard → train → rank 0 writes the report and the weights."""
    import torch.distributed as dist
    import transformers

    from harness.config import spec_from_dict
    from harness.measure import MemoryMonitor

    spec = spec_from_dict(json.loads((job_dir / "spec.json").read_text()))
    group = _join()
    mem = MemoryMonitor(group.device).start()
    transformers.set_seed(spec.seed)
    model, tok, total_params, trainable_names = _sharded_model(spec, group.device)
    params_local = sum(_local_numel(p) for p in model.parameters())
    trace = _train(model, tok, spec, group)
    peak = mem.peak()
    mem.stop()
    peak_max, baseline_max, params_max = group.reduce([peak["peak_memory_gb"], peak.get("baseline_rss_gb") or 0.0, params_local],
                                                      dist.ReduceOp.MAX)  # fmt: skip
    metrics = {
        "world_size": group.world,
        "peak_memory_gb": peak_max,  # the max over ranks of each rank's peak
        "memory_kind": peak["memory_kind"] + "_max_over_ranks",
        "peak_reserved_gb": None,
        "params_per_rank": int(params_max),
        "params_per_rank_fraction": params_max / total_params,
        "fsdp_backend": dist.get_backend(),
        "fsdp_inner": spec.method.inner or "full",
    }
    if group.device == "cpu":
        metrics["baseline_rss_gb"] = baseline_max
    _write(job_dir, model, trainable_names, group.rank, trace, metrics)
    dist.barrier()
    dist.destroy_process_group()


def _join() -> Group:
    """Join torchrun's process group: nccl on CUDA (one GPU per local rank), gloo on CPU."""
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return Group(dist.get_rank(), dist.get_world_size(), "cuda" if cuda else "cpu",
                 torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


def _sharded_model(spec, device: str) -> tuple:
    """Load, attach the inner method (the same seed on every rank: identical adapters), then
    ``fully_shard`` each decoder layer and the root. Returns the model, its tokenizer, its
    parameter count before sharding and the names of the trained parameters."""
    import torch
    import transformers
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from harness import models
    from harness.methods import get_method

    dtype = models.resolve_dtype(spec.train.dtype, device)
    # Parameters stay fp32 on CPU; on CUDA FSDP2 computes in bf16 and reduces gradients in fp32.
    loaded = models.load(spec.model, seed=spec.seed, dtype=torch.float32, device=device)
    inner = get_method(spec.method.name, spec.method.inner).inner  # checked by the parent before launching
    transformers.set_seed(spec.seed)  # every rank builds identical adapters before sharding
    model = inner.prepare(loaded.model, spec.method, spec.train)
    total_params = sum(p.numel() for p in model.parameters())
    trainable_names = [n for n, p in model.named_parameters() if p.requires_grad]
    mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype != torch.float32 else MixedPrecisionPolicy()
    for layer in _decoder_layers(model):
        fully_shard(layer, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model, loaded.tokenizer, total_params, trainable_names


def _train(model, tok, spec, group: Group) -> Trace:
    """A plain loop over ``harness.train.training_batches``' global micro-batches, each rank taking
    its slice (the tokenization of ``harness.train``); loss and tokens summed over ranks per step."""
    import torch
    import torch.distributed as dist
    import transformers

    from harness.measure import synchronize
    from harness.tasks import get_task
    from harness.train import collate, tokenize_sft, training_batches

    rows = tokenize_sft(tok, get_task(spec.task).splits()["train"], spec.train.max_seq_len)
    b, ga, rank, world = spec.train.batch_size, spec.train.grad_accum, group.rank, group.world
    steps, order = training_batches(spec, len(rows), world, [len(r["input_ids"]) for r in rows])  # global micro-batches, split by rank
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.train.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=spec.lr, weight_decay=spec.train.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.train.weight_decay)
    sched = transformers.get_scheduler(spec.train.scheduler, opt, num_warmup_steps=math.ceil(spec.train.warmup_ratio * steps),
                                       num_training_steps=steps)
    model.train()
    trace = Trace()
    seen_tokens = 0.0
    dist.barrier()
    synchronize(group.device)
    t0 = time.perf_counter()
    for step in range(steps):
        local_loss, local_tokens = 0.0, 0
        for micro in range(ga):
            idx = order[step * ga + micro][rank * b : (rank + 1) * b]
            batch = {k: v.to(group.tensor_device) for k, v in collate([rows[i] for i in idx], tok.pad_token_id).items()}
            loss = model(**batch).loss / ga
            loss.backward()
            local_loss += loss.item()
            local_tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # Trainer's default max_grad_norm, for parity
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_sum, tok_sum = group.reduce([local_loss, local_tokens], dist.ReduceOp.SUM)
        synchronize(group.device)
        seen_tokens += tok_sum
        trace.ends.append(time.perf_counter() - t0)
        trace.tokens.append(int(seen_tokens))
        trace.samples.append((step + 1) * b * ga * world)
        trace.losses.append(loss_sum / world)
    return trace


def _write(job_dir: Path, model, trainable_names: list[str], rank: int, trace: Trace, metrics: dict) -> None:
    """Gather the trained weights unsharded (every rank takes part); rank 0 writes them and ``report.json``."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from harness.atomic import write_json as write_json_atomic

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return
    from safetensors.torch import save_file

    # clone: tied weights share storage, which safetensors refuses to write twice
    save_file({n: full[n].detach().contiguous().clone() for n in trainable_names}, job_dir / "trained.safetensors")
    write_json_atomic(job_dir / "report.json", {**asdict(trace), "metrics": metrics})


def _entry(argv: list[str]) -> int:
    job_dir = Path(argv[0])
    try:
        main(job_dir)
    except BaseException as exc:  # noqa: BLE001 — every rank's failure must reach the record
        from harness.atomic import write_json as write_json_atomic
        from harness.record import error_info

        rank = int(os.environ.get("RANK", 0))
        write_json_atomic(job_dir / f"error.rank{rank}.json", {"rank": rank, **error_info(exc)})
        return 1
    return 0


if __name__ == "__main__":
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    sys.exit(_entry(sys.argv[1:]))
